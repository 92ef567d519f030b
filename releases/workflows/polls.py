"""The gate's poll loop: ask Sentry, record what it said, let the pure verdict decide.

When an analysis is next checked lives in PostgreSQL (``Analysis.next_check_at``), never in a broker
countdown: a countdown is an ETA message that sits in a worker's memory until due (10,000 gates
would be 10,000 of them) and is lost or run twice when Redis restarts or a countdown outlives the
visibility timeout (kombu#337, celery#1307). Instead beat runs ``scheduler.dispatch_due`` every
second: it takes the due gate and bake analyses, pushes their ``next_check_at`` out by a lease,
and publishes one ``poll_batch`` per Sentry project, so Sentry sees one sessions request for up
to 100 releases. A lost message costs one lease.

A poll *claims* its analysis' generation with a compare-and-set (generation -> generation + 1),
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
from django.db.models import F
from django.utils import timezone

from releases.core.errors import ProviderError
from releases.core.publish import task
from releases.domain.evidence import Evidence, Outcome
from releases.domain.lifecycle import ReleaseState
from releases.domain.verdict import evaluate
from releases.integrations import clients
from releases.integrations.sentry.client import MAX_RELEASES_PER_QUERY
from releases.models import Analysis, GateCheck, Release
from releases.workflows import sentry_project
from releases.workflows.bake import end_watch
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


def enqueue_poll(
    analysis_id: int, generation: int, countdown: float | None = None, release_id: int | None = None
) -> None:
    # Flower and the worker's log name the release; the task itself takes the analysis.
    named = (
        {
            "shadow": f"releases.poll_release: release {release_id}",
            "argsrepr": f"({analysis_id}, {generation})",
        }
        if release_id is not None
        else {}
    )
    try:
        task("releases.poll_release").apply_async(
            (analysis_id, generation), countdown=countdown, retry=False, **named
        )
    except Exception:  # the broker is down: the lease on next_check_at ends and it is due again
        logger.warning("poll.enqueue_failed", extra={"analysis_id": analysis_id}, exc_info=True)


def window_start(release: Release, now: datetime) -> datetime:
    """The hour the deployment was created: with ``interval=1h`` the totals cover its whole life.

    Never later than the current hour: Vercel's clock may run ahead of ours.
    """
    created = release.deployment_created_at or release.gating_started_at or release.created_at
    return min(created, now).replace(minute=0, second=0, microsecond=0)


def poll_once(analysis_id: int, generation: int) -> str:
    """One check of one analysis: a gate or bake poll, or a canary stage's tick. Returns what
    happened, for logs and tests."""
    analysis = Analysis.objects.select_related("release__project").filter(pk=analysis_id).first()
    if analysis is None:
        return "gone"
    if analysis.phase != Analysis.Phase.RUNNING:
        return "not-running"
    if analysis.generation != generation:
        return "stale"
    if analysis.kind == Analysis.Kind.CANARY:
        return tick(analysis, generation)
    return poll_batch([(analysis_id, generation)]).get(analysis_id, "stale")


def batch_size() -> int:
    """Releases per poll_batch message and per Sentry request (1: one request per release)."""
    return max(1, min(int(settings.POLL_BATCH), MAX_RELEASES_PER_QUERY))


def poll_batch(
    items: Sequence[tuple[int, int] | tuple[int, int, float]], scheduled_at: datetime | None = None
) -> dict[int, str]:
    """Poll many gate and bake analyses, one Sentry sessions request per Sentry project,
    environment and window.

    ``items`` are (analysis id, generation[, epoch seconds it was due]) as dispatched. Returns what
    happened to each claimed analysis; one missing from the answer was not claimed (moved on, or a
    duplicate message).
    ``scheduled_at``: when the dispatcher sent them. The next poll is due an interval after it,
    not after this batch happened to run, so releases sent together stay together (one Sentry
    request) however long the queue was.
    """
    wanted = {item[0]: item[1] for item in items}
    due = {item[0]: item[2] for item in items if len(item) > 2}
    analyses = [
        a
        for a in Analysis.objects.select_related("release__project").filter(
            pk__in=wanted, phase=Analysis.Phase.RUNNING, kind__in=POLLED
        )
        if a.generation == wanted[a.pk]
    ]
    now = timezone.now()
    outcomes: dict[int, str] = {}
    polled = []
    for analysis in analyses:
        if analysis.kind == Analysis.Kind.BAKE and analysis.ends_at is not None and now >= analysis.ends_at:
            outcomes[analysis.pk] = end_watch(analysis)
            continue
        polled.append(analysis)
    if not polled:
        return outcomes
    claimed = _claim(polled, now + poll_lease())
    groups: dict[tuple[str, str | ProviderError, str, datetime], list[Analysis]] = {}
    query_ids: dict[int, str | ProviderError] = {}
    for analysis in polled:
        if analysis.pk not in claimed:
            outcomes[analysis.pk] = "lost-claim"
            continue
        release = analysis.release
        project = release.project
        if project.pk not in query_ids:
            try:
                query_ids[project.pk] = sentry_project.query_id(project)
            except ProviderError as exc:  # recorded as this poll's error, like a failed query
                query_ids[project.pk] = exc
        key = (
            project.sentry_org,
            query_ids[project.pk],
            project.sentry_environment,
            window_start(release, now),
        )
        groups.setdefault(key, []).append(analysis)
    for (org, query_project, environment, start), group in groups.items():
        size = batch_size()
        for first in range(0, len(group), size):
            chunk = group[first : first + size]
            outcomes.update(
                _poll_group(org, query_project, environment, start, chunk, now, scheduled_at, due)
            )
    return outcomes


def _claim(analyses: Sequence[Analysis], lease: datetime) -> set[int]:
    """Claim them all: each analysis' generation + 1 if it is still the one we saw, and a lease
    on next_check_at while Sentry answers. Returns the ids we won.

    The rows are locked first, so no other poll can move a generation between reading and
    bumping it."""
    seen = {analysis.pk: analysis.generation for analysis in analyses}
    with transaction.atomic():
        now = (
            Analysis.objects.select_for_update()
            .filter(pk__in=seen, phase=Analysis.Phase.RUNNING)
            .order_by("pk")  # one lock order for every batch: no deadlocks between them
            .values_list("pk", "generation")
        )
        won = [pk for pk, generation in now if seen[pk] == generation]
        Analysis.objects.filter(pk__in=won).update(generation=F("generation") + 1, next_check_at=lease)
    return set(won)


def _poll_group(  # noqa: PLR0917 - one Sentry request's scope
    org: str,
    project: str | ProviderError,
    environment: str,
    start: datetime,
    group: list[Analysis],
    now: datetime,
    scheduled_at: datetime | None,
    due: dict[int, float] | None = None,
) -> dict[int, str]:
    versions = [analysis.release.version for analysis in group]
    totals: dict[str, Any] = {}
    error = ""
    retry_after: float | None = None
    started = time.monotonic()
    try:
        if isinstance(project, ProviderError):
            raise project
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
    for analysis in group:
        found = totals.get(analysis.release.version)
        polls.append(
            Poll(
                analysis.pk,
                analysis.generation + 1,
                sessions=found.sessions if found is not None else None,
                crashed=found.crashed if found is not None else None,
                error=error,
                retry_after=retry_after,
                duration_ms=duration_ms,
                scheduled_at=scheduled_at,
                due_at=(due or {}).get(analysis.pk),
            )
        )
    return record_many(polls, loaded={analysis.pk: analysis for analysis in group})


@dataclass(frozen=True)
class Poll:
    """What one poll of one analysis found, to be recorded."""

    analysis_id: int
    generation: int  # the generation the poll claimed
    sessions: int | None
    crashed: int | None
    error: str
    retry_after: float | None
    duration_ms: int
    scheduled_at: datetime | None = None
    due_at: float | None = None


def record(
    analysis_id: int,
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
        analysis_id, generation, sessions, crashed, error, retry_after, duration_ms, scheduled_at, due_at
    )
    return record_many([poll]).get(analysis_id, "moved-on")


def record_many(polls: Sequence[Poll], loaded: dict[int, Analysis] | None = None) -> dict[int, str]:
    """Store a batch's checks and evaluate each analysis, in one transaction.

    The common case, waiting for more sessions, costs the batch a few statements (lock, insert the
    checks, update the analyses and the releases' figures, commit) rather than a few per release:
    at 10,000 gates that is the worker's whole budget. A release that reaches a verdict is decided
    one by one.

    ``loaded``: the analyses (with release and project) as the poll read them; under the locks
    only what another process can change meanwhile is read again.
    """
    outcomes: dict[int, str] = {}
    with transaction.atomic():
        ids = [poll.analysis_id for poll in polls]
        # The releases' rows first, then their analyses': the lock order of every writer. Only
        # the releases' rows: locking their project too (a joined FOR UPDATE does) would take the
        # project after the releases, where mark_live takes it before them: a deadlock.
        list(
            Release.objects.select_for_update()
            .filter(pk__in=Analysis.objects.filter(pk__in=ids).values("release_id"))
            .order_by("pk")  # one lock order for every batch: no deadlocks between them
            .values_list("pk", flat=True)
        )
        fresh: dict[int, tuple[int, str, int, str]] = {
            pk: (generation, phase, errors, state)
            for pk, generation, phase, errors, state in Analysis.objects.select_for_update(of=("self",))
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", "generation", "phase", "consecutive_errors", "release__state")
        }
        if loaded is None:
            loaded = {a.pk: a for a in Analysis.objects.select_related("release__project").filter(pk__in=ids)}
        analyses: dict[int, Analysis] = {}
        for pk, (generation, phase, errors, state) in fresh.items():
            if pk in loaded:
                analysis = loaded[pk]
                analysis.generation, analysis.phase, analysis.consecutive_errors = generation, phase, errors
                analysis.release.state = state
                analyses[pk] = analysis
        now = timezone.now()
        checks: list[GateCheck] = []
        waiting: list[Analysis] = []
        measured: list[Release] = []  # releases whose figures moved
        deciding: list[tuple[Analysis, Any, dict[str, Any]]] = []
        for poll in polls:
            found = analyses.get(poll.analysis_id)
            if (
                found is None
                or found.phase != Analysis.Phase.RUNNING
                or found.generation != poll.generation
                or found.release.state != STATE_OF[found.kind]
            ):
                outcomes[poll.analysis_id] = "moved-on"  # a human (or an alert) decided meanwhile
                continue
            analysis = found
            release = analysis.release
            verdict, check, latest = _judge(analysis, poll, now)
            checks.append(check)
            analysis.consecutive_errors = latest.pop("consecutive_errors")
            if any(getattr(release, name) != value for name, value in latest.items()):
                for name, value in latest.items():
                    setattr(release, name, value)
                release.updated_at = now
                measured.append(release)
            bake = analysis.kind == Analysis.Kind.BAKE
            # The bake watch acts only on a breach: no data, errors and passes mean "keep watching".
            if verdict.outcome == Outcome.WAIT or (bake and verdict.outcome != Outcome.FAIL):
                interval = release.project.poll_interval.total_seconds()
                delay = max(interval, poll.retry_after or 0.0)
                # An interval after it was sent (see poll_batch), unless the vendor asked for longer.
                anchor = poll.scheduled_at if poll.scheduled_at is not None and not poll.retry_after else now
                analysis.next_check_at = anchor + timedelta(seconds=delay)  # dispatch_due sends it then
                waiting.append(analysis)
                outcomes[analysis.pk] = "wait"
            else:
                analysis.next_check_at, analysis.ended_at = None, now
                analysis.phase = ENDS_AS[verdict.outcome]
                deciding.append((analysis, verdict, check.figures))
        GateCheck.objects.bulk_create(checks)
        _save_figures([*waiting, *(item[0] for item in deciding)], measured)
        for analysis, verdict, figures in deciding:
            release = analysis.release
            release.refresh_from_db()  # all of it, as read under its lock: it is about to be decided
            if analysis.kind == Analysis.Kind.BAKE:
                cause = "bake watch: " + "; ".join(verdict.reasons)
                rollback_live(release, cause=cause, figures=figures)
                outcomes[analysis.pk] = "breach"
            else:
                decide(release, verdict)
                outcomes[analysis.pk] = verdict.outcome.value
    return outcomes


POLLED = (Analysis.Kind.GATE, Analysis.Kind.BAKE)
STATE_OF: dict[str, str] = {Analysis.Kind.GATE: S.GATING, Analysis.Kind.BAKE: S.PROMOTED}
ENDS_AS = {
    Outcome.PASS: Analysis.Phase.PASSED,
    Outcome.FAIL: Analysis.Phase.FAILED,
    Outcome.INCONCLUSIVE: Analysis.Phase.INCONCLUSIVE,
}
RELEASE_FIGURES = ("sessions", "crashed", "crash_free_rate", "updated_at")


def _save_figures(analyses: Sequence[Analysis], measured: Sequence[Release]) -> None:
    """Write the batch's new counters and figures (the caller holds the rows' locks).

    A batch was sent together and is next due together, so its waiting analyses share their new
    values: one UPDATE per distinct set of them, not a CASE per row. Only the releases whose
    figures moved are written (most gates of a busy day have no traffic yet): one bulk_update.
    """
    groups: dict[tuple[Any, ...], list[int]] = {}
    for analysis in analyses:
        values = (analysis.phase, analysis.consecutive_errors, analysis.next_check_at, analysis.ended_at)
        groups.setdefault(values, []).append(analysis.pk)
    now = timezone.now()
    for (phase, errors, next_check_at, ended_at), ids in groups.items():
        Analysis.objects.filter(pk__in=ids).update(
            phase=phase,
            consecutive_errors=errors,
            next_check_at=next_check_at,
            ended_at=ended_at,
            updated_at=now,
        )
    if measured:
        Release.objects.bulk_update(measured, list(RELEASE_FIGURES))


def _judge(analysis: Analysis, poll: Poll, now: datetime) -> tuple[Any, GateCheck, dict[str, Any]]:
    """The verdict on one poll's evidence, its check row, and the new counters and figures."""
    errors = analysis.consecutive_errors + 1 if poll.error else 0
    evidence = Evidence(
        sessions=poll.sessions,
        crashed=poll.crashed,
        elapsed=analysis.elapsed(now),
        consecutive_errors=errors,
        error=poll.error or None,
    )
    verdict = evaluate(analysis.verdict_policy(), evidence)
    if verdict.rule == "invalid_evidence" and not poll.error:
        errors = analysis.consecutive_errors + 1
    figures = verdict.figures.as_dict()
    check = GateCheck(
        release_id=analysis.release_id,
        analysis=analysis,
        generation=poll.generation,
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
    latest: dict[str, Any] = {"consecutive_errors": errors}
    if poll.sessions is not None:
        latest.update(
            sessions=poll.sessions, crashed=poll.crashed, crash_free_rate=figures.get("crash_free_rate")
        )
    return verdict, check, latest
