"""What beat drives: ``dispatch_due`` every second sends the polls that are due, and the watchdog
re-drives actions the broker lost.

When a release is next polled lives in PostgreSQL (``next_poll_at``), never in a broker
countdown (see releases/polling.py for why). The dispatcher takes the due releases in one
statement, leasing them, and sends one ``poll_batch`` per project for up to 100 releases.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from releases.models import Release
from releases.polling import batch_size, enqueue_poll
from releases.states import ReleaseState

logger = logging.getLogger(__name__)
S = ReleaseState
WATCHDOG_GRACE = timedelta(seconds=15)
WATCHDOG_BATCH = 1000

GATE_OR_BAKE = Q(state=S.GATING) | Q(state=S.PROMOTED, watch_until__isnull=False)


def _take_due(now: datetime, limit: int, lease: datetime) -> list[tuple[int, int, str, int, datetime]]:
    """(id, generation, state, project, when due) of up to ``limit`` due releases, leased.

    A project's due gate and bake polls are topped up with its polls due next (within
    POLL_COALESCE seconds) to fill whole batches: 120 due take 200 if 80 more are due soon, so
    Sentry answers full requests of 100. Releases sent together are next due together (the next
    poll is anchored to this dispatch), so the batches stay full interval after interval. Canary
    ticks are never taken early: their spacing is the policy's.
    """
    soon = now + timedelta(seconds=settings.POLL_COALESCE)
    size = batch_size()
    if connection.vendor != "postgresql":
        return _take_due_portably(now, soon, size, limit, lease)
    table = Release._meta.db_table
    gate_or_bake = "(state = %(gating)s OR (state = %(promoted)s AND watch_until IS NOT NULL))"
    with connection.cursor() as cursor:
        # One statement; SKIP LOCKED lets two dispatchers (a beat restarted twice) share the work.
        cursor.execute(
            f"""
            WITH due_projects AS (
                SELECT project_id, count(*) AS due FROM {table}
                 WHERE next_poll_at <= %(now)s AND {gate_or_bake} GROUP BY project_id
            ),
            ranked AS (
                SELECT r.id, r.project_id, d.due,
                       row_number() OVER (PARTITION BY r.project_id ORDER BY r.next_poll_at, r.id) AS n
                  FROM {table} r JOIN due_projects d ON d.project_id = r.project_id
                 WHERE r.next_poll_at <= %(soon)s AND {gate_or_bake}
            ),
            wanted AS (
                SELECT id FROM ranked WHERE n <= (due + %(size)s - 1) / %(size)s * %(size)s
                UNION ALL
                SELECT id FROM {table}
                 WHERE next_poll_at <= %(now)s AND state = %(ramping)s AND NOT ramp_paused
            ),
            due AS (
                SELECT id, next_poll_at AS due_at FROM {table}
                 WHERE id IN (SELECT id FROM wanted)
                 ORDER BY next_poll_at
                 LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED
            )
            UPDATE {table} r SET next_poll_at = %(lease)s FROM due WHERE r.id = due.id
            RETURNING r.id, r.generation, r.state, r.project_id, due.due_at
            """,  # noqa: S608 - the table name is the model's own; values are parameters
            {
                "now": now,
                "soon": soon,
                "size": size,
                "limit": limit,
                "lease": lease,
                "gating": S.GATING,
                "promoted": S.PROMOTED,
                "ramping": S.RAMPING,
            },
        )
        return cursor.fetchall()


def _take_due_portably(
    now: datetime, soon: datetime, size: int, limit: int, lease: datetime
) -> list[tuple[int, int, str, int, datetime]]:
    """``_take_due`` for SQLite (make run's default): one writer, no SKIP LOCKED, no hurry."""
    fields = ("pk", "generation", "state", "project_id", "next_poll_at")
    with transaction.atomic():
        due: dict[int, int] = {}
        for project_id in Release.objects.filter(GATE_OR_BAKE, next_poll_at__lte=now).values_list(
            "project_id", flat=True
        ):
            due[project_id] = due.get(project_id, 0) + 1
        taken: dict[int, int] = {}
        rows = []
        for row in (
            Release.objects.filter(GATE_OR_BAKE, next_poll_at__lte=soon, project_id__in=due)
            .order_by("next_poll_at", "pk")
            .values_list(*fields)
        ):
            project_id = row[3]
            if taken.get(project_id, 0) < -(-due[project_id] // size) * size:
                taken[project_id] = taken.get(project_id, 0) + 1
                rows.append(row)
        rows += Release.objects.filter(state=S.RAMPING, ramp_paused=False, next_poll_at__lte=now).values_list(
            *fields
        )
        rows = sorted(rows, key=lambda row: row[4])[:limit]
        Release.objects.filter(pk__in=[row[0] for row in rows]).update(next_poll_at=lease)
    return rows


def dispatch_due(now: datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """Publish the polls (and canary ticks) that are due: the scheduler, run by beat every second.

    One statement takes up to ``limit`` due releases and pushes their ``next_poll_at`` out by the
    dispatch lease, so the next run does not send them again while their message waits in the
    queue; a lost message is simply due again when the lease ends. Gate and bake polls go out as
    one ``poll_batch`` per Sentry project and environment (up to 100 releases each).
    """
    from releases.tasks import poll_batch as poll_batch_task

    now = now or timezone.now()
    rows = _take_due(now, limit or settings.DISPATCH_LIMIT, now + timedelta(seconds=settings.DISPATCH_LEASE))
    by_project: dict[int, list[tuple[int, int, float]]] = {}
    ticks, size = 0, batch_size()
    for release_id, generation, state, project_id, due_at in rows:
        if state == S.RAMPING:
            enqueue_poll(release_id, generation)
            ticks += 1
        else:
            by_project.setdefault(project_id, []).append((release_id, generation, due_at.timestamp()))
    batches = 0
    for items in by_project.values():
        for first in range(0, len(items), size):
            try:
                poll_batch_task.apply_async((items[first : first + size], now.isoformat()), retry=False)
            except Exception:  # the broker is down: the lease ends and they are due again
                logger.warning("dispatch.publish_failed", exc_info=True)
            batches += 1
    return {"due": len(rows), "batches": batches, "ticks": ticks}


def redrive(now: datetime | None = None) -> dict[str, int]:
    """The watchdog: re-drive due actions from PostgreSQL, and give a poll to a gate without one.

    Whatever the broker lost (a flushed Redis, a killed worker's prefetched messages) is found
    here by its timestamps and sent again; the claims make any duplicate harmless. Polls need no
    re-driving: ``dispatch_due`` sends whatever is due, lost messages included, once their lease ends.
    """
    from releases.models import Action
    from releases.outbox import dispatch, recover_expired

    now = now or timezone.now()
    cutoff = now - WATCHDOG_GRACE
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
        "orphans": orphans,
        "actions": len(actions) + redriven,
        "given_up": given_up,
    }
    if any(counts.values()):
        logger.info("watchdog.redrive", extra=counts)
    return counts
