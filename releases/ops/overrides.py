"""What a human may do to a release, from the admin or the REST API: each a recorded transition."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from releases.core.transitions import transition
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, Release, ReleaseEvent
from releases.workflows.canary import ramp
from releases.workflows.gate import start_gate
from releases.workflows.promotion import start_promotion, start_rollback

S = ReleaseState


# The states each override below accepts (each still checks, under its row lock): the release
# page offers only these.
ADMITS = {
    "approve": frozenset({S.GATING, S.PASSED, S.HELD, S.FAILED, S.RAMPING}),
    "reject": frozenset({S.GATING, S.FAILED, S.HELD, S.PROMOTED, S.SUPERSEDED, S.RAMPING}),
    "pause": frozenset({S.GATING, S.RAMPING}),
    "resume": frozenset({S.HELD, S.RAMPING}),
    "extend": frozenset({S.GATING, S.HELD}),
}


class OverrideRefused(Exception):
    """The release is not in a state where this override makes sense."""


def _actor(username: str) -> str:
    return f"user:{username}"


def _locked(release_id: int) -> Release:
    return Release.objects.select_for_update(of=("self",)).select_related("project").get(pk=release_id)


def approve(release_id: int, username: str, note: str = "") -> Release:
    """Promote now, whatever the gate would say; for a ramping canary, advance it one stage now."""
    with transaction.atomic():
        release = _locked(release_id)
        reason = f"approved by {username}" + (f": {note}" if note else "")
        if release.state == S.RAMPING:
            stage = release.open_analysis()
            if stage is None or stage.phase == Analysis.Phase.WAITING or _moving(release):
                raise OverrideRefused("the canary's traffic is moving; approve once it is at its stage")
            _note(release, username, f"advance now: {reason}")
            ramp.advance(release, actor=_actor(username), reason=reason, stage=stage)
            return release
        if release.state == S.GATING:
            transition(
                release,
                S.PASSED,
                actor=_actor(username),
                reason=reason,
                fields={"decided_at": timezone.now(), "verdict": "approved"},
            )
        if release.state not in (S.PASSED, S.HELD, S.FAILED):
            raise OverrideRefused(f"cannot approve a release that is {release.state}")
        _decided_by_hand(release, "approved", "override:approve")
        start_promotion(release, actor=_actor(username), reason=reason, outcome="info")
    return release


def reject(release_id: int, username: str, note: str = "") -> Release:
    """Keep or restore the previous known-good deployment now; a ramping canary is aborted."""
    with transaction.atomic():
        release = _locked(release_id)
        reason = f"rejected by {username}" + (f": {note}" if note else "")
        if release.state == S.RAMPING:
            ramp.abort(release, actor=_actor(username), reason=f"canary aborted: {reason}")
            return release
        if release.state == S.GATING:
            transition(
                release,
                S.FAILED,
                actor=_actor(username),
                reason=reason,
                fields={"decided_at": timezone.now(), "verdict": "rejected"},
            )
        if release.state not in (S.FAILED, S.HELD, S.PROMOTED, S.SUPERSEDED):
            raise OverrideRefused(f"cannot reject a release that is {release.state}")
        _decided_by_hand(release, "rejected", "override:reject")
        if not start_rollback(release, actor=_actor(username), reason=reason, outcome="fail"):
            if release.state == S.FAILED:
                return release  # no known-good target: Slack says so; nothing else to do
            raise OverrideRefused("no known-good deployment to roll back to")
    return release


def pause(release_id: int, username: str, note: str = "") -> Release:
    with transaction.atomic():
        release = _locked(release_id)
        if release.state == S.RAMPING:
            # Traffic stays where it is; no checks run and nothing moves until resumed.
            stage = release.open_analysis()
            if stage is None or stage.phase == Analysis.Phase.PAUSED:
                raise OverrideRefused("the ramp is already paused")
            Analysis.objects.filter(pk=stage.pk).update(
                phase=Analysis.Phase.PAUSED, next_check_at=None, updated_at=timezone.now()
            )
            _note(release, username, f"ramp paused by {username}" + (f": {note}" if note else ""))
            return release
        if release.state != S.GATING:
            raise OverrideRefused(f"only a gating release can be paused; this one is {release.state}")
        transition(
            release,
            S.HELD,
            actor=_actor(username),
            reason=f"paused by {username}" + (f": {note}" if note else ""),
        )
    return release


def resume(release_id: int, username: str, note: str = "") -> Release:
    with transaction.atomic():
        release = _locked(release_id)
        if release.state == S.RAMPING:
            stage = release.open_analysis()
            if stage is None or stage.phase != Analysis.Phase.PAUSED:
                raise OverrideRefused("the ramp is not paused")
            _note(release, username, f"ramp resumed by {username}" + (f": {note}" if note else ""))
            ramp.resume(stage)
            return release
        if release.state != S.HELD:
            raise OverrideRefused(f"only a held release can be resumed; this one is {release.state}")
        if not release.version:
            raise OverrideRefused("this release has no Sentry release name; approve or reject it")
        start_gate(
            release,
            reason=f"resumed by {username}" + (f": {note}" if note else ""),
            actor=_actor(username),
        )
    return release


def _decided_by_hand(release: Release, verdict: str, rule: str) -> None:
    """A human's decision replaces the gate's on the release, so the list shows who decided."""
    fields = {"verdict": verdict, "verdict_rule": rule, "decided_at": release.decided_at or timezone.now()}
    Release.objects.filter(pk=release.pk).update(**fields)
    for name, value in fields.items():
        setattr(release, name, value)


def _note(release: Release, username: str, reason: str) -> None:
    ReleaseEvent.objects.create(
        release=release, kind=ReleaseEvent.Kind.OVERRIDE, actor=_actor(username), reason=reason
    )


def _moving(release: Release) -> bool:
    return Action.objects.filter(
        release=release,
        kind=Action.Kind.TRAFFIC,
        status__in=[Action.Status.PENDING, Action.Status.RUNNING, Action.Status.CONFIRMING],
    ).exists()


def extend_wait(release_id: int, username: str, by: timedelta, note: str = "") -> Release:
    """Give the gate more time; a release held for lack of a verdict goes back to gating."""
    if by <= timedelta(0):
        raise OverrideRefused("extend by a positive duration")
    with transaction.atomic():
        release = _locked(release_id)
        if release.state not in (S.GATING, S.HELD):
            raise OverrideRefused(f"cannot extend the wait of a release that is {release.state}")
        gate = release.latest_analysis(Analysis.Kind.GATE)
        if gate is None:
            raise OverrideRefused("this release has no gate to extend")
        extra = gate.extra_wait + by
        Analysis.objects.filter(pk=gate.pk).update(extra_wait=extra)
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.OVERRIDE,
            actor=_actor(username),
            reason=f"wait extended by {by} by {username}" + (f": {note}" if note else ""),
            data={"extra_wait_seconds": extra.total_seconds()},
        )
        if release.state == S.HELD and release.version:
            start_gate(
                release, reason=f"resumed by {username} with {by} more to wait", actor=_actor(username)
            )
    return release
