"""Promote and roll back through Vercel, each checked against Vercel's state before acting.

Vercel's promote and rollback answer 201/202 with an empty body and re-alias production in the
background (docs/vendor-apis.md §2.4-2.5): the action is done only when the project's
``lastAliasRequest`` says ``succeeded`` for our target. Before sending, the executor looks at
what production serves and at any alias job already running for the target, so a retry after
a crash never sends the same request twice.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from releases.core.errors import ProviderError
from releases.core.outbox import Confirming, Done, mark_started, sent
from releases.integrations.vercel.answers import ProjectState
from releases.integrations.vercel.client import VercelClient
from releases.models import Action, Project, Release

logger = logging.getLogger(__name__)
IN_FLIGHT = frozenset({"pending", "in-progress"})
CONFIRM_WINDOW = 4.0  # seconds spent watching the alias job inside one task run
CONFIRM_POLL = 0.25  # the Vercel CLI polls every 250 ms
CONFIRM_GIVE_UP = timedelta(minutes=3)  # as the CLI: a job not done by then is retried
NO_JOB_GRACE = timedelta(seconds=15)
FIRST_TRY_FRESH = timedelta(seconds=10)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _forget_request(action: Action) -> None:
    result = {k: v for k, v in action.result.items() if k != "requested_at"}
    action.result = result
    Action.objects.filter(pk=action.pk).update(result=result)


def perform(action: Action, kind: str, vercel: VercelClient) -> Done | Confirming:
    release: Release = action.release
    project: Project = release.project
    target = str(action.payload["deployment_id"])
    if not action.result.get("requested_at"):
        if _first_try(action):
            try:
                _send(vercel, action, release, target, kind, first_try=True)
            except ProviderError as exc:
                # Refused outright (409: already current, or another alias job): look at what
                # Vercel has, as any retry would, before calling it a failure.
                if exc.maybe_delivered or not exc.permanent:
                    raise
                checked = _check(vercel, action, project, target, kind)
                if checked is None:
                    raise
                if isinstance(checked, Done):
                    return checked
        else:
            checked = _check(vercel, action, project, target, kind)
            if isinstance(checked, Done):
                return checked
            if checked is None:
                _send(vercel, action, release, target, kind)
    return _confirm(vercel, action, project, target, kind)


def _first_try(action: Action) -> bool:
    """Send a rollback without looking at Vercel first (one round trip less between an alert and
    the rollback) when nothing can be gained by looking: it is the first attempt of an intent
    decided seconds ago, so nothing of ours is in flight, and by our records production serves
    the release being rolled back, not the target. Everything else looks first: a retry, an
    intent that waited (a lost message re-driven by the watchdog), a promote, and the
    rollback of a staged build, where production usually serves the target already and a
    needless rollback would pause Vercel's auto-promotion."""
    if action.kind != Action.Kind.ROLLBACK or action.attempts > 1:
        return False
    live = action.release.project.live_deployment_id
    payload = action.payload
    return (
        bool(live)
        and live == payload.get("from_deployment_id")
        and live != payload.get("deployment_id")
        and timezone.now() - action.created_at < FIRST_TRY_FRESH
    )


def _check(
    vercel: VercelClient, action: Action, project: Project, target: str, kind: str
) -> Done | Confirming | None:
    """Before sending: ``Done`` if production already serves the target, ``Confirming`` when an
    alias job for it is already running (adopted), ``None`` when the request must be sent."""
    # One read tells both what production serves and whether an alias job is already
    # running: the fewer calls before the rollback, the sooner it lands.
    state = vercel.project_state(project.vercel_project_id)
    serving = _serving(vercel, project, state)
    if serving == target:
        return Done({**action.result, "note": f"production already served {target}; nothing sent"})
    job = state.last_alias_request
    if job and job.to_deployment_id == target and job.type == kind and job.job_status in IN_FLIGHT:
        mark_started(action, requested_at=_now_iso(), adopted_job=True)
        return Confirming(action.result)
    return _overtaken(action, kind, target, serving)


def _overtaken(action: Action, kind: str, target: str, serving: str | None) -> Done | None:
    """``Done``, changing nothing, when sending would undo a newer change of production.

    A rollback restores the target only while production still serves the release it rolls
    back from: a staged build that failed never served, and if something newer serves now
    (a good build promoted while this waited out a retry), rolling back would throw that away.
    A promote whose deployment went live after it was asked for (Vercel's deployment.promoted)
    and was replaced since is done: sending it again would bring the old build back."""
    if kind == "rollback":
        source = action.payload.get("from_deployment_id")
        if not source or serving == source:
            return None
        note = f"production serves {serving or 'nothing'}, not {source}: nothing to roll back; nothing sent"
    else:
        went_live = Release.objects.filter(pk=action.release_id).values_list("promoted_at", flat=True).first()
        if went_live is None or went_live < action.created_at:
            return None
        note = f"{target} went live after this promote was asked for and was replaced since; nothing sent"
    return Done({**action.result, "note": note, "untouched": True})


