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
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from releases import alerts
from releases.decisions import GATEKEEPER, facts_for, known_good, mark_live, slack_spec
from releases.executors import held_after_failure
from releases.models import Action, Project, RampCheck, Release, ReleaseEvent
from releases.outbox import (
    Confirming,
    Done,
    Handler,
    enqueue_actions,
    mark_started,
    register,
    sent,
    write_actions,
)
from releases.providers.base import ProviderError
from releases.slo import SloResult, run_checks, specs_from
from releases.states import ActionSpec, ReleaseState, transition
from releases.traffic import router_for

logger = logging.getLogger(__name__)

S = ReleaseState
# Longer than the slowest tick: checks run side by side, each at most twice its timeout (a
# relative check measures the previous deployment too), timeouts at most 60 s.
TICK_LEASE = timedelta(seconds=180)
ABORT_GIVE_UP = timedelta(minutes=3)


# --- starting ---------------------------------------------------------------------------------


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


# --- the tick ---------------------------------------------------------------------------------


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
    claimed = Release.objects.filter(pk=release.pk, state=S.RAMPING, generation=generation).update(
        generation=generation + 1, next_poll_at=now + TICK_LEASE
    )
    if claimed != 1:
        return "lost-claim"
    previous = Release.objects.filter(deployment_id=release.rollback_target).first()
    started = time.monotonic()
    result = run_checks(release.project, release, previous, specs=specs_for_policy(release))
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(release.pk, generation + 1, result, duration_ms)


def specs_for_policy(release: Release) -> list[Any]:
    """The checks of the policy the ramp started with."""
    return specs_from(release.ramp_policy, release.project.name)


