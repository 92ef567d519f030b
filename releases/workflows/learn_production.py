"""What serves production when our records are silent: asked of Vercel, recorded as learned.

Gatekeeper knows what serves production from what it promoted and from ``deployment.promoted``.
On a project it has never seen promote (the first release after installing it) it knows
nothing: a canary would have nothing to ramp from, and a staged build that fails nothing to
keep. So that release asks Vercel, through the outbox like any call to a vendor: the production
domains' aliases, then the project's production target (the reading a rollback uses). The
answer is recorded as a release marked ``learned``, live from now, and is the previous
deployment from then on: the canary's baseline and the rollback target.

The same reading settles what a webhook leaves in doubt: a ``deployment.promoted`` that may
be older than the live one, and a ``deployment.rollback`` (a request Vercel accepted, not yet a
switch, and never followed by a ``deployment.promoted``). Production is confirmed with Vercel,
for a rollback until it serves the deployment asked for or a few minutes have passed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from releases.core.outbox import ActionSpec, Confirming, Done, Handler, register
from releases.core.production import known_good, lock_project, mark_live
from releases.domain.lifecycle import ReleaseState
from releases.domain.release_names import render_release
from releases.integrations import clients
from releases.models import Action, Project, Release, ReleaseEvent
from releases.workflows.canary.ramp import start_ramp
from releases.workflows.gate import start_gate

logger = logging.getLogger(__name__)
S = ReleaseState
VERCEL = "vercel"
THEN_RAMP = "ramp"  # a canary release waiting in received: ramp it, or gate it if nothing serves
THEN_RECORD = "record"  # a gate already running: only the rollback target was missing
THEN_CONFIRM = "confirm"  # a webhook left in doubt what serves production: Vercel says
CONFIRM_FOR = timedelta(minutes=3)  # as long as Vercel's CLI waits for a rollback to land
CONFIRM_EVERY = 2.0


def silent(project: Project, release: Release) -> bool:
    """Our records say nothing about what serves production, besides ``release`` itself."""
    return not project.live_deployment_id and known_good(project, exclude=release) is None


def learn_spec(release: Release, then: str) -> ActionSpec:
    return ActionSpec(kind=Action.Kind.LEARN, key=f"learn:{release.pk}", payload={"then": then})


def confirm_spec(release: Release, event_id: str, expect: str = "") -> ActionSpec:
    """Ask Vercel what serves production, because ``event_id`` left it in doubt; ``expect``: the
    deployment a rollback asked for, waited for until CONFIRM_FOR has passed."""
    until = (timezone.now() + CONFIRM_FOR).isoformat()
    payload = {"then": THEN_CONFIRM, "expect": expect, "until": until, "event": event_id}
    return ActionSpec(kind=Action.Kind.LEARN, key=f"confirm-live:{event_id}", payload=payload)


def _perform(action: Action) -> Done | Confirming:
    release = action.release
    project = release.project
    vercel = clients.vercel(project)
    serving = vercel.production_deployment_id(project.vercel_project_id, project.production_domains)
    payload = action.payload
    if payload.get("then") == THEN_CONFIRM:
        expect = payload.get("expect") or ""
        if expect and serving != expect and timezone.now() < datetime.fromisoformat(payload["until"]):
            return Confirming({"serving": serving}, recheck_in=CONFIRM_EVERY)
    elif not serving or serving == release.deployment_id:
        return Done({"serving": serving})
    if not serving or Release.objects.filter(deployment_id=serving, project=project).exists():
        return Done({"serving": serving})  # nothing to learn about it: it is on record
    found = vercel.get_deployment(serving)
    deployment = {
        "id": found.id,
        "url": found.url,
        "project_id": found.project_id,
        "target": found.target or "production",
        "meta": found.meta,
        "inspector_url": found.inspector_url or "",
        "created_at_ms": found.created_at_ms,
    }
    return Done({"serving": serving, "deployment": deployment})


def _learned(project: Project, deployment: dict[str, Any]) -> Release | None:
    """The release of the deployment Vercel said serves production, recorded live."""
    if deployment.get("project_id") != project.vercel_project_id:
        return None  # an alias pointing into another project is not this project's production
    try:
        version = render_release(project.release_template, deployment)[:200]
    except (KeyError, IndexError, ValueError):
        version = ""  # its crash rate cannot be compared; it still is the rollback target
    release, created = Release.objects.get_or_create(
        deployment_id=deployment["id"],
        defaults={
            "project": project,
            "deployment_url": str(deployment.get("url", ""))[:300],
            "inspector_url": str(deployment.get("inspector_url", ""))[:500],
            "target": deployment["target"],
            "meta": deployment.get("meta") or {},
            "version": version,
            "learned": True,
        },
    )
    if release.project_id != project.pk:
        return None
    reason = "learned from Vercel: it serves production, and Gatekeeper had no record of what does"
    ReleaseEvent.objects.create(
        release=release, kind=ReleaseEvent.Kind.NOTE, actor=VERCEL, reason=reason, data={"created": created}
    )
    mark_live(project, release.deployment_id, actor=VERCEL, reason=reason)
    return release


def _then(action: Action, release: Release, learned: Release | None, why: str) -> None:
    if action.payload.get("then") != THEN_RAMP or release.state != S.RECEIVED:
        return
    if start_ramp(release):
        return
    start_gate(release, reason=f"nothing to ramp from ({why}): gated as a staged build")


def _learnt(action: Action, done: Done) -> None:
    """In the action's transaction: record what Vercel said, then go on with the release."""
    project_id = Release.objects.filter(pk=action.release_id).values_list("project_id", flat=True).get()
    lock_project(project_id)  # the project before its releases, as mark_live takes them
    release = Release.objects.select_for_update().select_related("project").get(pk=action.release_id)
    project = Project.objects.get(pk=project_id)
    serving, deployment = done.result.get("serving"), done.result.get("deployment")
    if action.payload.get("then") == THEN_CONFIRM:
        _confirmed(project, serving, deployment)
        return
    learned = None
    if deployment and silent(project, release):
        learned = _learned(project, deployment)
        release.project.refresh_from_db()
    why = "Vercel says nothing else serves production" if learned is None else ""
    if serving == release.deployment_id:
        why = "Vercel says this deployment already serves production"
    _then(action, release, learned, why)


def _confirmed(project: Project, serving: str | None, deployment: dict[str, Any] | None) -> None:
    """Vercel said what serves production: the record follows when it differs."""
    if not serving or serving == project.live_deployment_id:
        return
    if Release.objects.filter(deployment_id=serving, project=project).exists():
        mark_live(project, serving, actor=VERCEL, reason="confirmed with Vercel: it serves production")
    elif deployment:
        _learned(project, deployment)


def _failed(action: Action, error: str) -> None:
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("project").get(pk=action.release_id)
        _then(action, release, None, f"Vercel could not say what serves production: {error}")


register(
    Action.Kind.LEARN, Handler(perform=_perform, idempotent=True, on_success=_learnt, on_failure=_failed)
)
