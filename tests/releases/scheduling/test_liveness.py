"""The worker healthcheck: a real worker process, a real Redis, a real task round trip."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from releases.models import Heartbeat
from releases.scheduling import liveness
from tests.conftest import Worker, wait_for

NODE = f"liveness-{os.getpid()}@test"


@pytest.fixture
def worker(flush_broker: None) -> Iterator[Worker]:
    env = {**os.environ, "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL, "DEBUG": "1"}
    process = Worker(env, beat=False, args=("--hostname", NODE))
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        os.kill(process.process.pid, signal.SIGCONT)
    process.stop()


def alive(**options: Any) -> str:
    out = StringIO()
    call_command("worker_alive", hostname=NODE, stdout=out, **options)
    return out.getvalue()


def test_a_consuming_worker_passes(worker: Worker) -> None:
    # The first probe may wait for the worker to finish starting.
    assert "consumed a task" in wait_for(lambda: _try(timeout=5), timeout=60, what="a worker consuming")


def test_a_worker_alive_but_not_consuming_fails(worker: Worker) -> None:
    wait_for(lambda: _try(timeout=5), timeout=60, what="a worker consuming")
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGSTOP)  # the process exists; it fetches nothing
    started = time.monotonic()
    with pytest.raises(CommandError, match="no task consumed within 2 s"):
        alive(timeout=2)
    assert time.monotonic() - started < 5
    os.kill(worker.process.pid, signal.SIGCONT)
    assert "consumed a task" in wait_for(lambda: _try(timeout=5), timeout=30, what="the worker back")


def test_another_workers_name_gets_no_answer(worker: Worker) -> None:
    wait_for(lambda: _try(timeout=5), timeout=60, what="a worker consuming")
    with pytest.raises(CommandError, match="no task consumed"):
        call_command("worker_alive", hostname="nobody@nowhere", timeout=1, stdout=StringIO())


@pytest.mark.django_db
def test_a_stale_dispatcher_fails_the_dispatch_check(worker: Worker) -> None:
    wait_for(lambda: _try(timeout=5), timeout=60, what="a worker consuming")
    Heartbeat.objects.filter(name=liveness.DISPATCH).delete()  # a real beat may share the database
    with pytest.raises(CommandError, match="dispatcher last ran never"):
        alive(timeout=5, dispatch=30)
    liveness.mark_dispatch(timezone.now() - timedelta(seconds=45))
    with pytest.raises(CommandError, match="dispatcher last ran 45 s ago"):
        alive(timeout=5, dispatch=30)
    liveness.mark_dispatch()
    assert "poll dispatcher ran" in alive(timeout=5, dispatch=30)
    age = liveness.dispatch_age()
    assert age is not None and age < 30


def test_an_unreachable_broker_fails_without_naming_its_address(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://:hunter2-secret@127.0.0.1:1/0"
    with pytest.raises(CommandError) as caught:
        call_command("worker_alive", hostname=NODE, timeout=1, stdout=StringIO())
    assert "hunter2" not in str(caught.value)


def _try(**options: Any) -> str | None:
    try:
        return alive(**options)
    except CommandError:
        return None


@pytest.mark.django_db
def test_the_dispatch_only_check_needs_no_worker(flush_broker: None) -> None:
    Heartbeat.objects.filter(name=liveness.DISPATCH).delete()
    with pytest.raises(CommandError, match="last ran never"):
        call_command("worker_alive", dispatch_only=True, stdout=StringIO())
    liveness.mark_dispatch()
    out = StringIO()
    call_command("worker_alive", dispatch_only=True, dispatch=10, stdout=out)
    assert "poll dispatcher ran" in out.getvalue()


@pytest.mark.django_db
def test_the_dispatchers_heartbeat_survives_a_flushed_broker(flush_broker: None) -> None:
    liveness.mark_dispatch()
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()

    age = liveness.dispatch_age()

    assert age is not None and age < 10
    beat = Heartbeat.objects.get(name=liveness.DISPATCH)
    assert beat.runs >= 1
