"""The canary ramp: move real traffic to a new deployment stage by stage, only while it is healthy.

A project with ``canary:`` ramps a new production deployment instead of gating a staged build
(which gets no traffic to judge). At each stage, after its hold, the SLO checks run
``confirmations`` times ``confirmation_interval`` apart; only when all of them pass does traffic
move on. A failed check, an error or a timeout never moves traffic; ``failures_to_abort`` failed
checks in a row abort the ramp when ``abort_on_failure`` is set: all traffic back to the previous
deployment, the on-call paged, the channel told.

The ramp's tick rides the gate's poll chain: the same task, the same claim by generation, the
same ``next_poll_at`` the watchdog re-drives. Every traffic move is an outbox action keyed by its
stage, so it happens at most once per stage, and is checked against the router before it is sent.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from notifications.intents import facts_for, page_spec, slack_spec
from releases.core.outbox import ActionSpec, enqueue_actions, write_actions
from releases.core.production import known_good
from releases.core.transitions import GATEKEEPER, transition
from releases.domain.lifecycle import ReleaseState
from releases.domain.policy import CanaryPolicy
from releases.models import Action, Project, RampCheck, Release, ReleaseEvent
from releases.workflows.canary.measuring import SloResult, run_checks, specs_from
from releases.workflows.rollback import links_for

logger = logging.getLogger(__name__)
S = ReleaseState

# Longer than the slowest tick: checks run side by side, each at most twice its timeout (a
# relative check measures the previous deployment too), timeouts at most 60 s.
TICK_LEASE = timedelta(seconds=180)

# What a tick spends besides its checks (the claim, the record, a slow database), on top of them.
TICK_MARGIN = 20.0


def previous_deployment(project: Project, release: Release) -> str:
    """What the canary is compared with and falls back to: what serves production now."""
    if project.live_deployment_id and project.live_deployment_id != release.deployment_id:
        return project.live_deployment_id
    good = known_good(project, exclude=release)
    return good.deployment_id if good is not None else ""


def start_ramp(release: Release) -> bool:
    """received -> ramping, with the traffic start recorded. False when there is nothing to ramp
    from (no previous production deployment): the caller gates the build instead."""
    project = release.project
    previous = previous_deployment(project, release)
    if not previous:
        return False
    policy = dict(project.canary or {})
    first = policy["stages"][0]["percent"]
    facts = facts_for(
        release,
        outcome="info",
        headline=f"canary: starting at {first:g}% of production traffic, next to {previous}",
        reasons=(
            f"{len(policy['stages'])} stages: " + ", ".join(f"{s['percent']:g}%" for s in policy["stages"]),
        ),
    )
    specs = [
        _move(release, "start", 0, previous),
        *slack_spec(release, facts, key=f"slack:{release.pk}:ramp-start"),
    ]
    moved = transition(
        release,
        S.RAMPING,
        actor=GATEKEEPER,
        reason=f"ramping: {first:g}% first, checks before every step",
        actions=specs,
        fields={
            "rollback_target": previous,
            "ramp_policy": policy,
            "ramp_stage": None,
            "ramp_stage_since": None,
            "ramp_passes": 0,
            "ramp_failures": 0,
            "ramp_paused": False,
            "gating_started_at": timezone.now(),
            "next_poll_at": None,
            "generation": release.generation + 1,
        },
    )
    return moved is not None


def _move(release: Release, op: str, stage: int, previous: str) -> ActionSpec:
    """One traffic move, keyed by its stage: at most once per stage."""
    policy = release.ramp_policy or release.project.canary or {}
    stages = policy.get("stages", [])
    percent = 100 if op == "complete" else stages[stage]["percent"] if stage < len(stages) else None
    key = f"traffic:{release.pk}:{'stage-' + str(stage) if op in ('start', 'stage') else op}"
    return ActionSpec(
        kind=Action.Kind.TRAFFIC,
        key=key,
        payload={
            "op": op,
            "stage": stage,
            "percent": percent,
            "canary": release.deployment_id,
            "previous": previous,
            "router": policy.get("router", "vercel"),
        },
    )


def tick(release: Release, generation: int) -> str:
    """One look at a ramping release: wait out the hold, check, and advance, wait or abort."""
    now = timezone.now()
    if release.ramp_paused:
        return "paused"
    if release.ramp_stage is None:
        return "waiting-for-traffic"  # the start's success makes the first tick due
    stages = (release.ramp_policy or {})["stages"]
    hold_end = (release.ramp_stage_since or now) + timedelta(
        seconds=stages[release.ramp_stage].get("hold", 0)
    )
    if hold_end > now + timedelta(seconds=1):
        # Due again when the hold ends; dispatch_due sends the tick then.
        Release.objects.filter(pk=release.pk, generation=generation, state=S.RAMPING).update(
            next_poll_at=hold_end
        )
        return "holding"
    specs = specs_for_policy(release)
    claimed = Release.objects.filter(pk=release.pk, state=S.RAMPING, generation=generation).update(
        generation=generation + 1, next_poll_at=now + tick_lease(specs)
    )
    if claimed != 1:
        return "lost-claim"
    previous = Release.objects.filter(deployment_id=release.rollback_target).first()
    started = time.monotonic()
    result = run_checks(release.project, release, previous, specs=specs)
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(release.pk, generation + 1, result, duration_ms)


def tick_lease(specs: list[Any]) -> timedelta:
    """How long a claimed tick keeps the ramp from being ticked again: as long as this policy's
    checks can take, not the longest any policy's could: if the worker dies mid-tick, the ramp
    waits this long before it is ticked again."""
    slowest = max((float(spec.timeout) for spec in specs), default=0.0)
    return min(TICK_LEASE, timedelta(seconds=2 * slowest + TICK_MARGIN))


def specs_for_policy(release: Release) -> list[Any]:
    """The checks of the policy the ramp started with."""
    return specs_from(release.ramp_policy, release.project.name)


def _record(release_id: int, generation: int, result: SloResult, duration_ms: int) -> str:
    """Store the check and decide, in one transaction; the next check is due at next_poll_at."""
    with transaction.atomic():
        release = Release.objects.select_for_update(of=("self",)).select_related("project").get(pk=release_id)
        if release.state != S.RAMPING or release.generation != generation:
            return "moved-on"
        policy = CanaryPolicy.from_json(release.ramp_policy)
        stage = release.ramp_stage or 0
        percent = policy.stages[stage].percent
        passes = release.ramp_passes + 1 if result.ok else 0
        failures = 0 if result.ok else release.ramp_failures + 1
        RampCheck.objects.create(
            release=release,
            stage=stage,
            percent=percent,
            confirmation=passes if result.ok else failures,
            ok=result.ok,
            checks=[c.to_json() for c in result.checks],
            reasons=result.reasons or ([] if result.checks else ["no SLO checks configured: never advances"]),
            duration_ms=duration_ms,
        )
        now = timezone.now()
        interval = policy.confirmation_interval
        if result.ok and passes >= policy.confirmations:
            advance(release, actor=GATEKEEPER, reason=f"{passes} passing checks at {percent:g}%")
            return "advancing"
        if not result.ok and policy.abort_on_failure and failures >= policy.failures_to_abort:
            abort(release, actor=GATEKEEPER, reason=f"SLO check failed at {percent:g}%", result=result)
            return "aborting"
        Release.objects.filter(pk=release.pk).update(
            ramp_passes=passes, ramp_failures=failures, next_poll_at=now + timedelta(seconds=interval)
        )
        return "confirming" if result.ok else "failed-check"


def resume(release: Release) -> None:
    """A paused ramp checks again now (its confirmations start over)."""
    Release.objects.filter(pk=release.pk).update(
        ramp_paused=False, ramp_passes=0, generation=release.generation + 1, next_poll_at=timezone.now()
    )


def advance(release: Release, *, actor: str, reason: str) -> None:
    """Write the move to the next stage (or completion); the move's success schedules the next tick."""
    stages = (release.ramp_policy or {})["stages"]
    nxt = (release.ramp_stage or 0) + 1
    op = "complete" if nxt >= len(stages) - 1 or stages[nxt]["percent"] >= 100 else "stage"
    stage = len(stages) - 1 if op == "complete" else nxt
    specs = [_move(release, op, stage, release.rollback_target)]
    written = write_actions(release, specs)
    Release.objects.filter(pk=release.pk).update(next_poll_at=None, ramp_passes=0)
    ReleaseEvent.objects.create(
        release=release,
        kind=ReleaseEvent.Kind.NOTE,
        actor=actor,
        reason=f"{reason}: moving to {stages[stage]['percent']:g}%"
        if op == "stage"
        else f"{reason}: completing",
        data={"op": op, "stage": stage},
    )
    enqueue_actions(written)


