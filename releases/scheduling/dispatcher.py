"""The dispatcher, run by beat every second: send the polls (and canary ticks) that are due.

When an analysis is next checked lives in PostgreSQL (``Analysis.next_check_at``), never in a
broker countdown (see releases/workflows/polls.py for why). The dispatcher takes the due analyses
in one transaction, leasing them, and sends one ``poll_batch`` per project for up to 100 releases.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from releases.core.publish import task
from releases.models import Analysis
from releases.workflows.polls import POLLED, batch_size, enqueue_poll

logger = logging.getLogger(__name__)
RUNNING = Q(phase=Analysis.Phase.RUNNING)
GATE_OR_BAKE = Q(RUNNING, kind__in=POLLED)


def _take_due(now: datetime, limit: int, lease: datetime) -> list[tuple[int, int, str, int, datetime, int]]:
    """(id, generation, kind, project, when due, release) of up to ``limit`` due analyses, leased.

    A project's due gate and bake polls are topped up with its polls due next (within
    POLL_COALESCE seconds) to fill whole batches: 120 due take 200 if 80 more are due soon, so
    Sentry answers full requests of 100. Releases sent together are next due together (the next
    poll is anchored to this dispatch), so the batches stay full interval after interval. Canary
    ticks are never taken early: their spacing is the policy's.

    ``skip_locked``: two dispatchers (a beat restarted twice, two beat replicas) share the work
    instead of waiting on each other; SQLite, with one writer at a time, ignores it.
    """
    soon = now + timedelta(seconds=settings.POLL_COALESCE)
    size = batch_size()
    fields = ("pk", "generation", "kind", "release__project_id", "next_check_at", "release_id")
    with transaction.atomic():
        due = dict(
            Analysis.objects.filter(GATE_OR_BAKE, next_check_at__lte=now)
            .values("release__project_id")
            .annotate(n=Count("pk"))
            .values_list("release__project_id", "n")
        )
        candidates = (
            Analysis.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(GATE_OR_BAKE, next_check_at__lte=soon, release__project_id__in=due)
                | Q(RUNNING, kind=Analysis.Kind.CANARY, next_check_at__lte=now)
            )
            .order_by("next_check_at", "pk")
            .values_list(*fields)
        )
        taken: dict[int, int] = {}
        rows = []
        for row in candidates:
            _, _, kind, project_id, _, _ = row
            if kind != Analysis.Kind.CANARY:
                whole_batches = -(-due.get(project_id, 0) // size) * size
                if taken.get(project_id, 0) >= whole_batches:
                    continue
                taken[project_id] = taken.get(project_id, 0) + 1
            rows.append(row)
            if len(rows) >= limit:
                break
        Analysis.objects.filter(pk__in=[row[0] for row in rows]).update(next_check_at=lease)
    return rows


def dispatch_due(now: datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """Publish the polls (and canary ticks) that are due: the scheduler, run by beat every second.

    One transaction takes up to ``limit`` due analyses and pushes their ``next_check_at`` out by the
    dispatch lease, so the next run does not send them again while their message waits in the
    queue; a lost message is simply due again when the lease ends. Gate and bake polls go out as
    one ``poll_batch`` per Sentry project and environment (up to 100 releases each).
    """
    now = now or timezone.now()
    rows = _take_due(now, limit or settings.DISPATCH_LIMIT, now + timedelta(seconds=settings.DISPATCH_LEASE))
    by_project: dict[int, list[tuple[int, int, float]]] = {}
    releases: dict[int, list[int]] = {}
    ticks, size = 0, batch_size()
    for analysis_id, generation, kind, project_id, due_at, release_id in rows:
        if kind == Analysis.Kind.CANARY:
            enqueue_poll(analysis_id, generation, release_id=release_id)
            ticks += 1
        else:
            by_project.setdefault(project_id, []).append((analysis_id, generation, due_at.timestamp()))
            releases.setdefault(project_id, []).append(release_id)
    batches = 0
    for project_id, items in by_project.items():
        for first in range(0, len(items), size):
            named = releases[project_id][first : first + size]
            try:
                task("releases.poll_batch").apply_async(
                    (items[first : first + size], now.isoformat()),
                    retry=False,
                    # Flower and the worker's log name the batch: its project and its releases.
                    shadow=f"releases.poll_batch: project {project_id}, {len(named)} releases",
                    argsrepr=f"(releases {_ids(named)}, {now.isoformat()!r})",
                )
            except Exception:  # the broker is down: the lease ends and they are due again
                logger.warning("dispatch.publish_failed", exc_info=True)
            batches += 1
    return {"due": len(rows), "batches": batches, "ticks": ticks}


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return f"[{shown}{f', ... {len(ids) - 10} more' if len(ids) > 10 else ''}]"
