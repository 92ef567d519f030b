"""A stalled dispatcher pages and tells Slack once per stall, and says once that it resumed.

``check_dispatch`` is called as the workers' watch calls it, with the time passed in; PagerDuty and
Slack are the simulator, over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from notifications.operations import STALL_DEDUP_KEY
from releases.models import DispatchStall, Heartbeat, StallNotice
from releases.scheduling import liveness
from releases.scheduling.stall import CLAIM_TIMEOUT, check_dispatch, destinations
from tests.conftest import PD_KEY, PD_KEY_ENV, Simulator
from tests.factories import make_project

OTHER_KEY_ENV, OTHER_KEY = "STALL_TEST_OTHER_ROUTING_KEY", "other0routing0key000000000000xyz"
State = StallNotice.State


@pytest.fixture
def sim(module_simulator: Simulator, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    module_simulator.control("POST", "/reset")
    settings.PAGERDUTY_EVENTS_URL = f"{module_simulator.url}/pagerduty"
    settings.SLACK_API_URL = f"{module_simulator.url}/slack/api"
    settings.PROVIDER_TIMEOUT = 2.0
    settings.DISPATCH_STALL_SECONDS = 60.0
    settings.OPS_PAGERDUTY_ROUTING_KEY_ENV = ""
    settings.OPS_SLACK_CHANNEL = ""
    monkeypatch.setenv(PD_KEY_ENV, PD_KEY)
    monkeypatch.setenv(OTHER_KEY_ENV, OTHER_KEY)
    yield module_simulator
    module_simulator.control("DELETE", "/faults")


@pytest.fixture
def projects(sim: Simulator) -> None:
    """Three projects: two share a routing key and a channel, the third has its own channel only."""
    make_project(pagerduty_routing_key_env=PD_KEY_ENV, slack_channel="#releases")
    make_project(
        name="shop-api",
        vercel_project_id="prj_api",
        pagerduty_routing_key_env=PD_KEY_ENV,
        slack_channel="#releases",
    )
    make_project(name="blog", vercel_project_id="prj_blog", slack_channel="#blog")


def incidents(sim: Simulator) -> list[dict[str, Any]]:
    found = sim.control("GET", "/pagerduty/incidents")["incidents"]
    return [i for i in found if i["dedup_key"] == STALL_DEDUP_KEY]


def posts(sim: Simulator) -> list[tuple[str, str]]:
    return [(m["channel_name"], m["text"]) for m in sim.control("GET", "/slack/messages")["messages"]]


def fault(sim: Simulator, service: str, **extra: Any) -> None:
    sim.control("POST", "/faults", json={"service": service, **extra})


def ran(at: datetime) -> None:
    liveness.mark_dispatch(at)


def holders() -> list[str]:
    return [h for h in DispatchStall.objects.values_list("holder", flat=True) if h]


T0 = timezone.now()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.django_db
def test_a_stall_pages_each_routing_key_and_posts_to_each_channel_once(
    projects: None, sim: Simulator
) -> None:
    ran(at(0))
    assert check_dispatch(at(59)) == {"opened": 0, "resumed": 0, "sent": 0, "failed": 0}

    first = check_dispatch(at(75))
    again = [check_dispatch(at(75 + 10 * n)) for n in range(1, 4)]

    assert first == {"opened": 1, "resumed": 0, "sent": 3, "failed": 0}
    assert all(counts == {"opened": 0, "resumed": 0, "sent": 0, "failed": 0} for counts in again)
    [incident] = incidents(sim)
    assert incident["status"] == "triggered" and len(incident["events"]) == 1
    details = incident["events"][0]["payload"]["custom_details"]
    assert details["stalled_for_seconds"] == 75.0 and details["beat_lease_holder"] in (None, *holders())
    assert "has not run for 1m 15s" in incident["events"][0]["payload"]["summary"]
    channels = sorted(channel for channel, _ in posts(sim))
    assert channels == ["#blog", "#releases"]
    assert all("has not run for 1m 15s" in text for _, text in posts(sim))


@pytest.mark.django_db
def test_once_dispatch_resumes_the_page_is_resolved_and_slack_told_once(
    projects: None, sim: Simulator
) -> None:
    ran(at(0))
    check_dispatch(at(75))
    ran(at(90))

    resumed = check_dispatch(at(91))
    later = [check_dispatch(at(91 + 10 * n)) for n in range(1, 3)]

    assert resumed == {"opened": 0, "resumed": 1, "sent": 3, "failed": 0}
    assert all(counts["sent"] == 0 and counts["resumed"] == 0 for counts in later)
    [incident] = incidents(sim)
    assert incident["status"] == "resolved"
    assert [e["event_action"] for e in incident["events"]] == ["trigger", "resolve"]
    resumed_posts = sorted(channel for channel, text in posts(sim) if "running again" in text)
    assert resumed_posts == ["#blog", "#releases"]
    assert all("after 1m 30s stalled" in text for _, text in posts(sim) if "running again" in text)
    assert set(StallNotice.objects.values_list("state", flat=True)) == {State.RESOLVED}


@pytest.mark.django_db
def test_a_failed_page_is_sent_again_at_the_next_check_and_slack_is_not_doubled(
    projects: None, sim: Simulator
) -> None:
    fault(sim, "pagerduty", kind="5xx", count=1)
    ran(at(0))

    first = check_dispatch(at(75))
    page = StallNotice.objects.get(via="pagerduty")
    assert first["failed"] == 1 and page.state == State.PENDING and "503" in page.last_error
    second = check_dispatch(at(85))

    assert second == {"opened": 0, "resumed": 0, "sent": 1, "failed": 0}
    [incident] = incidents(sim)
    assert len(incident["events"]) == 1
    assert len(posts(sim)) == 2
    page.refresh_from_db()
    assert page.state == State.SENT and page.attempts == 2 and page.last_error == ""


@pytest.mark.django_db
def test_a_slack_post_whose_answer_was_lost_is_not_posted_again(projects: None, sim: Simulator) -> None:
    fault(sim, "slack", kind="reset", apply=True, count=1, path_contains="chat.postMessage")
    ran(at(0))

    check_dispatch(at(75))
    check_dispatch(at(85))

    assert len([text for _, text in posts(sim) if "has not run" in text]) == 2  # one per channel
    lost = StallNotice.objects.filter(via="slack", last_error__gt="").get()
    assert lost.state == State.SENT and lost.attempts == 1


@pytest.mark.django_db
def test_a_stall_that_ends_before_its_page_went_out_is_never_paged(projects: None, sim: Simulator) -> None:
    fault(sim, "pagerduty", kind="5xx")  # PagerDuty is down for the whole stall
    ran(at(0))
    check_dispatch(at(75))
    check_dispatch(at(85))
    ran(at(90))

    check_dispatch(at(91))
    sim.control("DELETE", "/faults")
    check_dispatch(at(101))

    assert incidents(sim) == []
    assert sim.control("GET", "/pagerduty/incidents")["dropped_events"] == []  # no resolve either
    page = StallNotice.objects.get(via="pagerduty")
    assert page.state == State.CANCELLED
    assert len([text for _, text in posts(sim) if "running again" in text]) == 2


@pytest.mark.django_db
def test_a_new_stall_after_recovery_is_a_new_episode_and_pages_again(projects: None, sim: Simulator) -> None:
    ran(at(0))
    check_dispatch(at(75))
    ran(at(90))
    check_dispatch(at(91))

    check_dispatch(at(200))

    assert DispatchStall.objects.count() == 2
    statuses = [i["status"] for i in incidents(sim)]
    assert statuses == ["resolved", "triggered"]
    assert len([text for _, text in posts(sim) if "has not run" in text]) == 4


@pytest.mark.django_db
def test_a_dispatcher_that_never_ran_is_a_stall_a_minute_after_the_first_check(
    projects: None, sim: Simulator
) -> None:
    Heartbeat.objects.filter(name=liveness.DISPATCH).delete()

    assert check_dispatch(at(0))["opened"] == 0
    assert check_dispatch(at(61))["opened"] == 1

    assert all("has never run" in text for _, text in posts(sim))
    [incident] = incidents(sim)
    assert "never ran" in incident["events"][0]["payload"]["summary"]


@pytest.mark.django_db
def test_a_send_abandoned_mid_way_is_paged_again_but_never_posted_again(
    projects: None, sim: Simulator
) -> None:
    ran(at(0))
    check_dispatch(at(75))
    # As if the checker that claimed them had died mid-send: claimed long ago, never finished.
    StallNotice.objects.update(state=State.SENDING, claimed_at=at(75))
    incidents_before, posts_before = len(incidents(sim)[0]["events"]), len(posts(sim))

    check_dispatch(at(80))
    assert len(incidents(sim)[0]["events"]) == incidents_before  # not yet: its sender may still answer
    check_dispatch(at(76 + CLAIM_TIMEOUT.total_seconds()))

    assert len(incidents(sim)[0]["events"]) == incidents_before + 1  # same dedup key: still one alert
    assert len(posts(sim)) == posts_before
    assert set(StallNotice.objects.values_list("state", flat=True)) == {State.SENT}


@pytest.mark.django_db
def test_the_operations_settings_replace_the_projects_destinations(
    projects: None, sim: Simulator, settings: Any
) -> None:
    settings.OPS_PAGERDUTY_ROUTING_KEY_ENV = OTHER_KEY_ENV
    assert destinations() == [("pagerduty", OTHER_KEY_ENV), ("slack", "#blog"), ("slack", "#releases")]
    settings.OPS_SLACK_CHANNEL = "#gatekeeper-ops"
    ran(at(0))

    check_dispatch(at(75))

    [incident] = incidents(sim)
    assert incident["routing_key_suffix"] == OTHER_KEY[-4:]
    assert [channel for channel, _ in posts(sim)] == ["#gatekeeper-ops"]


@pytest.mark.django_db
def test_a_missing_routing_key_fails_that_page_for_good_and_not_the_others(
    projects: None, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PD_KEY_ENV)
    ran(at(0))

    check_dispatch(at(75))
    check_dispatch(at(85))

    page = StallNotice.objects.get(via="pagerduty")
    assert page.state == State.FAILED and PD_KEY_ENV in page.last_error and page.attempts == 1
    assert len(posts(sim)) == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_checking_at_once_open_one_episode_and_page_once(projects: None, sim: Simulator) -> None:
    # A real beat elsewhere in the session may keep the heartbeat fresh: "now" is an hour on.
    now = timezone.now() + timedelta(hours=1)
    ran(now - timedelta(seconds=75))
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []

    def check() -> None:
        try:
            start.wait()
            results.append(check_dispatch(now))
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r["opened"] for r in results) == [0, 1]
    assert sum(r["sent"] for r in results) == 3
    assert DispatchStall.objects.count() == 1
    [incident] = incidents(sim)
    assert len(incident["events"]) == 1
    assert sorted(channel for channel, _ in posts(sim)) == ["#blog", "#releases"]