def _send(
    vercel: VercelClient, action: Action, release: Release, target: str, kind: str, *, first_try: bool = False
) -> None:
    project = release.project
    if first_try:
        # The claim (running, attempt 1) is this attempt's record; requested_at is saved with
        # the outcome. Should the worker die after sending, the retry looks at Vercel first
        # (an attempt > 1 always does) and adopts or finds the switch, so nothing goes twice.
        action.result = {**action.result, "requested_at": _now_iso()}
    else:
        mark_started(action, requested_at=_now_iso())
    try:
        if kind == "promote":
            vercel.promote(project.vercel_project_id, target)
        else:
            vercel.rollback(project.vercel_project_id, target, description=_why(release))
    except ProviderError as exc:
        if not exc.maybe_delivered:
            _forget_request(action)  # Vercel refused it: the retry must send again
        raise
    finally:
        sent()  # the page and the Slack message may go now


def _serving(vercel: VercelClient, project: Project, state: ProjectState) -> str | None:
    """The deployment serving production: the project's production target, or its domains' aliases."""
    if state.production_id is not None:
        return state.production_id
    return vercel.production_deployment_id(project.vercel_project_id, project.production_domains)


def _why(release: Release) -> str:
    return f"Gatekeeper: {release.version or release.deployment_id} failed its gate"


def _confirm(
    vercel: VercelClient, action: Action, project: Project, target: str, kind: str
) -> Done | Confirming:
    deadline = time.monotonic() + CONFIRM_WINDOW
    requested = datetime.fromisoformat(action.result["requested_at"])
    looked_for_rolling = False
    while True:
        try:
            state = vercel.project_state(project.vercel_project_id)
            job = state.last_alias_request
            ours = job is not None and job.to_deployment_id == target and job.type == kind
            serving = None if ours else _serving(vercel, project, state)
        except ProviderError as exc:
            # The request is out: a failed look at Vercel is not a failed attempt and must not
            # spend one, or a run of transient errors would give up a good promote and hold its
            # release. Look again later; CONFIRM_GIVE_UP still bounds the wait.
            if exc.permanent or datetime.now(UTC) - requested > CONFIRM_GIVE_UP:
                raise
            return Confirming(action.result, recheck_in=max(1.0, exc.retry_after or 0.0))
        if ours and job is not None:
            if job.job_status == "succeeded":
                return Done({**action.result, "job_status": job.job_status, "confirmed_at": _now_iso()})
            if job.job_status not in IN_FLIGHT:
                _forget_request(action)
                raise ProviderError(
                    f"Vercel {kind} job for {target} ended {job.job_status}", provider="vercel"
                )
        elif serving == target:
            return Done({**action.result, "note": "production serves the target"})
        elif kind == "promote" and not looked_for_rolling:
            looked_for_rolling = True
            if _complete_rolling_release(vercel, action, project, target):
                continue
        if time.monotonic() >= deadline:
            break
        time.sleep(CONFIRM_POLL)
    waited = datetime.now(UTC) - requested
    if job is None or job.to_deployment_id != target:
        # Not ours (any more): if it did land and was overtaken since, sending again would undo
        # the newer change: a promote resent after it was overtaken brings an old build back.
        overtaken = _overtaken(action, kind, target, serving)
        if overtaken is not None:
            return overtaken
    if (job is None or job.to_deployment_id != target) and waited > NO_JOB_GRACE:
        # Vercel records an accepted request at once; none for our target means it never landed.
        _forget_request(action)
        raise ProviderError(f"no Vercel {kind} job for {target} appeared; sending again", provider="vercel")
    if waited > CONFIRM_GIVE_UP:
        _forget_request(action)
        raise ProviderError(f"Vercel {kind} of {target} not finished after 3 minutes", provider="vercel")
    return Confirming(action.result, recheck_in=1.0)


def _complete_rolling_release(vercel: VercelClient, action: Action, project: Project, target: str) -> bool:
    """A promote on a project with Rolling Releases configured in Vercel starts a rolling release
    on its first stage instead of moving production (§2.4), and nothing advances it: production
    would stay split. The gate already passed, so complete it; True when it was ours to complete.

    A rolling release of another deployment is refused, not completed: that is someone else's."""
    try:
        rolling = vercel.rolling_release(project.vercel_project_id)
    except ProviderError as exc:
        if exc.permanent:  # no Rolling Releases on this project (or plan): a plain promote
            return False
        raise
    if rolling is None or rolling.state != "ACTIVE":
        return False
    if rolling.canary_deployment_id != target:
        _forget_request(action)
        raise ProviderError(
            f"a Vercel rolling release of {rolling.canary_deployment_id} is active; complete or abort it "
            f"in Vercel before {target} can be promoted",
            provider="vercel",
            permanent=True,
        )
    vercel.complete_rolling_release(project.vercel_project_id, target)
    logger.info(
        "vercel.rolling_release.completed", extra={"project_id": project.vercel_project_id, "to": target}
    )
    result = {**action.result, "completed_rolling_release": True}
    action.result = result
    Action.objects.filter(pk=action.pk).update(result=result)
    return True
