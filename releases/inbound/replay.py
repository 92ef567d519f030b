"""Replaying the spool once PostgreSQL answers again: each kept delivery goes through the same
``take`` as the live webhook, after its signature is checked again over the kept bytes.

Exactly once in effect: every delivery is deduplicated in PostgreSQL (Vercel by its envelope id,
a Sentry metric alert by ``metric_alert:<id>:<action>``, an ignored resource by its body's hash),
so a record replayed twice (a crash between handling it and removing it from the spool), or a
Vercel retry that was taken live meanwhile, is a duplicate the second time. Sentry's timestamp
window is not applied: the record is old by design, and it was checked when the delivery arrived.

A record that fails for any other reason goes to ``failed/`` and the others go on. While the
database is still unreachable nothing more is tried, and what is left stays for the next run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connection
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from releases.inbound import sentry, spool, vercel
from releases.inbound.common import DATABASE_DOWN, HmacSignature
from releases.inbound.spool import Claimed, Inbound

logger = logging.getLogger(__name__)

SOURCES: dict[str, tuple[type[HmacSignature], Callable[[Inbound], Response]]] = {
    "sentry": (sentry.SentrySignature, sentry.take),
    "vercel": (vercel.VercelSignature, vercel.take),
}
# Seconds a scheduled run spends before it leaves the rest for the next one, so it never holds
# the schedule queue (the dispatcher's) for long; what it finished is removed from the spool.
RUN_BUDGET = 5.0
# What a replayed record's handling answers, as the live webhook would have.
HANDLED = frozenset({"accepted", "ignored", "duplicate"})


class Refused(Exception):
    """A record the replay will not take (its signature no longer matches, an unknown source)."""


class DatabaseDown(Exception):
    pass


def replay(now: datetime | None = None, budget: float | None = None) -> dict[str, int]:
    """Take what the spool holds; counts by outcome (``left``: still in the spool afterwards)."""
    now = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    with spool.claimed() as files:
        if not files:
            return dict(counts)
        started = time.monotonic()
        try:
            _save_torn(files, counts)
            # In the order they arrived, across files: one web process may have kept a Vercel
            # deployment.succeeded and another the deployment.promoted that followed it.
            queue = sorted(((r, f) for f in files for r in f.records), key=lambda pair: pair[0].received_at)
            oldest = queue[0][0].received_at if queue else now
            for record, owner in queue:
                if budget is not None and time.monotonic() - started > budget:
                    break
                try:
                    counts[_take(record)] += 1
                except DatabaseDown:
                    counts["database_down"] = 1
                    break
                except Exception as exc:  # any other failure: kept in failed/, never blocks the rest
                    if not _failed(record, exc):
                        continue
                    counts["failed"] += 1
                owner.done.add(record.id)
        finally:
            for owner in files:
                owner.finish()
        counts["left"] = sum(len(f.records) - len(f.done) for f in files)
    logger.info(
        "spool.replayed",
        extra={**counts, "files": len(files), "waited_s": round((now - oldest).total_seconds(), 1)},
    )
    return dict(counts)


def _take(record: Inbound) -> str:
    """What the live webhook would have answered (its ``status``)."""
    if record.source not in SOURCES:
        raise Refused(f"unknown source {record.source!r}")
    signature, take = SOURCES[record.source]
    if not signature.matches(record.body, record.headers.get(signature.header, ""), signature().secret()):
        raise Refused(f"{signature.header}: does not match the body with the current secret")
    for attempt in (1, 2):
        try:
            return str(take(record).data["status"])
        except DATABASE_DOWN:
            if not _database_answers():
                raise DatabaseDown() from None
            if attempt == 2:
                raise  # the database answers, yet this record keeps failing: not an outage
            # The database is back (a restart cut the connection mid-record): once more.
    raise AssertionError("unreachable")


def _database_answers() -> bool:
    try:
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()  # drop the connection the outage broke
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DATABASE_DOWN:
        return False
    return True


def _failed(record: Inbound, exc: Exception) -> bool:
    """Move the record to failed/, with why; False when even that cannot be written."""
    if isinstance(exc, APIException):
        error = f"{exc.status_code}: {exc.detail}"  # what the live webhook would have answered
    elif isinstance(exc, Refused):
        error = str(exc)
    else:
        error = f"{type(exc).__name__}: {exc}"
    log = logger.warning if isinstance(exc, (APIException, Refused)) else logger.error
    log(
        "spool.record_failed",
        extra={"record": record.id, "source": record.source, "error": error},
        exc_info=not isinstance(exc, (APIException, Refused)),
    )
    try:
        spool.fail(record, error)
    except OSError:
        logger.exception("spool.fail_write_failed", extra={"record": record.id})
        return False
    return True


def _save_torn(files: list[Claimed], counts: Counter[str]) -> None:
    for claimed in files:
        if not claimed.torn:
            continue
        try:
            spool.fail_torn(claimed)
        except OSError:
            logger.exception("spool.fail_write_failed", extra={"file": claimed.path.name})
            continue
        counts["torn"] += len(claimed.torn)
        logger.warning("spool.torn_lines", extra={"file": claimed.path.name, "lines": len(claimed.torn)})
