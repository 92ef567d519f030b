"""The operators' view: releases with their checks, history and actions, and the overrides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from notifications.messages import percent
from releases.core.errors import ProviderError
from releases.models import Action, Incident, Project, Release, WebhookDelivery
from releases.ops import release_page
from releases.ops.access import OVERRIDE, visible_projects, visible_releases
from releases.ops.overrides import ADMITS, OverrideRefused, approve, extend_wait, pause, reject, resume
from releases.ops.release_page import evidence_so_far, rule_of
from releases.workflows.sentry_project import Unresolvable, resolve, store

EXTEND_BY = timedelta(minutes=30)


# Admin action name: (the override in overrides.ADMITS, the confirmation's verb, the button).
OVERRIDE_VERBS = {
    "approve_promote_now": ("approve", "Approve", "Approve"),
    "reject_roll_back_now": ("reject", "Reject", "Reject"),
    "pause": ("pause", "Pause", "Pause"),
    "resume": ("resume", "Resume", "Resume"),
    "extend_wait_by_30_minutes": ("extend", "Give 30 more minutes to", "Extend the wait by 30 minutes"),
}


def _override(label: str, run: Callable[[Release, str, str], Any], name: str = "") -> Callable[..., Any]:
    """An admin action that first shows what is being overruled and asks why (Django's
    intermediate-page pattern: the POST without ``confirm`` renders the page), then records the
    note and the user through releases/ops/overrides.py, as the REST API does."""
    name = name or label.lower().replace(" ", "_").replace("(", "").replace(")", "")
    verb = OVERRIDE_VERBS[name][1] if name in OVERRIDE_VERBS else label

    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Release]
    ) -> TemplateResponse | None:
        note = request.POST.get("note", "").strip()
        if request.POST.get("confirm") and not note:
            modeladmin.message_user(request, "Say why in the note: the history keeps it.", messages.ERROR)
        if not request.POST.get("confirm") or not note:
            return _confirmation(modeladmin, request, queryset, name=name, verb=verb, title=label)
        for release in queryset:
            try:
                run(release, request.user.get_username(), note)
            except OverrideRefused as exc:
                modeladmin.message_user(request, f"{release}: {exc}", messages.WARNING)
            else:
                modeladmin.message_user(request, f"{release}: {label.lower()} recorded", messages.SUCCESS)
        return None

    action.short_description = label  # type: ignore[attr-defined]
    action.__name__ = name
    # Offered only to holders of releases.override_release (ReleaseAdmin.has_override_permission).
    action.allowed_permissions = ("override",)  # type: ignore[attr-defined]
    return action


def _confirmation(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Release],
    *,
    name: str,
    verb: str,
    title: str,
) -> TemplateResponse:
    rows = [
        {
            "pk": release.pk,
            "name": f"{release.project.name}@{release.version or release.deployment_id}",
            "evidence": evidence_so_far(release),
            "state": release.get_state_display(),
        }
        for release in queryset.select_related("project")
    ]
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": title,
        "verb": verb,
        "action": name,
        "rows": rows,
        "note": request.POST.get("note", ""),
    }
    return TemplateResponse(request, "admin/releases/release/confirm_override.html", context)


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
        "rule",
    )
    list_filter = ("state", "project", "verdict")
    search_fields = ("deployment_id", "version")
    list_select_related = ("project",)
    date_hierarchy = "created_at"
    actions = [
        _override(
            "Approve (promote now; a canary: advance now)",
            lambda r, u, n: approve(r.pk, u, n),
            "approve_promote_now",
        ),
        _override(
            "Reject (roll back now; a canary: abort now)",
            lambda r, u, n: reject(r.pk, u, n),
            "reject_roll_back_now",
        ),
        _override("Pause", lambda r, u, n: pause(r.pk, u, n)),
        _override("Resume", lambda r, u, n: resume(r.pk, u, n)),
        _override("Extend wait by 30 minutes", lambda r, u, n: extend_wait(r.pk, u, EXTEND_BY, n)),
    ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """A page to read, not a form: nothing on a release is edited by hand, and every change
        goes through an override (and its confirmation page)."""
        # get_object looks through get_queryset: a project the user does not operate reads as a
        # release that does not exist, as on Django's own change view.
        release = self.get_object(request, unquote(object_id))
        if release is None:
            self.message_user(request, f"Release {object_id} does not exist.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))
        if not self.has_view_or_change_permission(request, release):
            raise PermissionDenied
        overrides = [
            (name, button)
            for name, (kind, _, button) in OVERRIDE_VERBS.items()
            if release.state in ADMITS[kind] and self.has_override_permission(request)
        ]
        context = {
            **self.admin_site.each_context(request),
            **release_page.context(release),
            "opts": self.model._meta,
            "title": str(release),
            "may_override": bool(overrides),
            "overrides": overrides,
        }
        return TemplateResponse(request, "admin/releases/release/detail.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_override_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OVERRIDE)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Whether a Sentry alert is on record tells an alert rollback from a bake one (rule_of).
        alerted = Exists(Incident.objects.filter(release=OuterRef("pk")))
        return visible_releases(request.user, super().get_queryset(request)).annotate(alerted=alerted)

    @admin.display(description="release", ordering="version")
    def version_short(self, obj: Release) -> str:
        version = obj.version or obj.deployment_id
        return version if len(version) <= 16 else version[:12] + "…"

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Release) -> str:
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="crash-free / threshold", ordering="crash_free_rate")
    def crash_free(self, obj: Release) -> str:
        threshold = percent(obj.project.crash_free_threshold)
        if not obj.sessions:
            return f"no sessions / {threshold}"
        shown = f"{percent(obj.crash_free_rate)} / {threshold}"
        # A rate over a handful of sessions (a release decided by hand early) is not a pass.
        if obj.sessions < (obj.project.min_sessions or 0):
            shown += f" (only {obj.sessions:,} sessions)"
        return shown

    @admin.display(description="rule", ordering="verdict_rule")
    def rule(self, obj: Release) -> str:
        return rule_of(obj, alerted=getattr(obj, "alerted", None)) or "—"


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
