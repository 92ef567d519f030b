"""Vercel's webhook: verify, record, hand off, answer. Nothing outbound happens in the request.

What each event means is the table at the bottom: a production deployment of a gated project
starts its gate (or its canary ramp), ``deployment.promoted`` records what serves production,
an error or a cancel cancels the gate, and ``deployment.rollback`` (a rollback request Vercel
has accepted, not yet a switch) is noted on the releases it names and moves nothing. Every other
type, on the list of known ones (``vercel_payload.IGNORED``) or new, is acknowledged with a 200
and recorded as ignored, so Vercel never marks the endpoint as failing for an event it added.
Every delivery is recorded once, unique on its envelope id, in the same transaction as what it
led to; actions are dispatched on commit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from releases.core.deliveries import Outcome
from releases.core.outbox import enqueue_actions, write_actions
from releases.core.production import lock_project, mark_live
from releases.core.transitions import transition
from releases.domain.lifecycle import ALLOWED, FINAL, ReleaseState
from releases.domain.release_names import render_release
from releases.inbound.common import BadPayload, HmacSignature, Malformed, WebhookView, read_json
from releases.inbound.schema import webhook_responses
from releases.inbound.spool import Inbound
from releases.inbound.vercel_payload import (
    IGNORED,
    Deployment,
    Event,
    read_deployment,
    read_envelope,
    read_rollback,
)
from releases.models import Project, Release, ReleaseEvent, WebhookDelivery
from releases.workflows.bake import watch_if_new
from releases.workflows.canary.ramp import start_ramp
from releases.workflows.gate import open_gate, start_gate
from releases.workflows.learn_production import THEN_RAMP, THEN_RECORD, confirm_spec, learn_spec, silent

logger = logging.getLogger(__name__)
S = ReleaseState
DELIVERY = WebhookDelivery.Outcome
VERCEL = "vercel"


class VercelSignature(HmacSignature):
    source = "vercel"
    header = "x-vercel-signature"
    algorithm = hashlib.sha1  # Vercel signs with HMAC-SHA1 (docs/vendor-apis.md §1.2)

    def secret(self) -> str:
        return settings.VERCEL_WEBHOOK_SECRET


class VercelWebhookView(WebhookView):
    authentication_classes = [VercelSignature]
    source = VERCEL
    kept_headers = ("x-vercel-signature",)

    @extend_schema(request={"application/json": OpenApiTypes.OBJECT}, responses=webhook_responses())
    def post(self, request: Request) -> Response:
        return self.take_or_keep(request)

    def take(self, inbound: Inbound) -> Response:
        return take(inbound)


def take(inbound: Inbound) -> Response:
    """Handle a delivery whose signature was checked: the live request's path and the replay's."""
    envelope = read_json(inbound.body)
    try:
        event = read_envelope(envelope)
        _refuse_replay(event, inbound.received_at)
        outcome = record(event, envelope)
    except BadPayload as exc:
        raise Malformed(str(exc)) from exc
    if outcome is None:
        return Response({"status": "duplicate", "id": event.id}, status=status.HTTP_200_OK)
    # DEBUG: every delivery is a WebhookDelivery row (admin, API) and an access-log line already.
    logger.debug(
        "vercel.webhook.received", extra={"event": event.type, "id": event.id, "outcome": outcome.status}
    )
    code = status.HTTP_202_ACCEPTED if outcome.accepted else status.HTTP_200_OK
    return Response({"status": outcome.status, "detail": outcome.detail, "id": event.id}, status=code)


def _refuse_replay(event: Event, arrived: datetime) -> None:
    """A delivery older than the replay window is refused: Vercel's retries end long before it.

    Its age is taken when it reached us, so one kept in the spool through a long database
    outage is still taken when it is replayed."""
    if event.created_at is None:
        return
    age = arrived.timestamp() - event.created_at / 1000
    window = settings.WEBHOOK_REPLAY_WINDOW
    if age > window:
        raise BadPayload(
            f"createdAt: {age / 3600:,.1f} h old, past the {window / 3600:g} h replay window: "
            f"refused as a replay"
        )


def _project_for(deployment: Deployment) -> Project | None:
    return _ours(deployment.project_id, deployment.team_id)


def _ours(project_id: str, team_id: str) -> Project | None:
    project = Project.objects.filter(vercel_project_id=project_id).first() if project_id else None
    if project is not None and project.vercel_team_id and team_id != project.vercel_team_id:
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
    """Act on the delivery and record it, all in one transaction; None when it is a repeat (the
    same delivery id already recorded), and nothing is written then.

    The delivery's row is written last, with what it led to: its unique id refuses a repeat and
    undoes the whole transaction with it. A second delivery for the same new deployment that
    lost the race for its release is taken again, and then finds the release known.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                delivery = WebhookDelivery(
                    source=VERCEL,
                    delivery_id=event.id,
                    event_type=event.type,
                    outcome=DELIVERY.IGNORED,
                    payload=payload,
                )
                outcome = handle(event, delivery)
                delivery.save(force_insert=True)
                return outcome
        except IntegrityError:
            if WebhookDelivery.objects.filter(source=VERCEL, delivery_id=event.id).exists():
                return None  # Vercel retried a delivery already taken
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _ignore(delivery: WebhookDelivery, note: str, project: Project | None = None) -> Outcome:
    delivery.note = note
    delivery.project = project or delivery.project
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
    known = Release.objects.filter(deployment_id=deployment.id).first()
    delivery.project = project
    if known is not None:
        delivery.release = known
        return _ignore(delivery, f"release already known ({known.state})")
    release = Release(deployment_id=deployment.id, **_release_defaults(project, deployment, event.created_at))
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, "gate started"
    if release.version and not project.canary:
        open_gate(release)
        delivery.release = release
        if silent(project, release):  # no record of what serves production: the rollback target
            enqueue_actions(write_actions(release, [learn_spec(release, THEN_RECORD)]))
        return Outcome("accepted", f"gating {release.version}", accepted=True)
    release.save(force_insert=True)
    delivery.release = release
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
    if silent(project, release):
        # Nothing on record to ramp from, as on the first release after installing Gatekeeper:
        # Vercel says what serves production, then the ramp (or, with nothing, a gate) starts.
        enqueue_actions(write_actions(release, [learn_spec(release, THEN_RAMP)]))
        return Outcome(
            "accepted", f"asking Vercel what serves production, then ramping {release.version}", accepted=True
        )
    if start_ramp(release):
        return Outcome("accepted", f"ramping {release.version}", accepted=True)
    start_gate(release)  # nothing to ramp from: gate the build as a staged one
    return Outcome("accepted", f"gating {release.version}", accepted=True)


