"""The canary ramp: move real traffic to a new deployment stage by stage, only while it is healthy.

A project with ``canary:`` ramps a new production deployment instead of gating a staged build
(which gets no traffic to judge). At each stage, after its hold, the SLO checks run
``confirmations`` times ``confirmation_interval`` apart; only when all of them pass does traffic
move on. A failed check, an error or a timeout never moves traffic; ``failures_to_abort`` failed
checks in a row abort the ramp when ``abort_on_failure`` is set: all traffic back to the previous
deployment, the on-call paged, the channel told.

Each stage is an analysis of its own (``Analysis`` of kind canary): its checks, its counters of
passes and failures, its schedule. Its tick rides the gate's poll chain: the same task, the same
claim by generation, the same ``next_check_at`` the dispatcher sends when due. Every traffic move
is an outbox action keyed by its stage, so it happens at most once per stage, and is checked
against the router before it is sent.
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
from releases.models import Action, Analysis, Project, RampCheck, Release, ReleaseEvent
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
        _move(release, policy, "start", 0, previous),
        *slack_spec(release, facts, key=f"slack:{release.pk}:ramp-start"),
    ]
    now = timezone.now()
    with transaction.atomic():
        moved = transition(
            release,
            S.RAMPING,
            actor=GATEKEEPER,
            reason=f"ramping: {first:g}% first, checks before every step",
            actions=specs,
            fields={"rollback_target": previous, "gating_started_at": now},
        )
        if moved is None:
            return False
        open_stage(release, policy, 0)
    return True


def open_stage(release: Release, policy: dict[str, Any], stage: int) -> Analysis:
    """A stage's analysis, waiting until its traffic is in place (the move's success starts it)."""
    now = timezone.now()
    return Analysis.objects.create(
        release=release,
        kind=Analysis.Kind.CANARY,
        stage=stage,
        phase=Analysis.Phase.WAITING,
        policy=policy,
        created_at=now,
        updated_at=now,
    )


def current_stage(release: Release) -> Analysis | None:
    """The ramp's latest stage analysis: the one open, or the last one that ended."""
    return release.latest_analysis(Analysis.Kind.CANARY)


def stage_in_place(release: Release) -> Analysis | None:
    """The latest stage whose traffic was in place (a stage waiting for its move is not)."""
    return (
        release.analyses.filter(kind=Analysis.Kind.CANARY, started_at__isnull=False).order_by("-pk").first()
    )


def _move(release: Release, policy: dict[str, Any], op: str, stage: int, previous: str) -> ActionSpec:
    """One traffic move, keyed by its stage: at most once per stage."""
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


def tick(analysis: Analysis, generation: int) -> str:
    """One look at a canary stage: wait out its hold, check, and advance, wait or abort."""
    now = timezone.now()
    release = analysis.release
    if release.state != S.RAMPING or analysis.started_at is None:
        return "not-running"
    stages = analysis.policy["stages"]
    hold_end = analysis.started_at + timedelta(seconds=stages[analysis.stage or 0].get("hold", 0))
    running = Analysis.objects.filter(pk=analysis.pk, phase=Analysis.Phase.RUNNING, generation=generation)
    if hold_end > now + timedelta(seconds=1):
        running.update(next_check_at=hold_end)  # due again when the hold ends
        return "holding"
    specs = specs_for_policy(release, analysis.policy)
    if running.update(generation=generation + 1, next_check_at=now + tick_lease(specs)) != 1:
        return "lost-claim"
    previous = Release.objects.filter(deployment_id=release.rollback_target).first()
    started = time.monotonic()
    result = run_checks(release.project, release, previous, specs=specs, since=analysis.started_at)
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(analysis.pk, generation + 1, result, duration_ms)


def tick_lease(specs: list[Any]) -> timedelta:
    """How long a claimed tick keeps the ramp from being ticked again: as long as this policy's
    checks can take, not the longest any policy's could: if the worker dies mid-tick, the ramp
    waits this long before it is ticked again."""
    slowest = max((float(spec.timeout) for spec in specs), default=0.0)
    return min(TICK_LEASE, timedelta(seconds=2 * slowest + TICK_MARGIN))


def specs_for_policy(release: Release, policy: dict[str, Any]) -> list[Any]:
    """The checks of the policy the ramp started with."""
    return specs_from(policy, release.project.name)


