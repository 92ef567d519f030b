"""A named lease in PostgreSQL: at most one holder at a time, taken and renewed by compare-and-set.

Expiry is decided by the database's clock (``now()``), never the caller's: two beats on machines
whose clocks disagree by seconds still agree on when a lease has lapsed. A holder that measures its
own lease from before it asked (``releases/scheduling/beat.py``) therefore stops before anyone else
can start.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import BooleanField, Case, DateTimeField, ExpressionWrapper, F, Q, When
from django.db.models.functions import Now

from releases.models import SchedulerLease

LAPSED = datetime(2000, 1, 1, tzinfo=UTC)
# Drawn once per process, so the holder Celery's banner prints is the one that runs.
_PROCESS_TOKEN = secrets.token_hex(3)


@dataclass(frozen=True)
class LeaseView:
    name: str
    holder: str
    expires_at: datetime
    acquired_at: datetime
    lapsed: bool  # by the database's clock

    def held_by(self) -> str:
        """Who holds it now: "" when nobody does."""
        return "" if self.lapsed else self.holder


def process_holder() -> str:
    """host:pid:random. The random part tells a restarted process from a predecessor with its pid
    (pid 1 in every container)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS_TOKEN}"


def read(name: str) -> LeaseView | None:
    row = (
        SchedulerLease.objects.filter(name=name)
        .annotate(lapsed=ExpressionWrapper(Q(expires_at__lt=Now()), output_field=BooleanField()))
        .values_list("holder", "expires_at", "acquired_at", "lapsed")
        .first()
    )
    if row is None:
        return None
    holder, expires_at, acquired_at, lapsed = row
    return LeaseView(name, holder, expires_at, acquired_at, bool(lapsed))


def hold(name: str, holder: str, seconds: float) -> bool:
    """Take ``name`` for ``holder``, or renew it, for ``seconds`` from now: whether it holds it.

    One UPDATE that matches only if ``holder`` holds it already or it has lapsed, so of two beats
    asking at once exactly one gets it (the other's UPDATE waits for the row, then no longer matches).
    """
    for attempt in range(2):
        taken = SchedulerLease.objects.filter(Q(holder=holder) | Q(expires_at__lt=Now()), name=name).update(
            holder=holder,
            expires_at=ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField()),
            renewed_at=Now(),
            acquired_at=Case(When(holder=holder, then=F("acquired_at")), default=Now()),
        )
        if taken:
            return True
        if attempt or SchedulerLease.objects.filter(name=name).exists():
            return False
        # A new database: the row is created lapsed, then taken like any lapsed lease.
        SchedulerLease.objects.bulk_create(
            [SchedulerLease(name=name, holder="", expires_at=LAPSED, renewed_at=LAPSED, acquired_at=LAPSED)],
            ignore_conflicts=True,
        )
    return False


def give_up(name: str, holder: str) -> bool:
    """Let the lease lapse now, if ``holder`` holds it, so another takes over without waiting."""
    return bool(
        SchedulerLease.objects.filter(name=name, holder=holder).update(expires_at=Now(), renewed_at=Now())
    )
