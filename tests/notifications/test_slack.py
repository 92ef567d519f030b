from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from notifications.messages import evidence
from notifications.slack import PostedMessage, SlackClient
from releases.core.errors import ProviderError, ProviderTimeout
from releases.domain.evidence import Evidence
from releases.domain.gate_policy import Method, Policy
from releases.domain.verdict import evaluate
from tests.http import Vendor

TOKEN = "xoxb-1234-5678-SeCrEtToKeN"
OK = {"ok": True, "channel": "C0ABCDEF123", "ts": "1767258971.004200", "message": {"type": "message"}}


def slack(vendor: Vendor, base_url: str = "https://slack.test/api") -> SlackClient:
    return SlackClient(base_url, TOKEN, transport=httpx.MockTransport(vendor), clock=lambda: 0.0)


def refused(
    code: str, status: int = 200, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    return httpx.Response(status, json={"ok": False, "error": code, **extra}, headers=headers)


def post(vendor: Vendor) -> PostedMessage:
    return slack(vendor).post_message("#releases", "web@1.4.2 promoted")


def failure(vendor: Vendor) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        post(vendor)
    return caught.value


def test_post_message_returns_the_channel_id_and_ts() -> None:
    vendor = Vendor(httpx.Response(200, json=OK))
    assert post(vendor) == PostedMessage(channel="C0ABCDEF123", ts="1767258971.004200")
    request = vendor.last
    assert request.method == "POST"
    assert str(request.url) == "https://slack.test/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(request.content) == {"channel": "#releases", "text": "web@1.4.2 promoted"}


@pytest.mark.parametrize("base_url", ["https://slack.test", "https://slack.test/", "https://slack.test/api/"])
def test_the_api_root_is_appended_once(base_url: str) -> None:
    vendor = Vendor(httpx.Response(200, json=OK))
    slack(vendor, base_url).post_message("C1", "hi")
    assert vendor.last.url.path == "/api/chat.postMessage"


def test_blocks_are_sent_as_a_json_array_with_the_fallback_text() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*web@1.4.2* — 25 % ✅"}}]
    vendor = Vendor(httpx.Response(200, json=OK))
    slack(vendor).post_message("C1", "web@1.4.2 at 25 %", blocks)
    body = json.loads(vendor.last.content.decode("utf-8"))
    assert body == {"channel": "C1", "text": "web@1.4.2 at 25 %", "blocks": blocks}


@pytest.mark.parametrize(
    "code",
    [
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "missing_scope",
        "some_code_slack_adds_next_year",
    ],
)
def test_a_refusal_that_needs_a_person_is_permanent(code: str) -> None:
    error = failure(Vendor(refused(code)))
    assert error.permanent
    assert error.code == code
    assert error.status == 200
    assert not error.maybe_delivered
    assert error.provider == "slack"
    assert code in error.message


@pytest.mark.parametrize(
    "code",
    [
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    ],
)
def test_a_refusal_a_later_attempt_can_get_past_is_transient(code: str) -> None:
    error = failure(Vendor(refused(code)))
    assert not error.permanent
    assert error.code == code
    assert not error.maybe_delivered  # Slack said no: a resend cannot double-post


def test_ratelimited_at_http_200_waits_a_second_by_default() -> None:
    assert failure(Vendor(refused("ratelimited"))).retry_after == 1.0


def test_ratelimited_at_http_200_honours_retry_after() -> None:
    assert failure(Vendor(refused("ratelimited", headers={"Retry-After": "4"}))).retry_after == 4.0


def test_missing_scope_names_the_scope_to_grant() -> None:
    error = failure(Vendor(refused("missing_scope", needed="chat:write", provided="channels:read")))
    assert "needed 'chat:write'" in error.message


def test_a_refusal_without_a_code_is_transient_and_not_delivered() -> None:
    error = failure(Vendor(httpx.Response(200, json={"ok": False})))
    assert not error.permanent
    assert error.code is None
    assert not error.maybe_delivered


def test_http_429_waits_as_long_as_retry_after_says() -> None:
    error = failure(Vendor(refused("ratelimited", status=429, headers={"Retry-After": "30"})))
    assert error.retry_after == 30.0
    assert error.status == 429
    assert error.code == "ratelimited"
    assert not error.permanent
    assert not error.maybe_delivered


def test_http_429_without_retry_after_waits_one_second_like_the_sdk() -> None:
    error = failure(Vendor(httpx.Response(429)))
    assert error.retry_after == 1.0
    assert not error.permanent


def test_a_5xx_is_transient_and_may_have_posted() -> None:
    error = failure(Vendor(httpx.Response(503, text="<html>upstream</html>")))
    assert not error.permanent
    assert error.maybe_delivered


def test_an_http_4xx_is_permanent() -> None:
    error = failure(Vendor(httpx.Response(404, text="not found")))
    assert error.permanent
    assert not error.maybe_delivered


@pytest.mark.parametrize(("exc_type", "maybe"), [(httpx.ReadTimeout, True), (httpx.ConnectTimeout, False)])
def test_a_timeout_says_whether_the_message_may_have_posted(
    exc_type: type[httpx.TransportError], maybe: bool
) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise exc_type("slow", request=request)

    with pytest.raises(ProviderTimeout) as caught:
        post(Vendor(hang))
    assert caught.value.maybe_delivered is maybe
    assert not caught.value.permanent


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy</html>"),
        httpx.Response(200, json={"ok": True, "channel": "C1"}),
        httpx.Response(200, json={"ok": True, "channel": "C1", "ts": 1767258971.0042}),
        httpx.Response(200, json={"ok": "yes"}),
        httpx.Response(200, json=["ok"]),
    ],
)
def test_an_unreadable_200_is_transient_but_may_have_posted(response: httpx.Response) -> None:
    error = failure(Vendor(response))
    assert not error.permanent
    assert error.maybe_delivered  # HTTP 200: Slack probably posted it; do not resend blindly
    assert "malformed answer" in error.message