def _record(analysis_id: int, generation: int, result: SloResult, duration_ms: int) -> str:
    """Store the check and decide, in one transaction; the next check is due at next_check_at."""
    with transaction.atomic():
        release_id = Analysis.objects.values_list("release_id", flat=True).get(pk=analysis_id)
        release = Release.objects.select_for_update(of=("self",)).select_related("project").get(pk=release_id)
        analysis = Analysis.objects.select_for_update().get(pk=analysis_id)
        analysis.release = release
        if (
            release.state != S.RAMPING
            or analysis.phase != Analysis.Phase.RUNNING
            or analysis.generation != generation
        ):
            return "moved-on"
        policy = CanaryPolicy.from_json(analysis.policy)
        stage = analysis.stage or 0
        percent = policy.stages[stage].percent
        now = timezone.now()
        # An undecided sequential check holds the stage: no pass, no failure, until max_hold.
        started = analysis.started_at or now
        holding = result.pending and now < started + timedelta(seconds=policy.stages[stage].max_hold)
        passes = analysis.passes + 1 if result.ok else 0
        failures = 0 if result.ok else analysis.failures + (0 if holding else 1)
        reasons = result.reasons or ([] if result.checks else ["no SLO checks configured: never advances"])
        if result.pending and not holding:
            reasons = [f"no verdict within max_hold ({policy.stages[stage].max_hold:g}s)", *reasons]
        RampCheck.objects.create(
            release=release,
            analysis=analysis,
            stage=stage,
            percent=percent,
            confirmation=passes if result.ok else failures,
            ok=result.ok,
            checks=[c.to_json() for c in result.checks],
            reasons=reasons,
            duration_ms=duration_ms,
        )
        analysis.passes, analysis.failures, analysis.updated_at = passes, failures, now
        if result.ok and passes >= policy.confirmations:
            advance(
                release, actor=GATEKEEPER, reason=f"{passes} passing checks at {percent:g}%", stage=analysis
            )
            return "advancing"
        if not result.ok and not holding and policy.abort_on_failure and failures >= policy.failures_to_abort:
            abort(
                release,
                actor=GATEKEEPER,
                reason=f"SLO check failed at {percent:g}%",
                result=result,
                stage=analysis,
            )
            return "aborting"
        analysis.next_check_at = now + timedelta(seconds=policy.confirmation_interval)
        analysis.save(update_fields=["passes", "failures", "next_check_at", "updated_at"])
        if holding:
            return "undecided"
        return "confirming" if result.ok else "failed-check"


def resume(analysis: Analysis) -> None:
    """A paused stage checks again now (its confirmations start over)."""
    now = timezone.now()
    Analysis.objects.filter(pk=analysis.pk).update(
        phase=Analysis.Phase.RUNNING if analysis.started_at else Analysis.Phase.WAITING,
        passes=0,
        generation=analysis.generation + 1,
        next_check_at=now if analysis.started_at else None,
        updated_at=now,
    )


def advance(release: Release, *, actor: str, reason: str, stage: Analysis | None = None) -> None:
    """End this stage and write the move to the next one (or completion); the move's success
    starts the next stage's analysis."""
    current = stage or current_stage(release)
    assert current is not None  # a ramping release has a stage
    stages = current.policy["stages"]
    nxt = (current.stage or 0) + 1
    op = "complete" if nxt >= len(stages) - 1 or stages[nxt]["percent"] >= 100 else "stage"
    index = len(stages) - 1 if op == "complete" else nxt
    specs = [_move(release, current.policy, op, index, release.rollback_target)]
    written = write_actions(release, specs)
    now = timezone.now()
    current.phase = Analysis.Phase.PASSED if actor == GATEKEEPER else Analysis.Phase.STOPPED
    current.next_check_at, current.ended_at, current.updated_at = None, now, now
    current.save(update_fields=["phase", "passes", "failures", "next_check_at", "ended_at", "updated_at"])
    if op == "stage":
        open_stage(release, current.policy, index)
    ReleaseEvent.objects.create(
        release=release,
        kind=ReleaseEvent.Kind.NOTE,
        actor=actor,
        reason=f"{reason}: moving to {stages[index]['percent']:g}%"
        if op == "stage"
        else f"{reason}: completing",
        data={"op": op, "stage": index},
    )
    enqueue_actions(written)


def abort(
    release: Release,
    *,
    actor: str,
    reason: str,
    result: SloResult | None = None,
    stage: Analysis | None = None,
) -> bool:
    """ramping -> rolling_back: all traffic to the previous deployment, then page and tell."""
    project = release.project
    current = stage or current_stage(release)
    placed = stage_in_place(release) if stage is None else stage
    previous = release.rollback_target
    reasons = tuple(result.reasons) if result is not None else ()
    name = release.version or release.deployment_id
    percent = _percent(placed)
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
        # First: its request leads.
        _move(
            release,
            current.policy if current else {},
            "abort",
            (placed.stage or 0) if placed else 0,
            previous,
        ),
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
    if current is not None and current.is_open and result is not None:
        now = timezone.now()
        current.phase, current.next_check_at, current.ended_at = Analysis.Phase.FAILED, None, now
        current.updated_at = now
        current.save(update_fields=["phase", "passes", "failures", "next_check_at", "ended_at", "updated_at"])
    moved = transition(
        release,
        S.ROLLING_BACK,
        actor=actor,
        reason=reason,
        actions=specs,
        data={"failed_checks": details["failed_checks"]},
        fields={
            "verdict": "fail",
            "verdict_rule": "slo",
            "verdict_reasons": list((reason, *reasons)),
            "decided_at": timezone.now(),
        },
    )
    return moved is not None


def _percent(placed: Analysis | None) -> str:
    """The traffic in place, as a message says it."""
    stages = placed.policy.get("stages", []) if placed is not None else []
    if placed is None or placed.stage is None or placed.stage >= len(stages):
        return "its first stage"
    return f"{stages[placed.stage]['percent']:g}%"