def on_promoted(event: Event, delivery: WebhookDelivery) -> Outcome:
    deployment = read_deployment(event.payload)
    if not deployment.target:
        # Vercel does not list payload.target for this event: promoted is production by definition.
        deployment = replace(deployment, target="production")
    project = _project_for(deployment)
    if project is None:
        return _ignore(delivery, f"unknown project {deployment.project_id}")
    lock_project(project.pk)  # before the release's rows (its history row locks it): mark_live's order
    release, _ = _release_for(project, deployment, event.created_at)
    promoted_at = _event_time(event.created_at)
    late = _older_than_live(project.pk, deployment.id, promoted_at)
    if late is not None:
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.NOTE,
            actor=VERCEL,
            reason=f"deployment.promoted arrived late: {late}; what serves production is unchanged",
            data={"event": event.id},
        )
        delivery.release = release
        return _ignore(delivery, f"late deployment.promoted: {late}", project)
    ReleaseEvent.objects.create(
        release=release,
        kind=ReleaseEvent.Kind.WEBHOOK,
        actor=VERCEL,
        reason="Vercel says this deployment serves production",
        data={"event": event.id},
    )
    if _before_live(project.pk, deployment.id, promoted_at):
        # Within the margin of when the live one went live, either side: clocks may differ by
        # that much, so which came last is Vercel's own reading to settle.
        enqueue_actions(write_actions(release, [confirm_spec(release, event.id)]))
    watch_if_new(
        mark_live(
            project,
            deployment.id,
            actor=VERCEL,
            reason="deployment.promoted: serves production",
            since=_event_time(event.created_at),
        )
    )
    delivery.project, delivery.release = project, release
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, "recorded as live"
    return Outcome("accepted", "recorded as live", accepted=True)


