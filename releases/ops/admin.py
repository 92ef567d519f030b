"""The operators' view: releases with their checks, history and actions, and the overrides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from notifications.messages import percent, sentry_release_url
from releases.core.errors import ProviderError
from releases.models import (
    Action,
    Analysis,
    GateCheck,
    Incident,
    Project,
    RampCheck,
    Release,
    ReleaseEvent,
    WebhookDelivery,
)
from releases.ops.access import OVERRIDE, visible_projects, visible_releases
from releases.ops.overrides import OverrideRefused, approve, extend_wait, pause, reject, resume
from releases.workflows.sentry_project import Unresolvable, resolve, store

EXTEND_BY = timedelta(minutes=30)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AnalysisInline(ReadOnlyInline):
    """The release's analyses: its gate, its bake watch, each canary stage, with their schedule."""

    model = Analysis
    fields = (
        "kind",
        "stage",
        "phase",
        "started_at",
        "ends_at",
        "next_check_at",
        "consecutive_errors",
        "passes",
        "failures",
        "extra_wait",
        "ended_at",
    )
    readonly_fields = fields
    ordering = ("created_at", "id")


class GateCheckInline(ReadOnlyInline):
    model = GateCheck
    fields = (
        "checked_at",
        "analysis",
        "sessions",
        "crashed",
        "rate",
        "outcome",
        "rule",
        "reasons",
        "error",
        "duration_ms",
    )
    readonly_fields = fields
    ordering = ("-checked_at",)

    @admin.display(description="crash-free")
    def rate(self, obj: GateCheck) -> str:
        return percent(obj.crash_free_rate)


class RampCheckInline(ReadOnlyInline):
    """Each SLO check of a ramping canary: at which stage, and every signal's figures."""

    model = RampCheck
    verbose_name = "canary check"
    fields = ("checked_at", "stage", "percent", "confirmation", "ok", "signals", "reasons", "duration_ms")
    readonly_fields = fields
    ordering = ("-checked_at",)

    @admin.display(description="signals")
    def signals(self, obj: RampCheck) -> str:
        rows = []
        for check in obj.checks:
            value = "—" if check.get("value") is None else f"{check['value']:.6g}"
            baseline = "" if check.get("baseline") is None else f" (previous {check['baseline']:.6g})"
            mark = "ok" if check.get("ok") else "FAIL"
            rows.append(f"{mark} {check.get('name')}: {value}{baseline} {check.get('threshold', '')}")
        return format_html_join("\n", "<div>{}</div>", ((row,) for row in rows)) or "—"


class ReleaseEventInline(ReadOnlyInline):
    model = ReleaseEvent
    fields = ("created_at", "kind", "from_state", "to_state", "actor", "reason")
    readonly_fields = fields


class ActionInline(ReadOnlyInline):
    model = Action
    fields = (
        "created_at",
        "kind",
        "key",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "result",
        "finished_at",
    )
    readonly_fields = fields


def _override(label: str, run: Callable[[Release, str], Any], name: str = "") -> Callable[..., None]:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Release]) -> None:
        for release in queryset:
            try:
                run(release, request.user.get_username())
            except OverrideRefused as exc:
                modeladmin.message_user(request, f"{release}: {exc}", messages.WARNING)
            else:
                modeladmin.message_user(request, f"{release}: {label.lower()} recorded", messages.SUCCESS)

    action.short_description = label  # type: ignore[attr-defined]
    action.__name__ = name or label.lower().replace(" ", "_").replace("(", "").replace(")", "")
    # Offered only to holders of releases.override_release (ReleaseAdmin.has_override_permission).
    action.allowed_permissions = ("override",)  # type: ignore[attr-defined]
    return action


class ScopedAdmin(admin.ModelAdmin):
    """Rows of the projects the user operates only (``project_path``: how a row names its project)."""

    project_path = "project"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.project_path}__in": visible_projects(request.user)})


