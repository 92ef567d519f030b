"""Reading a Vercel webhook delivery: its envelope and deployment, every field checked where it is
read, so a wrong shape is a 400 naming the field, never a 500."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from releases.inbound.common import BadPayload

# Events a Vercel webhook may carry that say nothing a gate needs (docs/vendor-apis.md §1.4): they
# and any type not listed (Vercel adds types over time) are acknowledged, recorded and ignored.
# Where Vercel's pages spell a name two ways, both are here, so the note says "known". The
# hyphenated deployment names are the deprecated ones, whose older payload shape is not read.
IGNORED = frozenset(
    {
        "deployment.created",
        "deployment.cleanup",
        "deployment.checks.failed",
        "deployment.checks.succeeded",
        "deployment.check-rerequested",
        "deployment.checkrun.start",
        "deployment.checkrun.cancel",
        "deployment.integration.action.start",
        "deployment.integration.action.cancel",
        "deployment.integration.action.cleanup",
        "deployment.prepared",
        "deployment",
        "deployment-ready",
        "deployment-prepared",
        "deployment-error",
        "deployment-canceled",
        "deployment-check-rerequested",
        "deployment-checks-completed",
        "test-webhook",
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
        "domain.auto-renew-changed",
        "domain.certificate.add",
        "domain.certificate-add",
        "domain.certificate.renew",
        "project.domain-created",
        "integration-configuration.permission-upgraded",
        "integration-configuration.removed",
        "integration-configuration.scope-change-confirmed",
        "integration-resource.project-connected",
        "integration-resource.project-disconnected",
        "attack.detected",
        "firewall.attack",
        "budget.reached",
        "triggered",
        "edge-config.created",
        "edge-config.deleted",
        "edge-config.items.updated",
        "marketplace.invoice.created",
        "observability.anomaly",
    }
)
MAX_EPOCH_MS = 32503680000000  # the year 3000: anything later is not a Vercel timestamp


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: int | None
    payload: dict[str, Any]


def read_envelope(data: dict[str, Any]) -> Event:
    """The delivery's envelope. Any event type is read: the handler table decides what it does."""
    event_id, event_type, payload = data.get("id"), data.get("type"), data.get("payload")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
        raise BadPayload("id: must be a non-empty string")
    if not isinstance(event_type, str) or not event_type:
        raise BadPayload("type: must be a non-empty string")
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
    raw_links = payload.get("links")
    links: dict[str, Any] = raw_links if isinstance(raw_links, dict) else {}
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


@dataclass(frozen=True)
class RollbackRequest:
    project_id: str
    team_id: str
    to_id: str  # the deployment production is to serve again; "" when the payload does not say
    from_id: str  # what served production when the rollback was asked for; "" when not said


def _optional(payload: dict[str, Any], *path: str) -> str:
    """A string that may be absent at any depth (""), but is a 400 when present with another type."""
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadPayload(f"payload.{'.'.join(path)}: must be a string")
    return value


def read_rollback(payload: dict[str, Any]) -> RollbackRequest:
    """A ``deployment.rollback``: Vercel accepted a rollback request. Its fields are less settled
    than the other deployment events' (recorded ones name ``fromDeploymentId`` and
    ``toDeploymentId``; ``project`` and ``deployment`` are the common objects), so each is optional:
    a missing one makes the note vaguer (or, without the project, the delivery unattributed), never
    a 400 that Vercel would retry for a day."""
    to_id = _optional(payload, "toDeploymentId") or _optional(payload, "deployment", "id")
    return RollbackRequest(
        project_id=_optional(payload, "project", "id"),
        team_id=_optional(payload, "team", "id"),
        to_id=to_id,
        from_id=_optional(payload, "fromDeploymentId"),
    )
