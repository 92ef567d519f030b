"""What each Vercel event means to Gatekeeper: an event -> handler table and an ignore list.

Every field is checked where it is read, so a wrong shape is a 400 naming the field, never a
500. ``record`` takes a delivery in one transaction and hands it to its event's handler, which
only writes rows; actions are dispatched on commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from releases.config import render_release
from releases.decisions import lock_project, mark_live
from releases.models import Project, Release, ReleaseEvent, WebhookDelivery
from releases.polling import start_gate
from releases.ramp import start_ramp
from releases.states import ALLOWED, FINAL, ReleaseState, transition

S = ReleaseState
DELIVERY = WebhookDelivery.Outcome
VERCEL = "vercel"

# Events a Vercel webhook may carry that say nothing a gate needs (api-contracts.md §1.4).
IGNORED = frozenset(
    {
        "deployment.created",
        "deployment.cleanup",
        "deployment.checks.failed",
        "deployment.checks.succeeded",
        "deployment.check-rerequested",
        "deployment.integration.action.start",
        "deployment.integration.action.cancel",
        "deployment.integration.action.cleanup",
        "deployment.prepared",
        "deployment.rollback",
        "project.created",
        "project.removed",
        "project.renamed",
        "project.domain.created",
        "project.rolling-release.started",
        "project.rolling-release.approved",
        "project.rolling-release.completed",
        "project.rolling-release.aborted",
        "domain.created",
        "domain.auto-renew.changed",
        "domain.certificate.add",
        "domain.certificate.renew",
        "integration-configuration.permission-upgraded",
        "integration-configuration.removed",
        "integration-configuration.scope-change-confirmed",
        "integration-resource.project-connected",
        "integration-resource.project-disconnected",
        "attack.detected",
        "firewall.attack",
        "budget.reached",
        "alerts.triggered",
        "edge-config.created",
        "edge-config.deleted",
        "edge-config.items.updated",
        "marketplace.invoice.created",
        "observability.anomaly",
    }
)


MAX_EPOCH_MS = 32503680000000  # the year 3000: anything later is not a Vercel timestamp


class BadPayload(Exception):
    pass


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: int | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status: str  # accepted | ignored
    detail: str
    accepted: bool = False


def read_envelope(data: dict[str, Any]) -> Event:
    event_id, event_type, payload = data.get("id"), data.get("type"), data.get("payload")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
        raise BadPayload("id: must be a non-empty string")
    if not isinstance(event_type, str) or not event_type:
        raise BadPayload("type: must be a non-empty string")
    if event_type not in HANDLERS and event_type not in IGNORED:
        raise BadPayload(f"type: unsupported event type {event_type!r}")
    if not isinstance(payload, dict):
        raise BadPayload("payload: must be an object")
    created = data.get("createdAt")
    if created is not None and (
        isinstance(created, bool) or not isinstance(created, (int, float)) or not 0 < created < MAX_EPOCH_MS
    ):
        raise BadPayload("createdAt: must be a time in ms since the epoch")
    return Event(event_id.strip(), event_type, int(created) if created is not None else None, payload)


def _str(payload: dict[str, Any], *path: str, required: bool = True) -> str:
    value: Any = payload
    for key in path:
        if not isinstance(value, dict):
            raise BadPayload(f"payload.{'.'.join(path)}: missing")
        value = value.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadPayload(f"payload.{'.'.join(path)}: must be a string")
    return value


@dataclass(frozen=True)
class Deployment:
    id: str
    project_id: str
    team_id: str
    url: str
    name: str
    target: str
    meta: dict[str, str]
    inspector_url: str


def read_deployment(payload: dict[str, Any]) -> Deployment:
    deployment_id = _str(payload, "deployment", "id")
    project_id = _str(payload, "project", "id")
    meta = payload["deployment"].get("meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise BadPayload("payload.deployment.meta: must be an object of strings")
    target = payload.get("target")
    if target is not None and not isinstance(target, str):
        raise BadPayload("payload.target: must be a string or null")
    team = payload.get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    if team_id is not None and not isinstance(team_id, str):
        raise BadPayload("payload.team.id: must be a string or null")
    links = payload.get("links") if isinstance(payload.get("links"), dict) else {}
    inspector = links.get("deployment") if isinstance(links.get("deployment"), str) else ""
    if not inspector:
        inspector = payload["deployment"].get("inspectorUrl") or ""
    return Deployment(
        id=deployment_id,
        project_id=project_id,
        team_id=team_id or "",
        url=_str(payload, "deployment", "url", required=False),
        name=_str(payload, "deployment", "name", required=False),
        target=target or "",
        meta=meta,
        inspector_url=inspector if isinstance(inspector, str) and inspector.startswith("https://") else "",
    )


def _project_for(deployment: Deployment) -> Project | None:
    project = Project.objects.filter(vercel_project_id=deployment.project_id).first()
    return _ours(project, deployment)


def _ours(project: Project | None, deployment: Deployment) -> Project | None:
    if project is not None and project.vercel_team_id and deployment.team_id != project.vercel_team_id:
        return None  # same project id under another team is not ours
    return project


def _event_time(created_at: int | None) -> datetime | None:
    return datetime.fromtimestamp(created_at / 1000, UTC) if created_at else None


def _release_defaults(project: Project, deployment: Deployment, created_at: int | None) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "project": project,
        "deployment_url": deployment.url[:300],
        "inspector_url": deployment.inspector_url,
        "target": deployment.target,
        "meta": deployment.meta,
        "deployment_created_at": _event_time(created_at),
    }
    try:
        defaults["version"] = render_release(
            project.release_template,
            {
                "id": deployment.id,
                "url": deployment.url,
                "name": deployment.name,
                "project_id": deployment.project_id,
                "target": deployment.target,
                "meta": deployment.meta,
            },
        )[:200]
    except (KeyError, IndexError, ValueError):
        defaults["version"] = ""
    return defaults


def _release_for(project: Project, deployment: Deployment, created_at: int | None) -> tuple[Release, bool]:
    defaults = _release_defaults(project, deployment, created_at)
    return Release.objects.get_or_create(deployment_id=deployment.id, defaults=defaults)


def record(event: Event, payload: dict[str, Any]) -> Outcome | None:
    """Record the delivery and act on it, all in one transaction; None when it is a repeat (the
    same delivery id already recorded), and nothing is written then."""
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                source=VERCEL,
                delivery_id=event.id,
                event_type=event.type,
                outcome=DELIVERY.IGNORED,
                payload=payload,
            )
            return handle(event, delivery)
    except IntegrityError:
        # The unique (source, delivery_id) constraint: Vercel retried a delivery we already took.
        if WebhookDelivery.objects.filter(source=VERCEL, delivery_id=event.id).exists():
            return None
        raise


def _ignore(delivery: WebhookDelivery, note: str, project: Project | None = None) -> Outcome:
    delivery.note = note
    delivery.project = project
    delivery.save(update_fields=["note", "project"])
    return Outcome("ignored", note)


def on_ready(event: Event, delivery: WebhookDelivery) -> Outcome:
    deployment = read_deployment(event.payload)
    return _ready(event, delivery, deployment, _project_for(deployment))


def _ready(
    event: Event, delivery: WebhookDelivery, deployment: Deployment, project: Project | None
) -> Outcome:
    if project is None:
        return _ignore(delivery, f"unknown project {deployment.project_id}")
    if deployment.target != "production":
        return _ignore(delivery, f"{deployment.target or 'preview'} deployment: not gated", project)
    if event.type != project.start_on:
        return _ignore(delivery, f"{project.name} starts gates on {project.start_on}", project)
    release, created = _release_for(project, deployment, event.created_at)
    delivery.project, delivery.release = project, release
    if not created:
        delivery.note = f"release already known ({release.state})"
        delivery.save(update_fields=["project", "release", "note"])
        return Outcome("ignored", delivery.note)
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, "gate started"
    delivery.save(update_fields=["project", "release", "outcome", "note"])
    if not release.version:
        transition(
            release,
            S.HELD,
            actor=VERCEL,
            reason=(
                f"cannot name the Sentry release: template {project.release_template!r} does not match "
                "this deployment's fields; a human decides"
            ),
        )
        return Outcome("accepted", "held: no release name", accepted=True)
    if project.canary and start_ramp(release):
        return Outcome("accepted", f"ramping {release.version}", accepted=True)
    start_gate(release)
    return Outcome("accepted", f"gating {release.version}", accepted=True)


def on_promoted(event: Event, delivery: WebhookDelivery) -> Outcome:
    deployment = read_deployment(event.payload)
    project = _project_for(deployment)
    if project is None:
        return _ignore(delivery, f"unknown project {deployment.project_id}")
    lock_project(project.pk)  # before the release's rows (its history row locks it): mark_live's order
    release, _ = _release_for(project, deployment, event.created_at)
    ReleaseEvent.objects.create(
        release=release,
        kind=ReleaseEvent.Kind.WEBHOOK,
        actor=VERCEL,
        reason="Vercel says this deployment serves production",
        data={"event": event.id},
    )
    mark_live(
        project,
        deployment.id,
        actor=VERCEL,
        reason="deployment.promoted: serves production",
        since=_event_time(event.created_at),
    )
    delivery.project, delivery.release = project, release
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, "recorded as live"
    delivery.save(update_fields=["project", "release", "outcome", "note"])
    return Outcome("accepted", "recorded as live", accepted=True)


def on_failed(event: Event, delivery: WebhookDelivery) -> Outcome:
    deployment = read_deployment(event.payload)
    project = _project_for(deployment)
    release = Release.objects.filter(deployment_id=deployment.id).first()
    if project is None or release is None:
        return _ignore(delivery, "no gate for this deployment", project)
    delivery.project, delivery.release = project, release
    if release.state in FINAL or S.CANCELLED not in ALLOWED[release.state]:
        return _ignore(delivery, f"release is {release.state}: nothing to cancel", project)
    transition(
        release,
        S.CANCELLED,
        actor=VERCEL,
        reason=f"{event.type}: the deployment will not serve",
        fields={"next_poll_at": None},
    )
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, "gate cancelled"
    delivery.save(update_fields=["project", "release", "outcome", "note"])
    return Outcome("accepted", "gate cancelled", accepted=True)


HANDLERS: dict[str, Callable[[Event, WebhookDelivery], Outcome]] = {
    "deployment.succeeded": on_ready,
    "deployment.ready": on_ready,
    "deployment.promoted": on_promoted,
    "deployment.error": on_failed,
    "deployment.canceled": on_failed,
}


def handle(event: Event, delivery: WebhookDelivery) -> Outcome:
    handler = HANDLERS.get(event.type)
    if handler is None:
        return _ignore(delivery, f"{event.type}: not used by Gatekeeper")
    return handler(event, delivery)
