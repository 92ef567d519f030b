"""The PagerDuty outbox handler: the key from the named variable, the rollback's status at send
time, and failures classed as the Events API answers them (docs/vendor-apis.md §4.1)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from notifications import intents
from releases.core import outbox
from releases.core.outbox import write_actions
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Project, Release
from releases.workflows import rollback
from tests.factories import make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState
PD_KEY = "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73"
ANY_KEY = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return install(monkeypatch)


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("PD_KEY", PD_KEY)
    return make_project(pagerduty_routing_key_env="PD_KEY")


@pytest.fixture
def live(project: Project) -> Release:
    make_release(
        project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=timezone.now() - timedelta(days=1)
    )
    release = make_release(
        project,
        version="web@1.4.2",
        state=S.PROMOTED,
        promoted_at=timezone.now() - timedelta(minutes=20),
        sessions=4000,
        crashed=40,
        crash_free_rate=0.99,
    )
    Project.objects.filter(pk=project.pk).update(live_deployment_id=release.deployment_id)
    return release


def rolled_back(live: Release) -> tuple[Action, Action]:
    """The rollback and the page a crashing live release gets, as the alert path writes them."""
    assert rollback.rollback_live(live, cause="Sentry critical alert: 1% crashed") == "rolling-back"
    return Action.objects.get(kind="rollback"), Action.objects.get(kind="pagerduty")


def resolve_action(live: Release) -> Action:
    (action,) = write_actions(live, intents.resolve_spec(live, "resolve:incident-1"))
    return action


def answer(code: int, **body: Any) -> httpx.Response:
    return httpx.Response(code, json=body) if body else httpx.Response(code)


# --- trigger and resolve ----------------------------------------------------------------------


@pytest.mark.parametrize("rollback_status", ["pending", "succeeded", "failed"])
def test_a_trigger_sends_the_key_from_the_named_variable_and_the_rollback_status_at_send_time(
    fakes: Fakes, live: Release, no_broker: list[Any], rollback_status: str
) -> None:
    rollback, page = rolled_back(live)
    Action.objects.filter(pk=rollback.pk).update(status=rollback_status)
    assert outbox.run(page.pk) == "succeeded"
    (event,) = fakes.pagerduty.events
    assert event["routing_key"] == PD_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == f"gatekeeper/shop-web/{live.deployment_id}"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["component"] == "shop-web"
    details = event["payload"]["custom_details"]
    assert details["rollback_status"] == rollback_status
    assert details["rollback_target"] == "dpl_good"
    assert details["release"] == "web@1.4.2"
    assert "routing_key_env" not in event and "rollback_action_key" not in event
    page.refresh_from_db()
    assert page.status == "succeeded" and page.attempts == 1
    assert page.result == {
        "dedup_key": event["dedup_key"],
        "event_action": "trigger",
        "rollback_status": rollback_status,
    }
    assert PD_KEY not in json.dumps(page.result) + json.dumps(page.payload)


def test_a_page_with_nothing_rolled_back_says_so_in_its_details(
    fakes: Fakes, live: Release, no_broker: list[Any]
) -> None:
    Release.objects.filter(deployment_id="dpl_good").update(rolled_back_at=timezone.now())
    assert rollback.rollback_live(live, cause="Sentry critical alert") == "no-target"
    page = Action.objects.get(kind="pagerduty")
    assert outbox.run(page.pk) == "succeeded"
    (event,) = fakes.pagerduty.events
    assert event["payload"]["custom_details"]["rollback_status"] == (
        "not rolled back: no known-good deployment"
    )


def test_a_resolve_sends_only_the_key_the_action_and_the_dedup_key(
    fakes: Fakes, live: Release, no_broker: list[Any]
) -> None:
    action = resolve_action(live)
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.pagerduty.events == [
        {
            "routing_key": PD_KEY,
            "event_action": "resolve",
            "dedup_key": f"gatekeeper/shop-web/{live.deployment_id}",
        }
    ]
    action.refresh_from_db()
    assert action.status == "succeeded"
    assert action.result == {
        "dedup_key": f"gatekeeper/shop-web/{live.deployment_id}",
        "event_action": "resolve",
    }


# --- failures ---------------------------------------------------------------------------------


def test_a_missing_routing_key_variable_fails_for_good_naming_the_variable(
    fakes: Fakes, live: Release, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, page = rolled_back(live)
    monkeypatch.delenv("PD_KEY")
    assert outbox.run(page.pk) == "failed"
    page.refresh_from_db()
    assert page.status == "failed" and page.attempts == 1
    assert "PD_KEY" in page.last_error and "not set" in page.last_error
    assert not ANY_KEY.search(page.last_error)
    assert fakes.pagerduty.events == []
    assert [args for name, args, _ in no_broker if args == (page.pk,)] == []  # not retried


def test_a_blank_routing_key_variable_is_treated_as_missing(
    fakes: Fakes, live: Release, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    action = resolve_action(live)
    monkeypatch.setenv("PD_KEY", "   ")
    assert outbox.run(action.pk) == "failed"
    action.refresh_from_db()
    assert "PD_KEY" in action.last_error
    assert fakes.pagerduty.events == []


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(answer(429), id="429-empty"),
        pytest.param(answer(429, status="throttle event", message="Requests are being throttled"), id="429"),
        pytest.param(answer(503, status="unavailable", message="try later", errors=[]), id="503"),
    ],
)
def test_throttling_and_server_errors_are_retried_later(
    fakes: Fakes, live: Release, no_broker: list[Any], response: httpx.Response
) -> None:
    _, page = rolled_back(live)
    fakes.pagerduty.answers = [response]
    before = timezone.now()
    assert outbox.run(page.pk) == "retrying"
    page.refresh_from_db()
    assert page.status == "pending" and page.attempts == 1
    assert page.next_attempt_at > before
    assert page.last_error and PD_KEY not in page.last_error
    ((_, _, kwargs),) = [sent for sent in no_broker if sent[1] == (page.pk,)]
    assert kwargs["countdown"] > 0
    # The retry goes out with the same dedup_key, so PagerDuty updates one alert, never two.
    Action.objects.filter(pk=page.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(page.pk) == "succeeded"
    first, second = fakes.pagerduty.events
    assert first["dedup_key"] == second["dedup_key"]


def test_a_retry_after_on_429_is_honoured(fakes: Fakes, live: Release, no_broker: list[Any]) -> None:
    action = resolve_action(live)
    fakes.pagerduty.answers = [httpx.Response(429, headers={"Retry-After": "120"})]
    assert outbox.run(action.pk) == "retrying"
    action.refresh_from_db()
    assert action.next_attempt_at >= timezone.now() + timedelta(seconds=115)
    assert "rate limited" in action.last_error


def test_an_invalid_event_fails_for_good_and_records_why_without_the_key(
    fakes: Fakes, live: Release, no_broker: list[Any]
) -> None:
    _, page = rolled_back(live)
    fakes.pagerduty.answers = [
        answer(
            400,
            status="invalid event",
            message="Event object is invalid",
            errors=[f"routing_key {PD_KEY} does not match an integration"],
        )
    ]
    assert outbox.run(page.pk) == "failed"
    page.refresh_from_db()
    assert page.status == "failed" and page.attempts == 1
    assert "Event object is invalid" in page.last_error
    assert "does not match an integration" in page.last_error
    assert PD_KEY not in page.last_error and "[redacted]" in page.last_error
    assert len(fakes.pagerduty.events) == 1
    assert [args for name, args, _ in no_broker if args == (page.pk,)] == []


def test_a_failed_page_leaves_the_rollback_alone(fakes: Fakes, live: Release, no_broker: list[Any]) -> None:
    rollback, page = rolled_back(live)
    fakes.pagerduty.answers = [answer(400, status="invalid event", message="Event object is invalid")]
    assert outbox.run(page.pk) == "failed"
    rollback.refresh_from_db()
    live.refresh_from_db()
    assert rollback.status == "pending"
    assert live.state == S.ROLLING_BACK