def _record(release_id: int, generation: int, result: SloResult, duration_ms: int) -> str:
    """Store the check and decide, in one transaction; the next check is due at next_poll_at."""
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("project").get(pk=release_id)
        if release.state != S.RAMPING or release.generation != generation:
            return "moved-on"
        policy = release.ramp_policy or {}
        stage = release.ramp_stage or 0
        percent = policy["stages"][stage]["percent"]
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
        interval = float(policy.get("confirmation_interval", 30))
        if result.ok and passes >= int(policy.get("confirmations", 2)):
            advance(release, actor=GATEKEEPER, reason=f"{passes} passing checks at {percent:g}%")
            return "advancing"
        if (
            not result.ok
            and policy.get("abort_on_failure", True)
            and failures >= int(policy.get("failures_to_abort", 1))
        ):
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
        *alerts.page_spec(
            release,
            summary=summary,
            severity="critical",
            details=details,
            links=alerts._links(release, None),
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


# --- moving traffic (the outbox handler) -------------------------------------------------------


def _perform(action: Action) -> Done | Confirming:
    release: Release = action.release
    project = release.project
    payload = action.payload
    op, canary, stage = payload["op"], payload["canary"], int(payload["stage"])
    router = router_for({"router": payload.get("router")})
    if op == "abort":
        return _abort(action, router, project, canary, payload["previous"])
    now = router.current(project)
    if op == "start":
        if now.is_ramping(canary):
            return Done(
                {**action.result, "percent": now.percent, "stage": now.stage_index, "note": "already ramping"}
            )
        mark_started(action, requested_at=_now_iso())
        moved = router.start(project, canary)
    elif op == "stage":
        if now.is_ramping(canary) and (now.stage_index or 0) >= stage:
            return Done(
                {**action.result, "percent": now.percent, "stage": now.stage_index, "note": "already there"}
            )
        if not now.is_ramping(canary):
            raise ProviderError(
                f"the rolling release is {now.state} (canary {now.canary_id}), not ramping {canary}",
                provider=router.name,
                permanent=True,
            )
        mark_started(action, requested_at=_now_iso())
        moved = router.to_stage(project, canary, stage, from_index=now.stage_index)
    else:  # complete
        if now.state == "complete" and now.canary_id == canary:
            return Done({**action.result, "percent": 100, "note": "already complete"})
        mark_started(action, requested_at=_now_iso())
        moved = router.complete(project, canary)
    _check_stages(release, now_stages=moved.stages)
    return Done(
        {
            **action.result,
            "percent": moved.percent if op != "complete" else 100,
            "stage": moved.stage_index,
            "state": moved.state,
        }
    )


def _check_stages(release: Release, now_stages: tuple[float, ...] | None) -> None:
    """The router's stages must be the policy's: a ramp that says 25% must not be at 50%.

    Vercel applies the stages configured on the project, which Gatekeeper cannot change for a
    release already started; a mismatch stops the ramp for a human (held), saying both lists."""
    if not now_stages:
        return
    wanted = tuple(float(s["percent"]) for s in (release.ramp_policy or {}).get("stages", []))
    have = tuple(float(p) for p in now_stages)
    if wanted and have != wanted:
        raise ProviderError(
            f"Vercel's rolling-release stages are {', '.join(f'{p:g}%' for p in have)} but canary.stages "
            f"says {', '.join(f'{p:g}%' for p in wanted)}; make them match (Vercel project settings -> "
            "Rolling Releases)",
            provider="vercel",
            permanent=True,
        )


def _abort(action: Action, router: Any, project: Project, canary: str, previous: str) -> Done | Confirming:
    if not action.result.get("requested_at"):
        now = router.current(project)
        if now.state in ("aborted", "none") or (now.canary_id not in (None, canary)):
            return Done({**action.result, "note": f"rolling release is {now.state}: nothing to abort"})
        mark_started(action, requested_at=_now_iso())
        try:
            router.abort(project, canary, previous)
        except ProviderError as exc:
            if not exc.maybe_delivered:
                Action.objects.filter(pk=action.pk).update(result={})  # refused: the retry sends again
            raise
        finally:
            sent()  # the page and the message may go now
    now = router.current(project)
    if not now.is_ramping(canary):
        return Done({**action.result, "state": now.state, "confirmed_at": _now_iso()})
    requested = datetime.fromisoformat(action.result["requested_at"])
    if datetime.now(UTC) - requested > ABORT_GIVE_UP:
        raise ProviderError(f"canary {canary} still ramping 3 minutes after the abort", provider=router.name)
    return Confirming(action.result, recheck_in=1.0)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _moved(action: Action, done: Done) -> None:
    """A traffic move is in place: record it, and schedule what comes next."""
    payload = action.payload
    op, stage = payload["op"], int(payload["stage"])
    release = Release.objects.select_for_update().select_related("project").get(pk=action.release_id)
    percent = 100 if op == "complete" else done.result.get("percent", payload.get("percent"))
    ReleaseEvent.objects.create(
        release=release,
        kind=ReleaseEvent.Kind.TRAFFIC,
        actor=GATEKEEPER,
        reason=f"canary at {percent:g}% of production traffic" if op != "abort" else "canary aborted: 0%",
        data={"op": op, "stage": stage, "percent": 0 if op == "abort" else percent},
    )
    if op == "abort":
        _aborted(release, done)
        return
    if op == "complete" and release.state in (S.RAMPING, S.PROMOTED):
        # PROMOTED already when Vercel's deployment.promoted webhook came in first.
        facts = facts_for(release, outcome="pass", headline="canary complete: 100% of production traffic")
        actions = write_actions(release, slack_spec(release, facts, key=f"slack:{release.pk}:ramp-complete"))
        enqueue_actions(actions)
        requested = done.result.get("requested_at")
        mark_live(
            release.project,
            release.deployment_id,
            actor=GATEKEEPER,
            reason="canary complete: serves all production traffic",
            since=datetime.fromisoformat(requested) if requested else None,
        )
        return
    if release.state != S.RAMPING:
        return
    now = timezone.now()
    hold = float(release.ramp_policy["stages"][stage].get("hold", 0))
    generation = release.generation + 1
    Release.objects.filter(pk=release.pk).update(
        ramp_stage=stage,
        ramp_stage_since=now,
        ramp_passes=0,
        ramp_failures=0,
        generation=generation,
        next_poll_at=now + timedelta(seconds=hold),
    )


def _aborted(release: Release, done: Done) -> None:
    Release.objects.filter(pk=release.pk, rolled_back_at__isnull=True).update(rolled_back_at=timezone.now())
    if transition(release, S.ROLLED_BACK, actor=GATEKEEPER, reason="canary aborted", expected=S.ROLLING_BACK):
        pass
    requested = done.result.get("requested_at")
    mark_live(
        release.project,
        release.rollback_target,
        actor=GATEKEEPER,
        reason=f"canary {release.deployment_id} aborted",
        since=datetime.fromisoformat(requested) if requested else None,
    )


def _move_failed(action: Action, error: str) -> None:
    if not Release.objects.filter(pk=action.release_id, state__in=(S.RAMPING, S.ROLLING_BACK)).exists():
        return
    what = "canary abort" if action.payload.get("op") == "abort" else "canary traffic move"
    held_after_failure(action, error, what, fields={"next_poll_at": None})


def _on_success(action: Action, done: Done) -> None:
    _moved(action, done)


register(
    Action.Kind.TRAFFIC,
    Handler(perform=_perform, idempotent=True, on_success=_on_success, on_failure=_move_failed),
)
