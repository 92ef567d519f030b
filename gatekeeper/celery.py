"""The Celery app: worker runs polls and actions, beat runs the watchdog."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatekeeper.settings")

app = Celery("gatekeeper")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_watchdog(sender: Celery, **_: object) -> None:
    from django.conf import settings

    # The watchdog is what makes Redis disposable: it re-drives from PostgreSQL whatever
    # the broker lost. Expiring its own messages keeps a stalled beat from piling them up.
    interval = float(settings.WATCHDOG_INTERVAL)
    sender.add_periodic_task(
        interval, sender.signature("releases.watchdog"), name="watchdog", expires=interval
    )
    # The poll scheduler (releases.polling.dispatch_due). A run that waited longer than the
    # interval in the queue is dropped: the next one sends the same due polls.
    dispatch = float(settings.DISPATCH_INTERVAL)
    sender.add_periodic_task(
        dispatch, sender.signature("releases.dispatch_due"), name="dispatch", expires=dispatch
    )


@task_prerun.connect
@task_postrun.connect
def _database_hygiene(**_: Any) -> None:
    # What Django does around every request: drop connections that are too old or broken, keep
    # healthy ones (see CELERY_DB_REUSE_MAX in settings).
    from django.db import close_old_connections

    close_old_connections()