def test_the_token_never_appears_in_an_error() -> None:
    answers: list[httpx.Response | Callable[[httpx.Request], httpx.Response]] = [
        httpx.Response(400, text=f"bad token {TOKEN}"),
        httpx.Response(500, text=f"echo Authorization: Bearer {TOKEN}"),
        refused("invalid_auth"),
        httpx.Response(200, text=f"<html>{TOKEN}</html>"),
    ]
    for answer in answers:
        error = failure(Vendor(answer))
        for text in (str(error), repr(error), error.message, *map(str, error.args)):
            assert TOKEN not in text
    assert "[redacted]" in failure(Vendor(httpx.Response(400, text=f"bad token {TOKEN}"))).message


def test_the_token_is_not_in_a_connection_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    error = failure(Vendor(refuse))
    assert TOKEN not in str(error)
    assert not error.maybe_delivered


def test_a_sequential_verdict_says_its_evidence_in_words_and_the_fixed_rule_says_nothing_more() -> None:
    sequential = evaluate(Policy(crash_free_threshold=0.995, max_wait=7200), Evidence(1240, 1, 60.0))
    assert evidence(sequential.figures.as_dict(), "pass") == (
        "evidence 779:1 that the crash-free rate is 99.80% or better rather than 99.20% (promotes at 32:1)"
    )
    waiting = evaluate(Policy(crash_free_threshold=0.995, max_wait=7200), Evidence(400, 1, 60.0))
    assert evidence(waiting.figures.as_dict(), "inconclusive") == (
        "no verdict yet: 387 more crash-free sessions would promote, 3 more crashed would roll back"
    )
    fixed = evaluate(
        Policy(method=Method.FIXED, min_sessions=500, crash_free_threshold=0.995, max_wait=7200),
        Evidence(800, 2, 60.0),
    )
    assert evidence(fixed.figures.as_dict(), "pass") == ""


# --- the read-only lookups manage.py doctor uses ----------------------------------------------


def lookup_client(*pages: dict[str, Any]) -> tuple[SlackClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    answers = list(pages)

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answers.pop(0))

    return SlackClient("https://slack.test", "xoxb-secret", transport=httpx.MockTransport(vendor)), seen


def test_a_channel_name_is_found_across_conversations_list_pages() -> None:
    client, seen = lookup_client(
        {
            "ok": True,
            "channels": [{"id": "C01", "name": "general"}],
            "response_metadata": {"next_cursor": "dXNlcjpV"},
        },
        {
            "ok": True,
            "channels": [{"id": "C02", "name": "releases", "is_member": False}],
            "response_metadata": {},
        },
    )

    found = client.find_channel("#releases")

    assert found == {"id": "C02", "name": "releases", "is_member": False}
    assert [r.url.path for r in seen] == ["/api/conversations.list"] * 2
    assert b"cursor=dXNlcjpV" in seen[1].content  # a form body, as Slack's read methods take


def test_an_unknown_channel_id_is_none_and_a_missing_scope_says_which() -> None:
    client, _ = lookup_client({"ok": False, "error": "channel_not_found"})
    assert client.find_channel("C0NOSUCH01") is None

    client, _ = lookup_client({"ok": False, "error": "missing_scope", "needed": "channels:read"})
    with pytest.raises(ProviderError, match="missing_scope") as refused:
        client.find_channel("#releases")
    assert refused.value.code == "missing_scope" and "channels:read" in refused.value.message
