"""What each Vercel event means to Gatekeeper: an event -> handler table and an ignore list.

Every field is checked where it is read, so a wrong shape is a 400 naming the field, never a
500. ``record`` takes a delivery in one transaction: a production deployment of a gated project
starts its gate in one statement (``_gate_at_once``), anything else goes to its handler, which
only writes rows; actions are dispatched on commit.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from releases.config import render_release
from releases.decisions import GATEKEEPER, lock_project, mark_live
from releases.models import Project, Release, ReleaseEvent, WebhookDelivery
from releases.polling import gate_start, start_gate
from releases.ramp import start_ramp
from releases.rows import (
    RowMaker,
    insert_columns,
    insert_ignoring_conflict,
    insert_values,
    load_first,
    load_versioned,
)
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


@dataclass
class _Held:
    """A project held in memory, its row as PostgreSQL printed it, and what gating its
    deployments writes, prepared once (rows.RowMaker)."""

    project: Project
    row: str
    prototype: Release = field(init=False)
    releases: RowMaker = field(init=False)
    deliveries: RowMaker = field(init=False)
    history: RowMaker = field(init=False)

    def __post_init__(self) -> None:
        self.prototype = Release(project=self.project)
        self.releases = RowMaker(Release, {"project": self.project})
        self.deliveries = RowMaker(
            WebhookDelivery,
            {"source": VERCEL, "project": self.project, "outcome": DELIVERY.ACCEPTED, "note": "gate started"},
            skip="release",
        )
        self.history = RowMaker(
            ReleaseEvent,
            {
                "kind": ReleaseEvent.Kind.TRANSITION,
                "from_state": S.RECEIVED,
                "to_state": S.GATING,
                "actor": GATEKEEPER,
                "data": {},
            },
            skip="release",
        )


# Projects by Vercel project id, each with its row as it was read (rows.load_versioned).
# A new production deployment is gated in one statement that first checks the row still reads
# the same, so a project edited since (sync_config, the admin, a queryset update) is read again,
# never used stale: a stale copy costs one more try, not a wrong gate. Saves a round trip and a
# transaction per delivery (bench/ingest.py). Configured projects are few: no eviction.
_PROJECTS: dict[str, _Held] = {}


def _project_for(deployment: Deployment) -> Project | None:
    if connection.vendor == "postgresql":
        found = load_versioned(Project, "vercel_project_id = %s", [deployment.project_id])
        if found is None:
            _PROJECTS.pop(deployment.project_id, None)
            project = None
        else:
            project = found[0]
            held = _PROJECTS.get(deployment.project_id)
            if held is None or held.row != found[1]:
                _PROJECTS[deployment.project_id] = _Held(*found)
    else:
        project = load_first(Project, "vercel_project_id = %s", [deployment.project_id])
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


class _Repeat(Exception):
    """The delivery id is already recorded: what this transaction wrote is undone."""


@cache
def _gate_sql(guarded: bool) -> str:
    """_gate_at_once's statement; ``guarded``: only while the project's row reads as given.

    The delivery's INSERT has no ON CONFLICT: a repeated delivery id fails the whole statement,
    so its release is not written either, even outside a transaction.
    """
    release_columns, release_marks = insert_columns(Release)
    delivery_columns, delivery_marks = insert_columns(WebhookDelivery, skip="release")
    history_columns, history_marks = insert_columns(ReleaseEvent, skip="release")
    table = Project._meta.db_table
    current = f"SELECT 1 FROM {table} WHERE id = %s AND {table}::text = %s" if guarded else "SELECT 1"  # noqa: S608
    return (
        f"WITH current AS ({current}),"  # noqa: S608 - names from the models
        f" release AS (INSERT INTO {Release._meta.db_table} ({release_columns})"
        f"  SELECT {release_marks} FROM current ON CONFLICT (deployment_id) DO NOTHING RETURNING id),"
        f" delivery AS (INSERT INTO {WebhookDelivery._meta.db_table} (release_id, {delivery_columns})"
        f"  SELECT id, {delivery_marks} FROM release RETURNING id),"
        f" history AS (INSERT INTO {ReleaseEvent._meta.db_table} (release_id, {history_columns})"
        f"  SELECT id, {history_marks} FROM release)"
        " SELECT EXISTS (SELECT 1 FROM current), (SELECT id FROM release), (SELECT id FROM delivery)"
    )


def _gate_at_once(release: Release, delivery: WebhookDelivery) -> bool:
    """The release, created already gating, its history row, and the delivery that started it:
    three rows in one statement. False, with nothing written, when the deployment already has a
    release; raises _Repeat, with nothing written, when the delivery is a repeat.

    The same rows as recording the delivery, get_or_create and start_gate (received -> gating,
    with its history row) wrote in eight statements (the delivery, get_or_create's SELECT,
    savepoint, INSERT and release, the delivery's UPDATE, the transition's UPDATE and history
    row); the ORM spent longer building those than PostgreSQL running them (bench/ingest.py).
    Uniqueness does the rest: a deployment gets one release, a delivery id one row.
    """
    now = timezone.now()
    fields, reason = gate_start(release, now)
    for name, value in {**fields, "state": S.GATING, "updated_at": now}.items():
        setattr(release, name, value)
    history = ReleaseEvent(
        kind=ReleaseEvent.Kind.TRANSITION,
        from_state=S.RECEIVED,
        to_state=S.GATING,
        actor=GATEKEEPER,
        reason=reason,
        data={},
        created_at=now,
    )
    delivery.project, delivery.outcome, delivery.note = release.project, DELIVERY.ACCEPTED, "gate started"
    _, _, release_values = insert_values(release)
    _, _, delivery_values = insert_values(delivery, skip="release")
    _, _, history_values = insert_values(history, skip="release")
    _, release_id, delivery_id = _run_gate([], release_values, delivery_values, history_values)
    if release_id is None:
        delivery.project, delivery.outcome, delivery.note = None, DELIVERY.IGNORED, ""
        return False
    for row, pk in ((release, release_id), (delivery, delivery_id)):
        row.pk = pk
        row._state.adding, row._state.db = False, connection.alias
    delivery.release = release
    return True


def _run_gate(
    guard: list[Any], release: list[Any], delivery: list[Any], history: list[Any]
) -> tuple[bool, int | None, int | None]:
    """Run _gate_sql: (the project still reads as ``guard`` says, the release's id or None, the
    delivery's id or None); _Repeat, with nothing written, when the delivery id is taken."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(_gate_sql(bool(guard)), [*guard, *release, *delivery, *history])
            return cursor.fetchone()
    except IntegrityError as exc:
        if _constraint(exc) == UNIQUE_DELIVERY:
            raise _Repeat from exc
        raise


def _plain_utf8(raw: bytes) -> bool:
    """Whether PostgreSQL reads ``raw`` as the JSON Python read: Python also takes UTF-16 and
    UTF-32 bodies and a UTF-8 byte order mark, which jsonb refuses (tests/fuzz found both)."""
    if not raw or b"\x00" in raw or raw.startswith(codecs.BOM_UTF8):
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _verbatim(text: bytes) -> bytes:
    return text


UNIQUE_DELIVERY = "unique_delivery"  # WebhookDelivery's (source, delivery_id) constraint


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _gate_from_memory(event: Event, payload: dict[str, Any], raw: bytes) -> Outcome | None:
    """The common case in one statement and no transaction: a production deployment of a gated
    project held in memory (_PROJECTS), its rows made without model instances. None when it does
    not apply, the copy is stale, or the deployment is already known: ``record`` then takes the
    delivery the long way, which writes the same rows (tests/releases/test_webhook_vercel_ingest.py)."""
    if HANDLERS.get(event.type) is not on_ready or connection.vendor != "postgresql":
        return None
    deployment = read_deployment(event.payload)
    held = _PROJECTS.get(deployment.project_id)
    if held is None:
        return None
    project = held.project
    if _ours(project, deployment) is None or not _gated(event, deployment, project) or project.canary:
        return None
    release = {"deployment_id": deployment.id, **_release_defaults(project, deployment, event.created_at)}
    del release["project"]
    if not release["version"]:
        return None
    now = timezone.now()
    fields, reason = gate_start(held.prototype, now)
    release_values = held.releases.values(now, {**release, **fields, "state": S.GATING, "updated_at": now})
    given = {"delivery_id": event.id, "event_type": event.type}
    if _plain_utf8(raw):
        delivery_values = held.deliveries.values(now, given, {"payload": Jsonb(raw, dumps=_verbatim)})
    else:
        delivery_values = held.deliveries.values(now, {**given, "payload": payload})
    history_values = held.history.values(now, {"reason": reason, "created_at": now})
    # Inside a caller's transaction (tests, a management command), a savepoint keeps a refused
    # INSERT from breaking it; on its own the statement is its own transaction.
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        fresh, release_id, _ = _run_gate(
            [project.pk, held.row], release_values, delivery_values, history_values
        )
    if not fresh:
        _PROJECTS.pop(deployment.project_id, None)
    if not fresh or release_id is None:
        return None
    return Outcome("accepted", f"gating {release['version']}", accepted=True)


def record(event: Event, payload: dict[str, Any], raw: bytes = b"") -> Outcome | None:
    """Record the delivery and act on it, all in one transaction; None when it is a repeat (the
    same delivery id already recorded), and nothing is written then. ``raw``: the body
    ``payload`` was parsed from, stored as received where that saves work."""
    try:
        outcome = _gate_from_memory(event, payload, raw)
        if outcome is not None:
            return outcome
        delivery = WebhookDelivery(
            source=VERCEL,
            delivery_id=event.id,
            event_type=event.type,
            outcome=DELIVERY.IGNORED,
            payload=payload,
        )
        with transaction.atomic():
            if HANDLERS.get(event.type) is on_ready:
                deployment = read_deployment(event.payload)
                project = _project_for(deployment)
                if project is not None and _gated(event, deployment, project) and not project.canary:
                    release = Release(
                        deployment_id=deployment.id,
                        **_release_defaults(project, deployment, event.created_at),
                    )
                    if release.version and _gate_at_once(release, delivery):
                        return Outcome("accepted", f"gating {release.version}", accepted=True)
                if not insert_ignoring_conflict(delivery):
                    return None
                return _ready(event, delivery, deployment, project)
            if not insert_ignoring_conflict(delivery):
                return None
            return handle(event, delivery)
    except _Repeat:
        return None


def _ignore(delivery: WebhookDelivery, note: str, project: Project | None = None) -> Outcome:
    delivery.note = note
    delivery.project = project
    delivery.save(update_fields=["note", "project"])
    return Outcome("ignored", note)


def _gated(event: Event, deployment: Deployment, project: Project) -> bool:
    return deployment.target == "production" and event.type == project.start_on


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
