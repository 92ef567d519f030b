"""The gate's poll loop: ask Sentry, record what it said, let the pure verdict decide.

A release's poll chain is one message at a time, named by ``(release_id, generation)``. A poll
*claims* its generation with a compare-and-set (generation -> generation + 1), so a duplicate
message (a redelivery, or the watchdog re-driving a chain that was only slow) finds the
generation moved on and drops itself. While a poll talks to Sentry, ``next_poll_at`` is pushed
out by a lease, so the watchdog re-drives the chain only if the worker died.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from releases import alerts, clients
from releases.decisions import GATEKEEPER, decide
from releases.gate import Evidence, Outcome, Policy, evaluate
from releases.models import GateCheck, Release, ReleaseEvent
from releases.providers.base import ProviderError
from releases.states import ReleaseState, transition

logger = logging.getLogger(__name__)

S = ReleaseState
POLL_LEASE = timedelta(seconds=60)  # longer than one Sentry call with its timeout
WATCHDOG_GRACE = timedelta(seconds=15)
WATCHDOG_BATCH = 1000


def enqueue_poll(release_id: int, generation: int, countdown: float | None = None) -> None:
    from releases.tasks import poll_release

    try:
        poll_release.apply_async((release_id, generation), countdown=countdown, retry=False)
    except Exception:  # the broker is down: next_poll_at in PostgreSQL lets the watchdog re-drive
        logger.warning("poll.enqueue_failed", extra={"release_id": release_id}, exc_info=True)


def start_gate(release: Release, *, reason: str = "") -> bool:
    """received/held -> gating, and the first poll once the transaction commits."""
    now = timezone.now()
    project = release.project
    reason = reason or (
        f"gating: waiting for {project.min_sessions} sessions at a crash-free rate of at least "
        f"{project.crash_free_threshold * 100:.2f}%"
    )
    fields = {"next_poll_at": now, "consecutive_errors": 0, "generation": release.generation + 1}
    if release.gating_started_at is None:
        fields["gating_started_at"] = now
    if transition(release, S.GATING, actor=GATEKEEPER, reason=reason, fields=fields) is None:
        return False
    release_id, generation = release.pk, release.generation
    transaction.on_commit(lambda: enqueue_poll(release_id, generation), robust=True)
    return True


def window_start(release: Release, now: datetime) -> datetime:
    """The hour the deployment was created: with ``interval=1h`` the totals cover its whole life.

    Never later than the current hour: Vercel's clock may run ahead of ours.
    """
    created = release.deployment_created_at or release.gating_started_at or release.created_at
    return min(created, now).replace(minute=0, second=0, microsecond=0)


def poll_once(release_id: int, generation: int) -> str:
    """One poll of one release. Returns what happened, for logs and tests."""
    release = Release.objects.select_related("project").filter(pk=release_id).first()
    if release is None:
        return "gone"
    if release.state == S.RAMPING:
        from releases import ramp

        return "stale" if release.generation != generation else ramp.tick(release, generation)
    phase = phase_of(release)
    if phase is None:
        return "not-gating"
    if release.generation != generation:
        return "stale"
    now = timezone.now()
    if phase == "bake" and release.watch_until is not None and now >= release.watch_until:
        return end_watch(release, generation)
    if release.next_poll_at is not None and release.next_poll_at > now + timedelta(seconds=1):
        # Countdowns are capped below the broker's visibility timeout; wait out the rest.
        remaining = (release.next_poll_at - now).total_seconds()
        enqueue_poll(release_id, generation, countdown=min(remaining, settings.MAX_COUNTDOWN))
        return "not-due"
    claimed = Release.objects.filter(pk=release_id, state=release.state, generation=generation).update(
        generation=generation + 1, next_poll_at=now + POLL_LEASE
    )
    if claimed != 1:
        return "lost-claim"

    project = release.project
    sessions = crashed = None
    error = ""
    retry_after: float | None = None
    started = time.monotonic()
    try:
        sentry = clients.sentry()
        totals = sentry.release_sessions(
            project.sentry_org,
            project.sentry_project,
            project.sentry_environment or None,
            [release.version],
            start=window_start(release, now),
            end=now + timedelta(seconds=1),  # after the start even at an exact hour
        )[release.version]
        sessions, crashed = totals.sessions, totals.crashed
    except ProviderError as exc:
        error, retry_after = str(exc), exc.retry_after
        logger.warning("poll.sentry_error", extra={"release_id": release_id, "error": error})
    duration_ms = int((time.monotonic() - started) * 1000)
    return record(
        release_id,
        generation + 1,
        sessions=sessions,
        crashed=crashed,
        error=error,
        retry_after=retry_after,
        duration_ms=duration_ms,
    )


def record(
    release_id: int,
    generation: int,
    *,
    sessions: int | None,
    crashed: int | None,
    error: str,
    retry_after: float | None,
    duration_ms: int,
) -> str:
    """Store the check, evaluate, and reschedule or decide — all in one transaction."""
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("project").get(pk=release_id)
        phase = phase_of(release)
        if phase is None or release.generation != generation:
            return "moved-on"  # a human (or an alert) decided while we were asking Sentry
        now = timezone.now()
        errors = release.consecutive_errors + 1 if error else 0
        evidence = Evidence(
            sessions=sessions,
            crashed=crashed,
            elapsed=release.elapsed(now),
            consecutive_errors=errors,
            error=error or None,
        )
        verdict = evaluate(release.policy() if phase == "gate" else watch_policy(release), evidence)
        if verdict.rule == "invalid_evidence" and not error:
            errors = release.consecutive_errors + 1
        figures = verdict.figures.as_dict()
        GateCheck.objects.create(
            release=release,
            generation=generation,
            phase=phase,
            checked_at=now,
            sessions=sessions,
            crashed=crashed,
            crash_free_rate=figures.get("crash_free_rate"),
            upper_bound=figures.get("upper_bound"),
            outcome=verdict.outcome.value,
            rule=verdict.rule,
            reasons=list(verdict.reasons),
            figures=figures,
            error=error,
            duration_ms=duration_ms,
        )
        latest = {"consecutive_errors": errors, "updated_at": now}
        if sessions is not None:
            latest.update(sessions=sessions, crashed=crashed, crash_free_rate=figures.get("crash_free_rate"))
        # The bake watch acts only on a breach: no data, errors and passes all mean "keep watching".
        if verdict.outcome == Outcome.WAIT or (phase == "bake" and verdict.outcome != Outcome.FAIL):
            interval = release.project.poll_interval.total_seconds()
            delay = max(interval, retry_after or 0.0)
            latest["next_poll_at"] = now + timedelta(seconds=delay)
            Release.objects.filter(pk=release.pk).update(**latest)
            transaction.on_commit(
                lambda: enqueue_poll(release_id, generation, countdown=min(delay, settings.MAX_COUNTDOWN)),
                robust=True,
            )
            return "wait"
        latest["next_poll_at"] = None
        Release.objects.filter(pk=release.pk).update(**latest)
        for name, value in latest.items():
            setattr(release, name, value)
        if phase == "bake":
            cause = "bake watch: " + "; ".join(verdict.reasons)
            alerts.rollback_live(release, cause=cause, figures=figures)
            return "breach"
        decide(release, verdict)
        return verdict.outcome.value


def phase_of(release: Release) -> str | None:
    """``gate`` while judged for promotion, ``bake`` while watched after it, else not polled."""
    if release.state == S.GATING:
        return "gate"
    if release.state == S.PROMOTED and release.watch_until is not None:
        return "bake"
    return None


def watch_policy(release: Release) -> Policy:
    """The gate's policy with the post-promotion bar and no deadline of its own (the watch has one)."""
    policy = release.policy()
    project = release.project
    return replace(
        policy,
        crash_free_threshold=project.watch_threshold or project.crash_free_threshold,
        max_wait=project.watch_after_promotion.total_seconds() + release.elapsed() + 86400.0,
    )