def abort(release: Release, *, actor: str, reason: str, result: SloResult | None = None) -> bool:
    """ramping -> rolling_back: all traffic to the previous deployment, then page and tell."""
    project = release.project
    previous = release.rollback_target
    reasons = tuple(result.reasons) if result is not None else ()
    name = release.version or release.deployment_id
    percent = _percent(release)
    summary = f"{project.name} {name}: canary aborted at {percent}; traffic back to {previous}"
    details = {
        "project": project.name,
        "release": release.version,
        "deployment_id": release.deployment_id,
        "stage_percent": percent,
        "cause": reason,
        "failed_checks": [c.to_json() for c in result.checks if not c.ok] if result is not None else [],
        "rollback_target": previous,
    }
    facts = facts_for(
        release,
        outcome="fail",
        headline=f"canary aborted at {percent}: all traffic back to {previous}",
        reasons=(reason, *reasons),
    )
    specs = [
        _move(release, "abort", release.ramp_stage or 0, previous),  # first: its request leads
        *page_spec(
            release,
            summary=summary,
            severity="critical",
            details=details,
            links=links_for(release, None),
            intent="ramp-abort",
        ),
        *slack_spec(release, facts, key=f"slack:{release.pk}:ramp-abort"),
    ]
    moved = transition(
        release,
        S.ROLLING_BACK,
        actor=actor,
        reason=reason,
        actions=specs,
        data={"failed_checks": details["failed_checks"]},
        fields={
            "next_poll_at": None,
            "verdict": "fail",
            "verdict_rule": "slo",
            "verdict_reasons": list((reason, *reasons)),
            "decided_at": timezone.now(),
        },
    )
    return moved is not None


def _percent(release: Release) -> str:
    stages = (release.ramp_policy or {}).get("stages", [])
    if release.ramp_stage is None or release.ramp_stage >= len(stages):
        return "its first stage"
    return f"{stages[release.ramp_stage]['percent']:g}%"