@admin.register(Release)
class ReleaseAdmin(ScopedAdmin):
    list_display = (
        "id",
        "project",
        "version_short",
        "state",
        "age",
        "crash_free",
        "sessions",
        "verdict_rule",
    )
    list_filter = ("state", "project", "verdict")
    search_fields = ("deployment_id", "version")
    list_select_related = ("project",)
    date_hierarchy = "created_at"
    inlines = [AnalysisInline, GateCheckInline, RampCheckInline, ReleaseEventInline, ActionInline]
    readonly_fields = [f.name for f in Release._meta.fields] + ["links", "traffic_share"]
    actions = [
        _override(
            "Approve (promote now; a canary: advance now)",
            lambda r, u: approve(r.pk, u),
            "approve_promote_now",
        ),
        _override(
            "Reject (roll back now; a canary: abort now)",
            lambda r, u: reject(r.pk, u),
            "reject_roll_back_now",
        ),
        _override("Pause", lambda r, u: pause(r.pk, u)),
        _override("Resume", lambda r, u: resume(r.pk, u)),
        _override("Extend wait by 30 minutes", lambda r, u: extend_wait(r.pk, u, EXTEND_BY)),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_override_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OVERRIDE)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return visible_releases(request.user, super().get_queryset(request))

    @admin.display(description="release", ordering="version")
    def version_short(self, obj: Release) -> str:
        version = obj.version or obj.deployment_id
        return version if len(version) <= 16 else version[:12] + "…"

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Release) -> str:
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="crash-free", ordering="crash_free_rate")
    def crash_free(self, obj: Release) -> str:
        return f"{percent(obj.crash_free_rate)} / {percent(obj.project.crash_free_threshold)}"

    @admin.display(description="canary traffic over time")
    def traffic_share(self, obj: Release) -> str:
        """The canary's share of production traffic, move by move, and the stages of its policy."""
        moves = ReleaseEvent.objects.filter(release=obj, kind=ReleaseEvent.Kind.TRAFFIC).order_by(
            "created_at"
        )
        canary = list(obj.analyses.filter(kind=Analysis.Kind.CANARY).order_by("pk"))
        stage = canary[-1] if canary else None
        stages = stage.policy.get("stages", []) if stage is not None else []
        if not stages and not moves:
            return "—"
        placed = [a.stage for a in canary if a.started_at is not None]
        in_place = placed[-1] if placed else None
        plan = " → ".join(
            f"[{s['percent']:g}%]" if i == in_place else f"{s['percent']:g}%" for i, s in enumerate(stages)
        )
        rows = [(f"{e.created_at:%Y-%m-%d %H:%M:%S} UTC", f"{e.data.get('percent', 0):g}%") for e in moves]
        history = format_html_join("", "<div>{}: {}</div>", rows)
        paused = " (paused)" if stage is not None and stage.phase == Analysis.Phase.PAUSED else ""
        return format_html("<div>stages: {}{}</div>{}", plan, paused, history)

    @admin.display(description="links")
    def links(self, obj: Release) -> str:
        sentry = sentry_release_url(obj.project.sentry_org, obj.version, obj.project.sentry_query_project)
        return format_html(
            '<a href="{}">Sentry release</a> · <a href="{}">Vercel deployment</a>',
            sentry or "#",
            obj.inspector_url or "#",
        )


class ProjectForm(forms.ModelForm):
    """Asks Sentry which project ``sentry_project`` is when it (or the org) changes: a project
    Sentry does not know is refused on the field, as sync_config refuses it."""

    class Meta:
        model = Project
        fields = "__all__"  # the admin's fieldsets choose what is shown

    note = ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        org, configured = data.get("sentry_org"), data.get("sentry_project")
        project = self.instance
        if not org or not configured:
            return data
        same = bool(project.pk) and (project.sentry_org, project.sentry_project) == (org, configured)
        if same and project.sentry_project_id is not None:
            return data
        try:
            found = resolve(org, configured)
        except Unresolvable as exc:
            self.add_error("sentry_project", str(exc))
            return data
        except ProviderError as exc:
            project.sentry_project_id, project.sentry_project_slug = None, ""
            self.note = (
                f"Sentry could not be asked which project {configured!r} is ({exc}); the first poll will"
            )
            return data
        store(project, found.project)
        self.note = found.note
        return data


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectForm
    filter_horizontal = ("operators",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return (
            visible_projects(request.user) if not request.user.is_superuser else super().get_queryset(request)
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Who operates a project is a superuser's to say: an operator must not widen it.
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else (*fields, "operators")

    list_display = (
        "name",
        "vercel_project_id",
        "sentry_org",
        "sentry_project",
        "gate_method",
        "crash_free_threshold",
        "dry_run",
        "live_deployment_id",
    )
    search_fields = ("name", "vercel_project_id")
    readonly_fields = (
        "live_deployment_id",
        "live_since",
        "synced_from",
        "created_at",
        "updated_at",
        "sentry_project_id",
        "sentry_project_slug",
        "sentry_resolved_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "synced_from", "operators")}),
        (
            "Vercel",
            {
                "fields": (
                    "vercel_project_id",
                    "vercel_team_id",
                    "production_domains",
                    "start_on",
                    "live_deployment_id",
                    "live_since",
                )
            },
        ),
        (
            "Sentry",
            {
                "fields": (
                    "sentry_org",
                    "sentry_project",
                    "sentry_project_id",
                    "sentry_project_slug",
                    "sentry_resolved_at",
                    "sentry_environment",
                    "release_template",
                )
            },
        ),
        ("Notifications", {"fields": ("slack_channel", "pagerduty_routing_key_env")}),
        (
            "Gate",
            {
                "fields": (
                    "gate_method",
                    "crash_free_threshold",
                    "tolerance",
                    "false_promote",
                    "false_rollback",
                    "min_sessions",
                    "max_sessions",
                    "poll_interval",
                    "max_wait",
                    "on_timeout",
                    "no_traffic_after",
                    "on_no_traffic",
                    "gate_checks",
                    "max_consecutive_errors",
                    "fail_fast",
                    "early_fail_confidence",
                    "early_fail_min_sessions",
                    "watch_after_promotion",
                    "watch_threshold",
                    "watch_false_alarm",
                    "dry_run",
                )
            },
        ),
        ("Canary", {"fields": ("canary",)}),
        ("Checks", {"fields": ("allow_private_addresses",)}),
    )

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "note", ""):
            messages.warning(request, form.note)


@admin.register(Action)
class ActionAdmin(ScopedAdmin):
    project_path = "release__project"
    list_display = ("id", "kind", "release", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status", "kind")
    readonly_fields = [f.name for f in Action._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ScopedAdmin):
    list_display = ("received_at", "source", "event_type", "outcome", "project", "release", "note")
    list_filter = ("source", "outcome", "event_type")
    search_fields = ("delivery_id",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(ScopedAdmin):
    list_display = ("created_at", "project", "identifier", "severity", "status", "release", "paged", "reason")
    list_filter = ("status", "severity", "project")
    search_fields = ("sentry_id", "identifier", "title")
    readonly_fields = [f.name for f in Incident._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
