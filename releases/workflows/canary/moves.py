"""The canary's traffic moves, as outbox actions: start, next stage, complete, abort.

Each is checked against the traffic router before it is sent (a move already in place is not
sent again), and its success schedules what comes next in the ramp (``releases/workflows/canary/ramp.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from notifications.intents import facts_for, slack_spec
from releases.core.errors import ProviderError
from releases.core.outbox import (
    Confirming,
    Done,
    Handler,
    enqueue_actions,
    mark_started,
    register,
    sent,
    write_actions,
)
from releases.core.production import lock_project, mark_live
from releases.core.transitions import GATEKEEPER, transition
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, Project, Release, ReleaseEvent
from releases.workflows.bake import watch_if_new
from releases.workflows.canary.ramp import current_stage
from releases.workflows.canary.traffic import router_for
from releases.workflows.promotion import held_after_failure

S = ReleaseState
ABORT_GIVE_UP = timedelta(minutes=3)
ABORT_LANDS_WITHIN = timedelta(seconds=15)


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
        # Already live (Vercel's deployment.promoted came in) is complete too: by then the next
        # release's rolling release may be the project's, and completing ours again would be refused.
        if (now.state == "complete" and now.canary_id == canary) or project.live_deployment_id == canary:
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
    stage = current_stage(release)
    wanted = tuple(float(s["percent"]) for s in (stage.policy if stage else {}).get("stages", []))
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
    requested = datetime.fromisoformat(action.result["requested_at"])
    try:
        now = router.current(project)
    except ProviderError as exc:
        # The abort is out: a failed look is not a failed attempt (see _confirm).
        if exc.permanent or datetime.now(UTC) - requested > ABORT_GIVE_UP:
            raise
        return Confirming(action.result, recheck_in=max(1.0, exc.retry_after or 0.0))
    if not now.is_ramping(canary):
        return Done({**action.result, "state": now.state, "confirmed_at": _now_iso()})
    if datetime.now(UTC) - requested > ABORT_LANDS_WITHIN:
        # Vercel aborts the rolling release as it accepts the rollback: still ramping this long
        # after, the abort never landed (a 5xx or a timeout that did nothing). Send it again; the
        # look before sending stops a second one should the first land meanwhile. Waiting on it
        # for good would hold an aborting canary at its stage once its attempts run out.
        action.result = {k: v for k, v in action.result.items() if k != "requested_at"}
        Action.objects.filter(pk=action.pk).update(result=action.result)
        raise ProviderError(
            f"canary {canary} still ramping after the abort; sending again", provider=router.name
        )
    return Confirming(action.result, recheck_in=1.0)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _moved(action: Action, done: Done) -> None:
    """A traffic move is in place: record it, and schedule what comes next."""
    payload = action.payload
    op, stage = payload["op"], int(payload["stage"])
    # The project before the release's row: completing and aborting reach mark_live, which takes
    # them in that order.
    lock_project(Release.objects.values_list("project_id", flat=True).get(pk=action.release_id))
    release = (
        Release.objects.select_for_update(of=("self",)).select_related("project").get(pk=action.release_id)
    )
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
        watch_if_new(
            mark_live(
                release.project,
                release.deployment_id,
                actor=GATEKEEPER,
                reason="canary complete: serves all production traffic",
                since=datetime.fromisoformat(requested) if requested else None,
            )
        )
        return
    if release.state != S.RAMPING:
        return
    analysis = current_stage(release)
    if analysis is None or analysis.stage != stage or not analysis.is_open:
        return
    # The stage's traffic is in place: its analysis starts now, checked once its hold is over.
    now = timezone.now()
    hold = float(analysis.policy["stages"][stage].get("hold", 0))
    Analysis.objects.filter(pk=analysis.pk).update(
        phase=Analysis.Phase.RUNNING if analysis.phase == Analysis.Phase.WAITING else analysis.phase,
        started_at=now,
        passes=0,
        failures=0,
        generation=analysis.generation + 1,
        next_check_at=now + timedelta(seconds=hold),
        updated_at=now,
    )


def _aborted(release: Release, done: Done) -> None:
    Release.objects.filter(pk=release.pk, rolled_back_at__isnull=True).update(rolled_back_at=timezone.now())
    if transition(release, S.ROLLED_BACK, actor=GATEKEEPER, reason="canary aborted", expected=S.ROLLING_BACK):
        pass
    requested = done.result.get("requested_at")
    watch_if_new(
        mark_live(
            release.project,
            release.rollback_target,
            actor=GATEKEEPER,
            reason=f"canary {release.deployment_id} aborted",
            since=datetime.fromisoformat(requested) if requested else None,
        )
    )


def _move_failed(action: Action, error: str) -> None:
    if not Release.objects.filter(pk=action.release_id, state__in=(S.RAMPING, S.ROLLING_BACK)).exists():
        return
    what = "canary abort" if action.payload.get("op") == "abort" else "canary traffic move"
    held_after_failure(action, error, what)


def _on_success(action: Action, done: Done) -> None:
    _moved(action, done)


register(
    Action.Kind.TRAFFIC,
    Handler(perform=_perform, idempotent=True, on_success=_on_success, on_failure=_move_failed),
)
