"""The gate's poll loop: ask Sentry, record what it said, let the pure verdict decide.

When a release is next polled lives in PostgreSQL (``next_poll_at``), never in a broker
countdown: a countdown is an ETA message that sits in a worker's memory until due (10,000 gates
would be 10,000 of them) and is lost or run twice when Redis restarts or a countdown outlives the
visibility timeout (kombu#337, celery#1307). Instead beat runs ``scheduler.dispatch_due`` every
second: it takes the due releases with one ``UPDATE ... RETURNING`` that pushes their
``next_poll_at`` out by a lease, and publishes one ``poll_batch`` per Sentry project and window,
so Sentry sees one sessions request for up to 100 releases. A lost message costs one lease.

A poll *claims* its release's generation with a compare-and-set (generation -> generation + 1),
so a duplicate message (a redelivery, a re-dispatch after a lease) finds the generation moved on
and drops itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from releases.core.errors import ProviderError
from releases.core.publish import task
from releases.domain.lifecycle import ReleaseState
from releases.domain.verdict import Evidence, Outcome, evaluate
from releases.integrations import clients
from releases.integrations.sentry.client import MAX_RELEASES_PER_QUERY
from releases.models import GateCheck, Release
from releases.workflows.bake import end_watch, watch_policy
from releases.workflows.canary.ramp import tick
from releases.workflows.gate import decide
from releases.workflows.rollback import rollback_live

logger = logging.getLogger(__name__)
S = ReleaseState


def poll_lease() -> timedelta:
    """How long a claimed poll owns its release: a Sentry call (and a page of it) at most twice
    the provider timeout, plus recording. A poll cut short by a killed worker is due again then,
    so the lease follows the timeout rather than a fixed figure. A poll that overruns
    it is harmless: the next one claims a newer generation and the late one records nothing.
    """
    return timedelta(seconds=2 * float(settings.PROVIDER_TIMEOUT) + 10)


def enqueue_poll(release_id: int, generation: int, countdown: float | None = None) -> None:
    try:
        task("releases.poll_release").apply_async((release_id, generation), countdown=countdown, retry=False)
    except Exception:  # the broker is down: next_poll_at in PostgreSQL lets the watchdog re-drive
        logger.warning("poll.enqueue_failed", extra={"release_id": release_id}, exc_info=True)


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
        return "stale" if release.generation != generation else tick(release, generation)
    if phase_of(release) is None:
        return "not-gating"
    return poll_batch([(release_id, generation)]).get(release_id, "stale")


def batch_size() -> int:
    """Releases per poll_batch message and per Sentry request (1: one request per release)."""
    return max(1, min(int(settings.POLL_BATCH), MAX_RELEASES_PER_QUERY))


def poll_batch(
    items: Sequence[tuple[int, int] | tuple[int, int, float]], scheduled_at: datetime | None = None
) -> dict[int, str]:
    """Poll many releases, one Sentry sessions request per Sentry project, environment and window.

    ``items`` are (release id, generation[, epoch seconds it was due]) as dispatched. Returns what
    happened to each claimed release; one missing from the answer was not claimed (moved on, or a
    duplicate message).
    ``scheduled_at``: when the dispatcher sent them. The next poll is due an interval after it,
    not after this batch happened to run, so releases sent together stay together (one Sentry
    request) however long the queue was.
    """
    wanted = {item[0]: item[1] for item in items}
    due = {item[0]: item[2] for item in items if len(item) > 2}
    releases = [
        r
        for r in Release.objects.select_related("project").filter(pk__in=wanted)
        if r.generation == wanted[r.pk] and phase_of(r) is not None
    ]
    now = timezone.now()
    outcomes: dict[int, str] = {}
    polled = []
    for release in releases:
        if phase_of(release) == "bake" and release.watch_until is not None and now >= release.watch_until:
            outcomes[release.pk] = end_watch(release, release.generation)
            continue
        polled.append(release)
    if not polled:
        return outcomes
    claimed = _claim(polled, now + poll_lease())
    groups: dict[tuple[str, str, str, datetime], list[Release]] = {}
    for release in polled:
        if release.pk not in claimed:
            outcomes[release.pk] = "lost-claim"
            continue
        project = release.project
        key = (
            project.sentry_org,
            project.sentry_project,
            project.sentry_environment,
            window_start(release, now),
        )
        groups.setdefault(key, []).append(release)
    for (org, sentry_project, environment, start), group in groups.items():
        size = batch_size()
        for first in range(0, len(group), size):
            chunk = group[first : first + size]
            outcomes.update(
                _poll_group(org, sentry_project, environment, start, chunk, now, scheduled_at, due)
            )
    return outcomes


def _claim(releases: Sequence[Release], lease: datetime) -> set[int]:
    """Claim them all: each release's generation + 1 if it is still the one we saw, and a lease
    on next_poll_at while Sentry answers. Returns the ids we won.

    The rows are locked first, so no other poll or decision can move a generation between
    reading and bumping it."""
    seen = Q()
    for release in releases:
        seen |= Q(pk=release.pk, generation=release.generation)
    with transaction.atomic():
        won = list(
            Release.objects.select_for_update(of=("self",))
            .filter(seen, state__in=(S.GATING, S.PROMOTED))
            .order_by("pk")  # one lock order for every batch: no deadlocks between them
            .values_list("pk", flat=True)
        )
        Release.objects.filter(pk__in=won).update(generation=F("generation") + 1, next_poll_at=lease)
    return set(won)


def _poll_group(  # noqa: PLR0917 - one Sentry request's scope
    org: str,
    project: str,
    environment: str,
    start: datetime,
    group: list[Release],
    now: datetime,
    scheduled_at: datetime | None,
    due: dict[int, float] | None = None,
) -> dict[int, str]:
    versions = [release.version for release in group]
    totals: dict[str, Any] = {}
    error = ""
    retry_after: float | None = None
    started = time.monotonic()
    try:
        totals = clients.sentry().release_sessions(
            org,
            project,
            environment or None,
            versions,
            start=start,
            end=now + timedelta(seconds=1),  # after the start even at an exact hour
        )
    except ProviderError as exc:
        error, retry_after = str(exc), exc.retry_after
        logger.warning("poll.sentry_error", extra={"releases": len(group), "error": error})
    duration_ms = int((time.monotonic() - started) * 1000)
    polls = []
    for release in group:
        found = totals.get(release.version)
        polls.append(
            Poll(
                release.pk,
                release.generation + 1,
                sessions=found.sessions if found is not None else None,
                crashed=found.crashed if found is not None else None,
                error=error,
                retry_after=retry_after,
                duration_ms=duration_ms,
                scheduled_at=scheduled_at,
                due_at=(due or {}).get(release.pk),
            )
        )
    return record_many(polls)


@dataclass(frozen=True)
class Poll:
    """What one poll of one release found, to be recorded."""

    release_id: int
    generation: int  # the generation the poll claimed
    sessions: int | None
    crashed: int | None
    error: str
    retry_after: float | None
    duration_ms: int
    scheduled_at: datetime | None = None
    due_at: float | None = None


def record(
    release_id: int,
    generation: int,
    *,
    sessions: int | None,
    crashed: int | None,
    error: str,
    retry_after: float | None,
    duration_ms: int,
    scheduled_at: datetime | None = None,
    due_at: float | None = None,
) -> str:
    """Store one check, evaluate, and reschedule or decide, in one transaction."""
    poll = Poll(
        release_id, generation, sessions, crashed, error, retry_after, duration_ms, scheduled_at, due_at
    )
    return record_many([poll]).get(release_id, "moved-on")


def record_many(polls: Sequence[Poll]) -> dict[int, str]:
    """Store a batch's checks and evaluate each release, in one transaction.

    The common case, waiting for more sessions, costs the batch four statements (lock, insert the
    checks, update the releases, commit) rather than four per release: at 10,000 gates that is
    the worker's whole budget. A release that reaches a verdict is decided one by one.
    """
    outcomes: dict[int, str] = {}
    with transaction.atomic():
        locked = {
            release.pk: release
            # Only the releases' rows: locking their project too (a joined FOR UPDATE does) would
            # take the project after the releases, where mark_live takes it before them: a deadlock.
            for release in Release.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(pk__in=[poll.release_id for poll in polls])
            .order_by("pk")  # one lock order for every batch: no deadlocks between them
        }
        now = timezone.now()
        checks: list[GateCheck] = []
        waiting: list[Release] = []
        deciding: list[tuple[Release, str, Any, dict[str, Any]]] = []
        for poll in polls:
            release = locked.get(poll.release_id)
            phase = phase_of(release) if release is not None else None
            if release is None or phase is None or release.generation != poll.generation:
                outcomes[poll.release_id] = "moved-on"  # a human (or an alert) decided meanwhile
                continue
            verdict, check, latest = _judge(release, phase, poll, now)
            checks.append(check)
            for name, value in latest.items():
                setattr(release, name, value)
            # The bake watch acts only on a breach: no data, errors and passes mean "keep watching".
            if verdict.outcome == Outcome.WAIT or (phase == "bake" and verdict.outcome != Outcome.FAIL):
                interval = release.project.poll_interval.total_seconds()
                delay = max(interval, poll.retry_after or 0.0)
                # An interval after it was sent (see poll_batch), unless the vendor asked for longer.
                anchor = poll.scheduled_at if poll.scheduled_at is not None and not poll.retry_after else now
                release.next_poll_at = anchor + timedelta(seconds=delay)  # dispatch_due sends it then
                waiting.append(release)
                outcomes[release.pk] = "wait"
            else:
                release.next_poll_at = None
                deciding.append((release, phase, verdict, check.figures))
        GateCheck.objects.bulk_create(checks)
        _save_figures([*waiting, *(item[0] for item in deciding)])
        for release, phase, verdict, figures in deciding:
            if phase == "bake":
                cause = "bake watch: " + "; ".join(verdict.reasons)
                rollback_live(release, cause=cause, figures=figures)
                outcomes[release.pk] = "breach"
            else:
                decide(release, verdict)
                outcomes[release.pk] = verdict.outcome.value
    return outcomes


FIGURES = ("consecutive_errors", "updated_at", "next_poll_at", "sessions", "crashed", "crash_free_rate")


def _save_figures(releases: Sequence[Release]) -> None:
    """One UPDATE for a batch's new figures (the batch's rows are locked by the caller)."""
    if releases:
        Release.objects.bulk_update(releases, list(FIGURES))


def _judge(release: Release, phase: str, poll: Poll, now: datetime) -> tuple[Any, GateCheck, dict[str, Any]]:
    """The verdict on one poll's evidence, its check row, and the release's new figures."""
    errors = release.consecutive_errors + 1 if poll.error else 0
    evidence = Evidence(
        sessions=poll.sessions,
        crashed=poll.crashed,
        elapsed=release.elapsed(now),
        consecutive_errors=errors,
        error=poll.error or None,
    )
    verdict = evaluate(release.policy() if phase == "gate" else watch_policy(release), evidence)
    if verdict.rule == "invalid_evidence" and not poll.error:
        errors = release.consecutive_errors + 1
    figures = verdict.figures.as_dict()
    check = GateCheck(
        release=release,
        generation=poll.generation,
        phase=phase,
        checked_at=now,
        sessions=poll.sessions,
        crashed=poll.crashed,
        crash_free_rate=figures.get("crash_free_rate"),
        upper_bound=figures.get("upper_bound"),
        outcome=verdict.outcome.value,
        rule=verdict.rule,
        reasons=list(verdict.reasons),
        figures=figures,
        error=poll.error,
        duration_ms=poll.duration_ms,
        lag_ms=max(0, int((now.timestamp() - poll.due_at) * 1000)) if poll.due_at is not None else None,
    )
    latest: dict[str, Any] = {"consecutive_errors": errors, "updated_at": now}
    if poll.sessions is not None:
        latest.update(
            sessions=poll.sessions, crashed=poll.crashed, crash_free_rate=figures.get("crash_free_rate")
        )
    return verdict, check, latest


def phase_of(release: Release) -> str | None:
    """``gate`` while judged for promotion, ``bake`` while watched after it, else not polled."""
    if release.state == S.GATING:
        return "gate"
    if release.state == S.PROMOTED and release.watch_until is not None:
        return "bake"
    return None