def _older_than_live(project_id: int, deployment_id: str, promoted_at: datetime | None) -> str | None:
    """Why a deployment.promoted is older than what is recorded as live, or None when it is not.

    Vercel does not promise the order of deliveries, and a signed one can be replayed: an event
    for another deployment, from before the live one went live, must not move "live" back (a
    following alert would then be judged against the wrong release)."""
    live_id, live_since = (
        Project.objects.filter(pk=project_id).values_list("live_deployment_id", "live_since").get()
    )
    if promoted_at is None or not live_id or live_id == deployment_id or live_since is None:
        return None
    if promoted_at >= live_since - timedelta(seconds=settings.LIVE_ORDER_MARGIN):
        return None
    return (
        f"it says {promoted_at.isoformat()}, but {live_id} has served production since "
        f"{live_since.isoformat()}"
    )


def _before_live(project_id: int, deployment_id: str, promoted_at: datetime | None) -> bool:
    live_id, live_since = (
        Project.objects.filter(pk=project_id).values_list("live_deployment_id", "live_since").get()
    )
    if not (promoted_at and live_id and live_id != deployment_id and live_since):
        return False
    return promoted_at < live_since + timedelta(seconds=settings.LIVE_ORDER_MARGIN)


def on_failed(event: Event, delivery: WebhookDelivery) -> Outcome:
    deployment = read_deployment(event.payload)
    project = _project_for(deployment)
    release = Release.objects.filter(deployment_id=deployment.id).first()
    if project is None or release is None:
        return _ignore(delivery, "no gate for this deployment", project)
    delivery.project, delivery.release = project, release
    lock_project(project.pk)  # before the release's row: mark_live's order
    if release.state in FINAL or S.CANCELLED not in ALLOWED[release.state]:
        return _ignore(delivery, f"release is {release.state}: nothing to cancel", project)
    transition(
        release,
        S.CANCELLED,
        actor=VERCEL,
        reason=f"{event.type}: the deployment will not serve",
    )
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, "gate cancelled"
    return Outcome("accepted", "gate cancelled", accepted=True)


def on_rollback_requested(event: Event, delivery: WebhookDelivery) -> Outcome:
    """Noted, and "live" left as it is: Vercel sends this when it accepts the request, possibly
    before traffic moves, and sends nothing when the switch is done (no ``deployment.promoted``
    for rollbacks). Moving "live" here would judge the next alert against a deployment that may
    not serve yet. So Vercel is asked (a confirm action) until production serves the deployment
    asked for, and that reading moves "live"; a rollback Gatekeeper asked for is confirmed by its
    own action the same way."""
    request = read_rollback(event.payload)
    project = _ours(request.project_id, request.team_id)
    if project is None:
        return _ignore(delivery, f"deployment.rollback for unknown project {request.project_id or '(none)'}")
    lock_project(project.pk)  # before the releases' rows: mark_live's order
    live_id = Project.objects.filter(pk=project.pk).values_list("live_deployment_id", flat=True).get()
    to_name = request.to_id or "an earlier deployment"
    reason = (
        f"deployment.rollback: Vercel accepted a rollback to {to_name}; what serves production by "
        f"our records ({live_id or 'none known'}) is unchanged until the switch is confirmed"
    )
    named = [i for i in dict.fromkeys((request.to_id, request.from_id or live_id)) if i]
    found = {r.deployment_id: r for r in Release.objects.filter(project=project, deployment_id__in=named)}
    releases = [found[i] for i in named if i in found]
    for release in releases:
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.NOTE,
            actor=VERCEL,
            reason=reason,
            data={"event": event.id, "to": request.to_id, "from": request.from_id},
        )
    delivery.release = releases[0] if releases else None
    if releases:
        # Vercel says nothing when the switch is done: its reading says when it is.
        spec = confirm_spec(releases[0], event.id, expect=request.to_id)
        enqueue_actions(write_actions(releases[0], [spec]))
    return _ignore(delivery, f"rollback to {to_name} requested: recorded; live unchanged", project)


HANDLERS: dict[str, Callable[[Event, WebhookDelivery], Outcome]] = {
    "deployment.succeeded": on_ready,
    "deployment.ready": on_ready,
    "deployment.promoted": on_promoted,
    "deployment.error": on_failed,
    "deployment.canceled": on_failed,
    "deployment.rollback": on_rollback_requested,
}


def handle(event: Event, delivery: WebhookDelivery) -> Outcome:
    handler = HANDLERS.get(event.type)
    if handler is None:
        if event.type in IGNORED:
            return _ignore(delivery, f"{event.type}: not used by Gatekeeper")
        return _ignore(delivery, f"{event.type}: an event type Gatekeeper does not know; acknowledged")
    return handler(event, delivery)
