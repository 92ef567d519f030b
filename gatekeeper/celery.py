"""The Celery app: worker runs polls and actions, beat runs the watchdog."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatekeeper.settings")

app = Celery("gatekeeper")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every worker watches that the dispatcher runs, and pages once when it stops: beat's own tasks
# cannot tell that beat is gone (releases/scheduling/stall.py). Named, not imported: the models it
# needs load only once Django is set up, which the worker does before it builds its steps.
app.steps["worker"].add("releases.scheduling.stall:StallWatch")


@app.on_after_finalize.connect
def _schedule_watchdog(sender: Celery, **_: object) -> None:
    from django.conf import settings

    # The watchdog is what makes Redis disposable: it re-drives from PostgreSQL whatever
    # the broker lost. Expiring its own messages keeps a stalled beat from piling them up.
    interval = float(settings.WATCHDOG_INTERVAL)
    sender.add_periodic_task(
        interval, sender.signature("releases.watchdog"), name="watchdog", expires=interval
    )
    # The poll scheduler (releases/scheduling/dispatcher.py). A run that waited longer than the
    # interval in the queue is dropped: the next one sends the same due polls.
    dispatch = float(settings.DISPATCH_INTERVAL)
    sender.add_periodic_task(
        dispatch, sender.signature("releases.dispatch_due"), name="dispatch", expires=dispatch
    )
    # Webhooks web kept while PostgreSQL was unreachable (releases/inbound/spool.py): an empty
    # spool costs one listdir, so it can run often; a run left waiting past the next is dropped.
    spool = float(settings.SPOOL_REPLAY_INTERVAL)
    sender.add_periodic_task(
        spool, sender.signature("releases.replay_spool"), name="replay_spool", expires=spool
    )
    # Metric alerts whose webhook never arrived (releases/workflows/reconcile_alerts.py).
    reconcile = float(settings.SENTRY_RECONCILE_INTERVAL)
    if reconcile > 0:
        sender.add_periodic_task(
            reconcile, sender.signature("releases.reconcile_alerts"), name="reconcile", expires=reconcile
        )


# Beat's own schedule, the dispatcher every second and the watchdog every 15 s: their sends,
# receipts and successes are routine, not news. What they do that matters is logged by them.
ROUTINE_TASKS = frozenset({"releases.dispatch_due", "releases.watchdog", "releases.replay_spool"})


class RoutineAtDebug(logging.Filter):
    """Logs the schedule's routine lines at DEBUG instead of INFO (settings.LOGGING).

    Beat logs each send ("Scheduler: Sending due task ...") and the worker each receipt and
    success at INFO; once a second, they bury everything else in the logs. Such a record is
    turned into a DEBUG one and kept only when DEBUG is on (``--loglevel DEBUG``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and self._routine(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True

    @staticmethod
    def _routine(record: logging.LogRecord) -> bool:
        args = record.args
        if str(record.msg).startswith("Scheduler: Sending due task"):  # args: entry name, task name
            return isinstance(args, tuple) and len(args) > 1 and args[1] in ROUTINE_TASKS
        return isinstance(args, dict) and args.get("name") in ROUTINE_TASKS


@task_prerun.connect
@task_postrun.connect
def _database_hygiene(**_: Any) -> None:
    # What Django does around every request: drop connections that are too old or broken, keep
    # healthy ones (see CELERY_DB_REUSE_MAX in settings).
    from django.db import close_old_connections

    close_old_connections()
