"""Apply a validated config to the database: create and update projects, never delete history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from releases.core.errors import ProviderError
from releases.integrations.vercel.client import VercelClient
from releases.models import Project
from releases.ops.config import ConfigError
from releases.workflows.sentry_project import Unresolvable, resolve


@dataclass
class Change:
    name: str
    kind: str  # created | updated | unchanged | kept
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "updated":
            diffs = ", ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in self.fields.items())
            return f"updated {self.name}: {diffs}"
        if self.kind == "kept":
            return f"kept {self.name} (not in the file; its history stays)"
        return f"{self.kind} {self.name}"


def _show(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return repr(value)


def resolve_sentry(projects: list[dict[str, Any]]) -> list[str]:
    """Ask Sentry which project each ``sentry.project`` is, and add its id and slug to the values.

    A project Sentry does not know (or the token may not read) refuses the whole file, each
    named by its path. When Sentry cannot be asked, the file still applies: the first poll
    resolves what is missing. Returns notes to print."""
    problems, notes = [], []
    stored = {p.name: p for p in Project.objects.filter(name__in=[v["name"] for v in projects])}
    for index, values in enumerate(projects):
        where = f"projects[{index}].sentry.project"
        org, configured = values["sentry_org"], values["sentry_project"]
        before = stored.get(values["name"])
        same = before is not None and (before.sentry_org, before.sentry_project) == (org, configured)
        try:
            found = resolve(org, configured, before.sentry_project_id if same and before else None)
        except Unresolvable as exc:
            problems.append(f"{where}: {exc}")
            continue
        except ProviderError as exc:
            notes.append(
                f"{values['name']}: {where} not checked, Sentry could not be asked ({exc}); "
                "the first poll resolves it"
            )
            if not same:  # an id resolved for another project must not stay
                values.update(sentry_project_id=None, sentry_project_slug="")
            continue
        values.update(sentry_project_id=found.project.id, sentry_project_slug=found.project.slug)
        if found.note:
            notes.append(f"{values['name']}: {found.note}")
    if problems:
        raise ConfigError(problems)
    return notes


def check_vercel(projects: list[dict[str, Any]]) -> list[str]:
    """Notes on what Vercel has configured that changes what a promote does.

    With Rolling Releases on in Vercel, a promote starts a rolling release rather than moving
    production; a project without ``canary:`` here then has its gate-passed promote completed
    at once, which a user may not expect, and a canary on ``router: vercel`` needs its stages
    to match Vercel's. Nothing here refuses the file: Vercel's setting can change at any time."""
    notes = []
    for index, values in enumerate(projects):
        name, project_id = values["name"], values["vercel_project_id"]
        client = VercelClient(
            settings.VERCEL_API_URL,
            settings.VERCEL_TOKEN,
            team_id=values.get("vercel_team_id") or None,
            timeout=settings.PROVIDER_TIMEOUT,
        )
        try:
            with client:
                stages = client.rolling_release_stages(project_id)
        except ProviderError as exc:
            if exc.status in (403, 404):
                notes.append(
                    f"{name}: projects[{index}].vercel.project_id: Vercel has no project {project_id} that "
                    "VERCEL_TOKEN can see (a team's project needs vercel.team_id)"
                )
            else:
                notes.append(
                    f"{name}: projects[{index}].vercel not checked, Vercel could not be asked ({exc})"
                )
            continue
        canary = values.get("canary")
        if stages is None:
            continue
        shown = ", ".join(f"{p:g}%" for p in stages)
        if not canary:
            notes.append(
                f"{name}: Vercel project {project_id} has Rolling Releases configured ({shown}) and "
                f"projects[{index}] has no canary: section, so a promote starts a rolling release; "
                "Gatekeeper completes it as soon as the gate passes. Add canary: (router: vercel) "
                "to ramp it stage by stage instead"
            )
        elif canary.get("router") == "vercel":
            ours = [float(stage["percent"]) for stage in canary.get("stages", [])]
            if ours != stages:
                notes.append(
                    f"{name}: projects[{index}].canary.stages ({', '.join(f'{p:g}%' for p in ours)}) differ "
                    f"from Vercel's Rolling Releases stages ({shown}); make them match, or ramps will hold"
                )
    return notes


def apply(projects: list[dict[str, Any]], source: str) -> list[Change]:
    changes: list[Change] = []
    names = set()
    try:
        with transaction.atomic():
            for values in projects:
                names.add(values["name"])
                project = Project.objects.select_for_update().filter(name=values["name"]).first()
                if project is None:
                    Project.objects.create(**values, synced_from=source)
                    changes.append(Change(values["name"], "created"))
                    continue
                diffs = {k: (getattr(project, k), v) for k, v in values.items() if getattr(project, k) != v}
                if diffs:
                    for key, (_, new) in diffs.items():
                        setattr(project, key, new)
                    project.synced_from = source
                    project.save()
                    changes.append(Change(project.name, "updated", diffs))
                else:
                    changes.append(Change(project.name, "unchanged"))
    except IntegrityError as exc:
        raise ConfigError([f"conflicts with a project already in the database: {exc}"]) from exc
    resolved = [v["name"] for v in projects if v.get("sentry_project_id") is not None]
    Project.objects.filter(name__in=resolved).update(sentry_resolved_at=timezone.now())
    for name in Project.objects.exclude(name__in=names).values_list("name", flat=True):
        changes.append(Change(name, "kept"))
    return changes
