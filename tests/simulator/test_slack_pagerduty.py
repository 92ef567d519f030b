"""The simulated Slack (docs/vendor-apis.md §5.1) and PagerDuty Events v2 (§4) endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

POST_MESSAGE = "/slack/api/chat.postMessage"
ENQUEUE = "/pagerduty/v2/enqueue"
ROUTING_KEY = "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73"


JSON_UTF8 = "application/json; charset=utf-8"


@pytest.fixture
def slack(simulator_process) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer xoxb-test-token", "Content-Type": JSON_UTF8}
    with simulator_process.client(headers=headers) as client:
        yield client


def test_post_message_succeeds_with_unique_increasing_ts(control: httpx.Client, slack: httpx.Client) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*web@1.4.2* promoted"}}]
    first = slack.post(POST_MESSAGE, json={"channel": "#releases", "text": "promoted", "blocks": blocks})
    second = slack.post(POST_MESSAGE, json={"channel": "releases", "text": "again"})

    assert first.status_code == 200
    body = first.json()
    assert body["ok"] is True
    assert body["channel"].startswith("C0")
    assert body["channel"] == second.json()["channel"]  # a name maps to one stable id
    assert body["message"]["text"] == "promoted"
    assert body["message"]["blocks"] == blocks
    assert body["message"]["ts"] == body["ts"]
    assert float(second.json()["ts"]) > float(body["ts"])
    assert "warning" not in body

    stored = control.get("/_sim/slack/messages", params={"channel": "#releases"}).json()["messages"]
    assert [m["text"] for m in stored] == ["promoted", "again"]
    assert stored[0]["channel_name"] == "#releases"
    assert stored[0]["blocks"] == blocks


def test_missing_charset_still_works_with_a_warning(control: httpx.Client, slack: httpx.Client) -> None:
    response = slack.post(
        POST_MESSAGE,
        content=b'{"channel":"#releases","text":"hi"}',
        headers={"Content-Type": "application/json"},
    )
    body = response.json()
    assert body["ok"] is True
    assert body["warning"] == "missing_charset"
    assert body["response_metadata"] == {"warnings": ["missing_charset"]}


@pytest.mark.parametrize(
    ("headers", "payload", "error"),
    [
        ({}, {"channel": "#releases", "text": "x"}, "not_authed"),
        (
            {"Authorization": "Bearer not-a-slack-token"},
            {"channel": "#releases", "text": "x"},
            "invalid_auth",
        ),
        (
            {"Authorization": "Bearer xoxb-1"},
            {"channel": "#does-not-exist", "text": "x"},
            "channel_not_found",
        ),
        ({"Authorization": "Bearer xoxb-1"}, {"text": "x"}, "channel_not_found"),
        ({"Authorization": "Bearer xoxb-1"}, {"channel": "#releases"}, "no_text"),
        (
            {"Authorization": "Bearer xoxb-1"},
            {"channel": "#releases", "blocks": [{"text": "x"}]},
            "invalid_blocks",
        ),
    ],
)
def test_errors_are_http_200_with_ok_false(
    control: httpx.Client, simulator_process, headers: dict[str, str], payload: dict, error: str
) -> None:
    with simulator_process.client(headers={**headers, "Content-Type": JSON_UTF8}) as client:
        response = client.post(POST_MESSAGE, json=payload)
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": error}
    assert control.get("/_sim/slack/messages").json()["messages"] == []


def test_channel_registered_as_missing_is_not_found(control: httpx.Client, slack: httpx.Client) -> None:
    control.post("/_sim/slack/channels", json={"name": "#gone", "missing": True})
    assert (
        slack.post(POST_MESSAGE, json={"channel": "#gone", "text": "x"}).json()["error"]
        == "channel_not_found"
    )


def test_rate_limit_fault_is_429_with_retry_after(control: httpx.Client, slack: httpx.Client) -> None:
    control.post("/_sim/faults", json={"service": "slack", "kind": "429", "count": 1, "retry_after": 7})
    limited = slack.post(POST_MESSAGE, json={"channel": "#releases", "text": "x"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert control.get("/_sim/slack/messages").json()["messages"] == []  # faulted: not processed


def _trigger(**overrides: object) -> dict:
    event = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "release-gate/shop-web/dpl_1",
        "payload": {"summary": "rolled back", "source": "gatekeeper", "severity": "critical"},
    }
    event.update(overrides)
    return event


def test_trigger_is_accepted_with_202_and_dedup_key(control: httpx.Client) -> None:
    response = control.post(ENQUEUE, json=_trigger())
    generated = control.post(ENQUEUE, json=_trigger(dedup_key=None))

    assert response.status_code == 202
    assert response.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "release-gate/shop-web/dpl_1",
    }
    assert len(generated.json()["dedup_key"]) == 32


def test_dedup_ack_resolve_and_retrigger(control: httpx.Client) -> None:
    control.post(ENQUEUE, json=_trigger())
    control.post(ENQUEUE, json=_trigger())  # same key: same incident
    ack = {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": "release-gate/shop-web/dpl_1",
    }
    assert control.post(ENQUEUE, json=ack).status_code == 202
    resolve = {**ack, "event_action": "resolve"}
    assert control.post(ENQUEUE, json=resolve).status_code == 202
    assert control.post(ENQUEUE, json=resolve).status_code == 202  # nothing open: dropped, still 202
    control.post(ENQUEUE, json=_trigger())  # after a resolve: a new incident

    incidents = control.get("/_sim/pagerduty/incidents").json()["incidents"]
    assert [i["status"] for i in incidents] == ["resolved", "triggered"]
    assert [len(i["events"]) for i in incidents] == [4, 1]
    assert incidents[0]["routing_key_suffix"] == ROUTING_KEY[-4:]
    assert all(ROUTING_KEY not in str(i) for i in incidents)


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (_trigger(routing_key="short"), "Length of 'routing_key' is incorrect (should be 32 characters)"),
        (
            _trigger(payload={"summary": "s", "source": "g", "severity": "fatal"}),
            "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
        ),
        (_trigger(payload={"source": "g", "severity": "info"}), "'payload.summary' is missing or blank"),
        (
            _trigger(event_action="explode"),
            "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)",
        ),
        ({"routing_key": ROUTING_KEY, "event_action": "resolve"}, "'dedup_key' is missing or blank"),
    ],
)
def test_invalid_events_are_400(control: httpx.Client, event: dict, error: str) -> None:
    response = control.post(ENQUEUE, json=event)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert error in body["errors"]
    assert control.get("/_sim/pagerduty/incidents").json()["incidents"] == []


def test_throttle_fault(control: httpx.Client) -> None:
    control.post("/_sim/faults", json={"service": "pagerduty", "kind": "429", "count": 1})
    control.post("/_sim/faults", json={"service": "pagerduty", "kind": "429", "count": 1, "empty_body": True})
    throttled = control.post(ENQUEUE, json=_trigger())
    empty = control.post(ENQUEUE, json=_trigger())
    assert throttled.status_code == 429
    assert throttled.json()["status"] == "throttle event"
    assert empty.status_code == 429
    assert empty.content == b""
    assert control.get("/_sim/pagerduty/incidents").json()["incidents"] == []


def test_change_events(control: httpx.Client) -> None:
    response = control.post(
        "/pagerduty/v2/change/enqueue", json={"routing_key": ROUTING_KEY, "payload": {"summary": "deployed"}}
    )
    assert response.status_code == 202
    assert response.json()["status"] == "success"
    changes = control.get("/_sim/pagerduty/incidents").json()["change_events"]
    assert changes[0]["payload"]["summary"] == "deployed"


def test_the_lookups_doctor_asks_answer_like_slack(control: httpx.Client, slack: httpx.Client) -> None:
    control.post("/_sim/slack/channels", json={"name": "releases", "id": "C0RELEASES1"})
    control.post("/_sim/slack/channels", json={"name": "ops", "id": "C0OPSCHAN01", "not_in_channel": True})

    who = slack.post("/slack/api/auth.test", json={}).json()
    info = slack.post("/slack/api/conversations.info", json={"channel": "C0RELEASES1"}).json()
    unknown = slack.post("/slack/api/conversations.info", json={"channel": "C0NOSUCH001"}).json()
    listed = slack.post("/slack/api/conversations.list", json={}).json()

    assert who["ok"] and who["bot_id"] and who["team_id"]
    assert (info["channel"]["name"], info["channel"]["is_member"]) == ("releases", True)
    assert unknown == {"ok": False, "error": "channel_not_found"}
    assert {c["name"]: c["is_member"] for c in listed["channels"]} == {"releases": True, "ops": False}
    assert listed["response_metadata"]["next_cursor"] == ""
