"""Control operations on the simulated Vercel account: what a test or scenario sets up.

These are the "someone pushed a commit" side of Vercel: creating projects and deployments,
starting release traffic for a deployment, and sending the webhooks Vercel would send.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from simulator.vercel_model import (
    Deployment,
    Project,
    new_url,
    random_id,
    random_sha,
    v9_project,
    v13_deployment,
    webhook_envelope,
)
from simulator.vercel_rolling import parse_stages, rolling_view
from simulator.webhooks import VERCEL_TIMEOUT, check_tamper, target_url, vercel_signature
from simulator.wire import ControlError, as_number, as_object, as_text, require_text

if TYPE_CHECKING:
    from simulator.vercel import VercelService

STATES = ("QUEUED", "BUILDING", "ERROR", "INITIALIZING", "READY", "CANCELED")
TARGETS = ("production", "staging", "preview", None)
SENTRY_KEYS = ("org", "project", "project_id", "environment")


def _domains(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(d, str) and d for d in value):
        raise ControlError("domains: a list of host names")
    return [d.strip().lower().rstrip(".") for d in value]


def _sentry(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    sentry = as_object(value, "sentry")
    unknown = set(sentry) - set(SENTRY_KEYS)
    if unknown:
        raise ControlError(f"sentry: unknown keys {sorted(unknown)}")
    return dict(sentry)


def create_project(vercel: VercelService, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    project_id = as_text(body, "id") or random_id("prj_")
    with vercel.sim.lock:
        existing = vercel.projects.get(project_id)
        if existing is not None:  # idempotent so a scenario or fixture can run twice
            return 200, v9_project(existing, vercel.of_project(existing), vercel.now_ms())
        project = Project(
            id=project_id,
            name=require_text(body, "name"),
            team_id=as_text(body, "team_id"),
            team_slug=as_text(body, "team_slug"),
            domains=_domains(body.get("domains")),
            created_at=vercel.now_ms(),
            sentry=_sentry(body.get("sentry")),
        )
        vercel.projects[project.id] = project
        return 201, v9_project(project, [], vercel.now_ms())


def update_project(vercel: VercelService, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with vercel.sim.lock:
        project = _project(vercel, project_id)
        if "fail_alias_jobs" in body:
            count = body["fail_alias_jobs"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ControlError("fail_alias_jobs: a non-negative integer")
            project.fail_alias_jobs = count
        if "domains" in body:
            project.domains = _domains(body["domains"])
        if "sentry" in body:
            project.sentry = _sentry(body["sentry"])
        if "rolling_release" in body:  # affects the next release only, as on Vercel
            project.rolling_stages = parse_stages(body["rolling_release"])
        return project_view(vercel, project_id)


def _project(vercel: VercelService, project_id: str) -> Project:
    project = vercel.projects.get(project_id)
    if project is None:
        raise ControlError(f"no project {project_id!r}", 404)
    return project


def project_view(vercel: VercelService, project_id: str) -> dict[str, Any]:
    with vercel.sim.lock:
        project = _project(vercel, project_id)
        deployments = sorted(vercel.of_project(project), key=lambda d: d.seq)
        return {
            "project": {
                "id": project.id,
                "name": project.name,
                "team_id": project.team_id,
                "team_slug": project.team_slug,
                "domains": project.domains,
                "sentry": project.sentry,
                "fail_alias_jobs": project.fail_alias_jobs,
            },
            "production_deployment_id": project.production_id,
            "alias_jobs": [dict(job) for job in project.jobs],
            "last_alias_request": dict(project.jobs[-1]) if project.jobs else None,
            "last_rollback_target": project.last_rollback_target,
            "rolling_release": rolling_view(project),
            "deployments": [v13_deployment(d) for d in deployments],
        }


def _meta(project: Project, value: Any) -> dict[str, str]:
    given = as_object(value, "meta") if value is not None else {}
    if not all(isinstance(v, str) for v in given.values()):
        raise ControlError("meta: values must be strings (Vercel meta is map<string,string>)")
    defaults = {
        "githubCommitSha": random_sha(),
        "githubCommitRef": "main",
        "githubCommitMessage": "simulated commit",
        "githubCommitAuthorLogin": "dev-alice",
        "githubOrg": project.team_slug or "acme",
        "githubRepo": project.name,
        "githubDeployment": "1",
    }
    return {**defaults, **given}


def create_deployment(vercel: VercelService, body: dict[str, Any]) -> dict[str, Any]:
    sim = vercel.sim
    target = body.get("target", "production")
    if target not in TARGETS:
        raise ControlError("target: production, staging, preview or null")
    target = None if target == "preview" else target
    state = as_text(body, "state", "READY") or "READY"
    if state not in STATES:
        raise ControlError(f"state: one of {', '.join(STATES)}")
    live = bool(body.get("live", False))
    if live and (target != "production" or state != "READY"):
        raise ControlError("live: only a READY production deployment can serve production")
    events = body.get("webhooks") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ControlError("webhooks: a list of event types")
    with sim.lock:
        project = _project(vercel, require_text(body, "project_id"))
        deployment_id = as_text(body, "id") or random_id("dpl_")
        if deployment_id in vercel.deployments:
            raise ControlError(f"deployment {deployment_id!r} already exists", 409)
        created_at = as_number(body, "created_at")
        vercel.seq += 1
        deployment = Deployment(
            id=deployment_id,
            project=project,
            url=new_url(project),
            meta=_meta(project, body.get("meta")),
            target=target,
            created_at=int(created_at) if created_at is not None else vercel.now_ms(),
            seq=vercel.seq,
            state=state,
            substate=("STAGED" if target else None) if state == "READY" else None,
            alias_assigned=target is None and state == "READY",  # previews get their URLs at once
        )
        traffic = None
        if body.get("traffic") is not None:  # first, so a bad traffic spec leaves nothing behind
            traffic = _start_traffic(vercel, deployment, as_object(body["traffic"], "traffic"))
        vercel.deployments[deployment.id] = deployment
        if live:
            # Auto-assigned production domains, as when a production build finishes.
            vercel.go_live(deployment)
        shape = v13_deployment(deployment)
    if live and "deployment.promoted" not in events and sim.options.gatekeeper_url:
        events = [*events, "deployment.promoted"]
    deliveries = [_send_now(vercel, deployment, event) for event in events]
    return {"deployment": shape, "deliveries": deliveries, "traffic": traffic}


def _start_traffic(vercel: VercelService, deployment: Deployment, given: dict[str, Any]) -> dict[str, Any]:
    """Traffic for the deployment's release; the project's Sentry mapping fills the gaps and the
    release defaults to the commit sha (Gatekeeper's default ``{meta[githubCommitSha]}``)."""
    spec = {**deployment.project.sentry, **given}
    spec.setdefault("release", deployment.meta.get("githubCommitSha"))
    spec.setdefault("environment", "production")
    for key in ("org", "project"):
        if not spec.get(key):
            raise ControlError(f"traffic.{key}: required (or set the project's sentry mapping)")
    traffic = vercel.sim.traffic.register(spec)
    return traffic.to_json(vercel.sim.now())


def _send_now(vercel: VercelService, deployment: Deployment, event_type: str) -> dict[str, Any]:
    try:
        url = target_url(vercel.sim, None, "/webhooks/vercel/")
    except ControlError as missing:
        return {"event_id": None, "type": event_type, "status": None, "body": None, "error": missing.message}
    with vercel.sim.lock:
        body, headers, event_id = signed_event(vercel, deployment, event_type)
    [delivery] = vercel.sim.webhooks.deliver(
        url=url, body=body, headers=headers, event_id=event_id, event_type=event_type, timeout=VERCEL_TIMEOUT
    )
    if not delivery.ok:
        # Vercel keeps retrying the same event; the caller still sees how the first try went.
        vercel.sim.webhooks.deliver_later(
            build=lambda: (url, body, headers, event_id, event_type), timeout=VERCEL_TIMEOUT, first_attempt=2
        )
    return delivery.summary()


def send_webhooks(vercel: VercelService, body: dict[str, Any]) -> dict[str, Any]:
    event_type = require_text(body, "type")
    tamper = check_tamper(body.get("tamper"))
    repeat = body.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100:
        raise ControlError("repeat: an integer from 1 to 100")
    url = target_url(vercel.sim, body.get("target"), "/webhooks/vercel/")
    with vercel.sim.lock:
        deployment = vercel.deployments.get(require_text(body, "deployment_id"))
        if deployment is None:
            raise ControlError(f"no deployment {body['deployment_id']!r}", 404)
        raw, headers, event_id = signed_event(
            vercel, deployment, event_type, as_text(body, "event_id"), tamper
        )
    deliveries = vercel.sim.webhooks.deliver(
        url=url,
        body=raw,
        headers=headers,
        event_id=event_id,
        event_type=event_type,
        timeout=VERCEL_TIMEOUT,
        repeat=repeat,
        parallel=bool(body.get("parallel", False)),
    )
    return {"deliveries": [d.summary() for d in deliveries]}


# --- outbound webhooks -------------------------------------------------------------------------


def signed_event(
    vercel: VercelService,
    deployment: Deployment,
    event_type: str,
    event_id: str | None = None,
    tamper: str | None = None,
) -> tuple[bytes, dict[str, str], str]:
    """The exact bytes to send, their headers (signature included) and the event id."""
    event_id = event_id or random_id("evt_", 17)
    envelope = webhook_envelope(deployment, event_type, event_id, vercel.now_ms())
    body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "vercel-webhooks-simulator"}
    secret = vercel.sim.options.vercel_webhook_secret
    if tamper == "bad_signature":
        headers["x-vercel-signature"] = vercel_signature(body, (secret or "") + "-not-the-secret")
    elif tamper != "no_signature" and secret:
        headers["x-vercel-signature"] = vercel_signature(body, secret)
    return body, headers, event_id


def send_later(vercel: VercelService, deployment: Deployment, event_type: str) -> None:
    """Deliver in the background, retrying on failure, as Vercel does after a promote."""
    base = (vercel.sim.options.gatekeeper_url or "").rstrip("/")

    def build() -> tuple[str, bytes, dict[str, str], str, str]:
        with vercel.sim.lock:
            body, headers, event_id = signed_event(vercel, deployment, event_type)
        return f"{base}/webhooks/vercel/", body, headers, event_id, event_type

    vercel.sim.webhooks.deliver_later(build=build, timeout=VERCEL_TIMEOUT)