def start_watch(release: Release) -> None:
    """Keep polling a release that just went live, for the project's watch_after_promotion."""
    project = release.project
    if not release.version or project.watch_after_promotion <= timedelta(0) or project.dry_run:
        return
    now = timezone.now()
    generation = release.generation + 1
    Release.objects.filter(pk=release.pk).update(
        watch_until=now + project.watch_after_promotion,
        next_poll_at=now + project.poll_interval,
        generation=generation,
        consecutive_errors=0,
    )
    release.generation, release.watch_until = generation, now + project.watch_after_promotion
    release_id, countdown = release.pk, min(project.poll_interval.total_seconds(), settings.MAX_COUNTDOWN)
    transaction.on_commit(lambda: enqueue_poll(release_id, generation, countdown=countdown), robust=True)


def end_watch(release: Release, generation: int) -> str:
    with transaction.atomic():
        ended = Release.objects.filter(pk=release.pk, state=S.PROMOTED, generation=generation).update(
            watch_until=None, next_poll_at=None, generation=generation + 1
        )
        if ended:
            ReleaseEvent.objects.create(
                release=release,
                kind=ReleaseEvent.Kind.NOTE,
                actor=GATEKEEPER,
                reason="bake watch ended: no breach while watched",
                data={"sessions": release.sessions, "crash_free_rate": release.crash_free_rate},
            )
    return "watch-ended" if ended else "stale"


def redrive(now: datetime | None = None) -> dict[str, int]:
    """The watchdog: re-drive overdue polls and due actions from PostgreSQL.

    Whatever the broker lost (a flushed Redis, a killed worker's prefetched messages) is found
    here by its timestamps and sent again; the claims make any duplicate harmless.
    """
    from releases.models import Action
    from releases.outbox import dispatch, recover_expired

    now = now or timezone.now()
    cutoff = now - WATCHDOG_GRACE
    polled = (
        Q(state=S.GATING)
        | Q(state=S.PROMOTED, watch_until__isnull=False)
        | Q(state=S.RAMPING, ramp_paused=False)
    )
    polls = list(
        Release.objects.filter(polled, next_poll_at__lt=cutoff)
        .order_by("next_poll_at")
        .values_list("pk", "generation")[:WATCHDOG_BATCH]
    )
    for release_id, generation in polls:
        enqueue_poll(release_id, generation)
    # A gating release with no next poll at all would never be judged: give it one.
    orphans = Release.objects.filter(state=S.GATING, next_poll_at__isnull=True).update(next_poll_at=now)
    redriven, given_up = recover_expired(now)
    actions = list(
        Action.objects.filter(
            status__in=[Action.Status.PENDING, Action.Status.CONFIRMING], next_attempt_at__lt=cutoff
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:WATCHDOG_BATCH]
    )
    for action_id in actions:
        dispatch(action_id)
    counts = {
        "polls": len(polls),
        "orphans": orphans,
        "actions": len(actions) + redriven,
        "given_up": given_up,
    }
    if any(counts.values()):
        logger.info("watchdog.redrive", extra=counts)
    return counts
