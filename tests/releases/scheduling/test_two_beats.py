"""Two real `celery beat` processes and a worker: one beat sends, polls are not doubled, and when the
leading beat is killed the other takes over and the polls go on.

The beats share a lease of this test's own, so a worker with an embedded beat that another test
left running (the e2e suite's) cannot lead them; its dispatches would only add to the polls'
second line of defence, the dispatcher's row leases, which this test does not count on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count

from releases.models import Analysis, GateCheck, SchedulerLease
from tests.conftest import ROOT, Simulator, Worker, wait_for, worker_env
from tests.factories import gating_release, make_project

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
POLL_INTERVAL = 2.0  # seconds between a gate's polls
DISPATCH_INTERVAL = 0.5  # how often the leading beat sends the dispatcher (worker_env's)
RELEASES = 3


class Beat:
    def __init__(self, env: dict[str, str], directory: Path, name: str) -> None:
        self.log = directory / f"{name}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "gatekeeper", "beat", "--loglevel", "DEBUG",
                 "--schedule", str(directory / f"{name}-schedule")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def dispatches_sent(self) -> int:
        return self.log.read_text(errors="replace").count("Sending due task dispatch ")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def stack(
    module_simulator: Simulator, transactional_db: Any, flush_broker: None, tmp_path: Path
) -> Iterator[tuple[str, list[Beat]]]:
    sim = module_simulator
    sim.control("POST", "/reset")
    sim.control(
        "POST",
        "/sentry/projects",
        json={"org": "acme", "slug": "shop-web", "id": 4507, "environments": ["production"]},
    )
    project = make_project(
        poll_interval=timedelta(seconds=POLL_INTERVAL),
        min_sessions=10**9,  # never enough: the gates keep polling for the whole test
        max_wait=timedelta(hours=1),
        max_consecutive_errors=1000,
    )
    for n in range(RELEASES):
        version = f"beat-test-{n}"
        gating_release(project, version=version)
        sim.control(
            "POST",
            "/sentry/traffic",
            json={
                "org": "acme",
                "project": "shop-web",
                "project_id": 4507,
                "environment": "production",
                "release": version,
                "sessions_per_minute": 600,
                "crash_rate": 0.0,
                "start": time.time() - 600,
            },
        )
    lease_name = f"two-beats-{uuid.uuid4().hex[:8]}"
    env = worker_env(sim, connection.settings_dict["NAME"], GATEKEEPER_BEAT_LEASE_NAME=lease_name)
    worker = Worker(env, beat=False)
    worker.start()
    # At DEBUG, beat logs every send (gatekeeper/celery.py, RoutineAtDebug): what is counted here.
    beat_env = {**env, "LOG_LEVEL": "DEBUG"}
    beats = [Beat(beat_env, tmp_path, "beat-a"), Beat(beat_env, tmp_path, "beat-b")]
    try:
        yield lease_name, beats
    finally:
        for beat in beats:
            beat.stop()
        worker.stop()


def leader(lease_name: str, beats: list[Beat]) -> Beat | None:
    held = SchedulerLease.objects.filter(name=lease_name).values_list("holder", flat=True).first()
    pid = int(held.split(":")[1]) if held else None
    return next((beat for beat in beats if beat.process.pid == pid), None)


def checks() -> dict[int, int]:
    counted = GateCheck.objects.values("analysis").annotate(n=Count("pk")).values_list("analysis", "n")
    return {analysis: n for analysis, n in counted}


def test_two_beats_poll_once_per_due_time_and_the_standby_takes_over_a_killed_leader(
    stack: tuple[str, list[Beat]],
) -> None:
    lease_name, beats = stack
    first = wait_for(lambda: leader(lease_name, beats), timeout=30, what="a beat to take the lease")
    standby = next(beat for beat in beats if beat is not first)
    wait_for(lambda: len(checks()) == RELEASES, timeout=30, what="every gate's first poll")

    window = 10.0
    before, sent_before = checks(), [beat.dispatches_sent() for beat in (first, standby)]
    time.sleep(window)
    after, sent_after = checks(), [beat.dispatches_sent() for beat in (first, standby)]

    polls = sorted(after[a] - before.get(a, 0) for a in after)
    # One beat's worth: a poll every POLL_INTERVAL plus up to one dispatch interval of lag, never double.
    assert all(
        window / (POLL_INTERVAL + DISPATCH_INTERVAL) - 1 <= n <= window / POLL_INTERVAL + 1 for n in polls
    ), polls
    led, stood_by = (a - b for a, b in zip(sent_after, sent_before, strict=True))
    assert stood_by == 0
    assert window / DISPATCH_INTERVAL * 0.7 <= led <= window / DISPATCH_INTERVAL + 1, led

    first.kill()
    killed = time.monotonic()
    wait_for(
        lambda: leader(lease_name, beats) is standby, timeout=20, interval=0.05, what="the standby to lead"
    )
    took_over = time.monotonic() - killed
    taken = checks()
    polled_again = wait_for(
        lambda: all(n >= taken[a] + 2 for a, n in checks().items()) and time.monotonic(),
        timeout=15,
        interval=0.05,
        what="every gate polled twice more after the takeover",
    )

    print(f"\ntwo beats: {polls} polls per gate in {window:g} s, dispatches sent {led} and {stood_by};")
    print(
        f"SIGKILL to takeover {took_over:.1f} s, to each gate's 2nd poll after {polled_again - killed:.1f} s"
    )
    assert took_over <= 10.0 + 2.5  # a lease, plus the standby's next look
    assert standby.dispatches_sent() > 0 and first.process.poll() is not None
    assert Analysis.objects.filter(phase=Analysis.Phase.RUNNING).count() == RELEASES
