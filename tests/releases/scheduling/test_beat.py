"""Two beats, one lease: only the holder sends, the other takes over when it lapses, and a beat
that loses its database stops sending. Beats in one process, against the test database in
autocommit, as a beat runs (each lease check begins as a request does, with close_old_connections,
which ends any transaction a test would wrap it in)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from celery.beat import ScheduleEntry
from django.core.management import CommandError, call_command
from django.db import OperationalError

from gatekeeper.celery import app
from releases.models import SchedulerLease
from releases.scheduling import lease, liveness
from releases.scheduling.beat import LeasedScheduler, status_path

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 2.0  # the shortest allowed: renewed every 0.5 s, asked for again every 0.4 s


class Recording(LeasedScheduler):
    """A beat that notes what it would send instead of publishing it."""

    producer = None  # no broker connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        self.sent.append(entry.name)


@pytest.fixture
def beats(settings: Any, tmp_path: Path) -> Iterator[Callable[[str], Recording]]:
    """Beats under a lease of this test's own (a real beat elsewhere may hold the default one)."""
    settings.BEAT_LEASE_NAME = f"test-{uuid.uuid4().hex[:8]}"
    settings.BEAT_LEASE_SECONDS = LEASE
    app.finalize()  # the periodic tasks (gatekeeper/celery.py) join app.conf.beat_schedule here
    made: list[Recording] = []

    def make(name: str) -> Recording:
        scheduler = Recording(app=app, schedule_filename=str(tmp_path / name))
        scheduler.holder = f"test:{name}"
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


def run(seconds: float, *schedulers: Recording) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for scheduler in schedulers:
            scheduler.tick()
        time.sleep(0.02)


def test_of_two_beats_only_the_one_holding_the_lease_sends(beats: Callable[[str], Recording]) -> None:
    first, second = beats("first"), beats("second")

    run(2.5, first, second)

    assert first.leading and not second.leading
    assert first.sent.count("dispatch") >= 2  # every second, from a second after it started
    assert second.sent == []
    assert SchedulerLease.objects.get(name=first.lease_name).holder == "test:first"


def test_the_standby_takes_over_once_the_leader_stops_renewing(
    beats: Callable[[str], Recording], caplog: pytest.LogCaptureFixture
) -> None:
    leader, standby = beats("leader"), beats("standby")
    run(0.5, leader, standby)
    assert leader.leading

    stopped = time.monotonic()
    run(LEASE - 0.5, standby)  # the leader is gone; its lease has not lapsed yet
    assert standby.sent == []
    deadline = stopped + LEASE * 2
    while not standby.sent and time.monotonic() < deadline:
        run(0.05, standby)
    took = time.monotonic() - stopped

    assert standby.leading and "dispatch" in standby.sent
    assert LEASE - 0.5 <= took <= LEASE + 1.0
    acquired = [r.__dict__ for r in caplog.records if r.msg == "beat.lease.acquired"]
    assert [(r["holder"], r["previous"]) for r in acquired][-1] == ("test:standby", "test:leader")


def test_a_leader_back_after_a_takeover_sends_nothing_and_says_it_lost_the_lease(
    beats: Callable[[str], Recording], caplog: pytest.LogCaptureFixture
) -> None:
    paused, other = beats("paused"), beats("other")
    run(0.3, paused, other)
    assert paused.leading
    run(LEASE + 0.6, other)  # the first stalls (a long GC pause, a frozen VM) for longer than its lease
    assert other.leading
    sent_before = len(paused.sent)

    run(1.0, paused, other)

    assert not paused.leading and len(paused.sent) == sent_before
    lost = [r.__dict__ for r in caplog.records if r.msg == "beat.lease.lost"]
    assert [(r["holder"], r["now_held_by"]) for r in lost] == [("test:paused", "test:other")]


def test_a_beat_that_loses_its_database_stops_sending_and_leads_again_once_it_is_back(
    beats: Callable[[str], Recording], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alone = beats("alone")
    run(0.3, alone)
    assert alone.leading

    def unreachable(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(lease, "hold", unreachable)
        patched.setattr(lease, "read", unreachable)
        run(0.6, alone)  # its next renewal (every 0.5 s) fails
        sent_during = len(alone.sent)
        run(1.5, alone)
        assert not alone.leading and len(alone.sent) == sent_during
    lost = [r.__dict__ for r in caplog.records if r.msg == "beat.lease.lost"]
    assert [r["reason"] for r in lost] == ["OperationalError"]

    run(1.0, alone)

    assert alone.leading and len(alone.sent) > sent_during


def test_two_beats_asking_for_a_lapsed_lease_at_once_get_it_once() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    assert lease.hold(name, "a", 5) is True
    assert lease.hold(name, "b", 5) is False  # held by a
    assert lease.hold(name, "a", 5) is True  # a renews
    assert lease.give_up(name, "b") is False
    assert lease.give_up(name, "a") is True
    assert lease.hold(name, "b", 5) is True  # lapsed: b takes it
    view = lease.read(name)
    assert view is not None and view.held_by() == "b" and not view.lapsed


def test_a_renewal_keeps_when_the_holder_first_took_the_lease() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    lease.hold(name, "a", 5)
    first = SchedulerLease.objects.get(name=name)
    lease.hold(name, "a", 5)
    renewed = SchedulerLease.objects.get(name=name)
    assert renewed.acquired_at == first.acquired_at and renewed.renewed_at >= first.renewed_at


def test_a_beat_stopped_on_purpose_lets_its_lease_lapse_at_once(beats: Callable[[str], Recording]) -> None:
    leaving, staying = beats("leaving"), beats("staying")
    run(0.3, leaving, staying)
    assert leaving.leading

    leaving.close()
    run(0.5, staying)  # a standby asks every 0.4 s

    assert staying.leading
    run(0.6, staying)  # its first dispatch is due a second after it started

    assert staying.leading and "dispatch" in staying.sent


# --- beat_alive: the beat container's healthcheck ---------------------------------------------


def alive(schedule: Path, **options: Any) -> str:
    out = StringIO()
    call_command("beat_alive", schedule=str(schedule), stdout=out, **options)
    return out.getvalue()


def test_the_standby_is_healthy_while_it_keeps_checking(
    beats: Callable[[str], Recording], tmp_path: Path
) -> None:
    leader, standby = beats("leader"), beats("standby")
    run(0.3, leader, standby)

    assert "standing by (test:leader leads)" in alive(tmp_path / "standby")


def test_the_leader_is_unhealthy_when_the_dispatcher_it_sends_does_not_run(
    beats: Callable[[str], Recording], tmp_path: Path
) -> None:
    leader = beats("leader")
    run(0.3, leader)
    liveness.mark_dispatch()
    assert "leading as test:leader" in alive(tmp_path / "leader")

    with pytest.raises(CommandError, match="poll dispatcher last ran"):
        alive(tmp_path / "leader", dispatch=0.001)


def test_a_beat_that_stopped_checking_is_unhealthy(tmp_path: Path) -> None:
    schedule = tmp_path / "stuck"
    with pytest.raises(CommandError, match="has not checked its lease yet"):
        alive(schedule)
    status = {"holder": "h", "leading": False, "leader": "x", "checked_at": time.time() - 45}
    Path(status_path(str(schedule))).write_text(json.dumps(status))

    with pytest.raises(CommandError, match="last checked its lease 45 s ago"):
        alive(schedule)
