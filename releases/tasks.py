"""Thin Celery tasks: ids in, plain functions do the work, every task safe to run twice.

The only module that defines tasks. Nothing imports it: the rest of the code publishes tasks by
name (``releases/core/publish.py``), so the task layer sits above everything it calls.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from celery import shared_task

from releases.core import outbox
from releases.inbound import replay
from releases.scheduling import dispatcher, liveness, watchdog
from releases.workflows import polls, reconcile_alerts


# acks_late: a poll claimed by generation is harmless when redelivered, and one lost with a
# killed worker comes back (or the watchdog re-drives it from PostgreSQL sooner).
# The limits leave room for a canary tick (its checks may take up to two minutes; see
# releases/workflows/canary/ramp.py, TICK_LEASE).
@shared_task(name="releases.poll_release", acks_late=True, soft_time_limit=150, time_limit=170)
def poll_release(analysis_id: int, generation: int) -> str:
    return polls.poll_once(analysis_id, generation)


# acks_late is safe here too: an action is claimed by compare-and-set, and its handler checks
# the vendor's state (or refuses to resend) before acting again.
@shared_task(name="releases.run_action", acks_late=True, soft_time_limit=60, time_limit=90)
def run_action(action_id: int, then: list[int] | None = None) -> str:
    return outbox.run(action_id, then or ())


# acks_late: a batch redelivered after a worker died is claimed by generation, analysis by analysis.
@shared_task(name="releases.poll_batch", acks_late=True, soft_time_limit=150, time_limit=170)
def poll_batch(items: list[list[float]], scheduled_at: str | None = None) -> dict[int, str]:
    when = datetime.fromisoformat(scheduled_at) if scheduled_at else None
    batch: list[tuple[int, int] | tuple[int, int, float]] = [
        (int(item[0]), int(item[1]), float(item[2])) if len(item) > 2 else (int(item[0]), int(item[1]))
        for item in items
    ]
    return polls.poll_batch(batch, when)


# Acknowledged on receipt (no acks_late): beat sends another run every second, so one lost with
# a killed worker costs nothing, and redelivering an hour-old run (the visibility timeout) would
# only repeat work already done.
@shared_task(name="releases.dispatch_due", soft_time_limit=30, time_limit=60)
def dispatch_due() -> dict[str, int]:
    counts = dispatcher.dispatch_due()
    liveness.mark_dispatch()
    return counts


# Acknowledged on receipt, like dispatch_due: the next run comes within WATCHDOG_INTERVAL.
@shared_task(name="releases.watchdog", soft_time_limit=60, time_limit=90)
def watchdog_run() -> dict[str, int]:
    return watchdog.redrive()


# Sent by beat every SENTRY_RECONCILE_INTERVAL (and after the spool replayed an outage's
# deliveries); acknowledged on receipt, as a lost run is simply the next one.
@shared_task(name="releases.reconcile_alerts", soft_time_limit=120, time_limit=150)
def reconcile_alerts_run() -> dict[str, int]:
    return reconcile_alerts.reconcile()


# Sent by beat every SPOOL_REPLAY_INTERVAL; acknowledged on receipt, as a lost run is simply the
# next one. A hard limit only: a soft one would raise inside a record's handling, which would
# count as that record's failure; a run killed midway leaves its files to the next, and what it
# had handled is a duplicate then.
@shared_task(name="releases.replay_spool", time_limit=120)
def replay_spool() -> dict[str, int]:
    counts = replay.replay(budget=replay.RUN_BUDGET)
    # The database was down: alerts of that time may also have missed this web process (another
    # replica, a proxy in between), so ask Sentry now what is open rather than at the next pass.
    if any(counts.get(outcome) for outcome in replay.HANDLED):
        with contextlib.suppress(Exception):  # the broker is down: the periodic pass comes anyway
            reconcile_alerts_run.apply_async(retry=False)
    return counts


# The liveness probe's task (releases/scheduling/liveness.py): it only proves a message was consumed.
@shared_task(name="releases.ping", ignore_result=True)
def ping(token: str) -> None:
    liveness.answer(token)
