from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from notifications.pagerduty import PagerDutyClient
from releases.core.errors import ProviderError, ProviderTimeout
from tests.http import Vendor

ROUTING_KEY = "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73"
DEDUP_KEY = "release-gate/shop-web/dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q"
SUMMARY = "Release gate rolled back shop-web: crash-free 99.21% < 99.50%"
MAX_BODY = 512 * 1024

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def accepted(dedup_key: str | None = DEDUP_KEY) -> httpx.Response:
    body = {"status": "success", "message": "Event processed"}
    if dedup_key is not None:
        body["dedup_key"] = dedup_key
    return httpx.Response(202, json=body)


def invalid(*errors: str) -> httpx.Response:
    return httpx.Response(
        400, json={"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    )


def raises(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type("no answer", request=request)

    return answer


def pagerduty(vendor: Vendor, base_url: str = "https://events.pagerduty.test") -> PagerDutyClient:
    return PagerDutyClient(base_url, transport=httpx.MockTransport(vendor), clock=lambda: 0.0)


def trigger(vendor: Vendor, routing_key: str = ROUTING_KEY, **overrides: Any) -> str:
    fields: dict[str, Any] = {"dedup_key": DEDUP_KEY, "summary": SUMMARY, "source": "gate.acme.internal"}
    return pagerduty(vendor).trigger(routing_key, **{**fields, **overrides})


def failure(vendor: Vendor, routing_key: str = ROUTING_KEY, **overrides: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        trigger(vendor, routing_key, **overrides)
    return caught.value


def sent(vendor: Vendor) -> dict[str, Any]:
    return json.loads(vendor.last.content)


# --- what goes on the wire -----------------------------------------------------------------------


def test_trigger_sends_the_contract_body_and_returns_the_dedup_key() -> None:
    vendor = Vendor(accepted())
    dedup_key = pagerduty(vendor).trigger(
        ROUTING_KEY,
        dedup_key=DEDUP_KEY,
        summary=SUMMARY,
        source="release-gate.acme.internal",
        severity="critical",
        component="shop-web",
        group="production",
        event_class="release-regression",
        custom_details={"release": "web@1.4.2", "crash_free_rate": 0.9921, "threshold": 0.995},
        links=[("https://acme.sentry.io/releases/web@1.4.2/", "Sentry release")],
        client_url="https://gate.acme.internal/releases/web@1.4.2",
        timestamp=datetime(2026, 1, 1, 10, 56, 10, tzinfo=UTC),
    )
    assert dedup_key == DEDUP_KEY
    request = vendor.last
    assert request.method == "POST"
    assert str(request.url) == "https://events.pagerduty.test/v2/enqueue"
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers  # the routing key in the body is the credential
    assert sent(vendor) == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": DEDUP_KEY,
        "payload": {
            "summary": SUMMARY,
            "source": "release-gate.acme.internal",
            "severity": "critical",
            "timestamp": "2026-01-01T10:56:10.000+00:00",
            "component": "shop-web",
            "group": "production",
            "class": "release-regression",
            "custom_details": {"release": "web@1.4.2", "crash_free_rate": 0.9921, "threshold": 0.995},
        },
        "client": "Gatekeeper",
        "client_url": "https://gate.acme.internal/releases/web@1.4.2",
        "links": [{"href": "https://acme.sentry.io/releases/web@1.4.2/", "text": "Sentry release"}],
    }


def test_trigger_leaves_out_the_optional_fields_it_was_not_given() -> None:
    vendor = Vendor(accepted())
    trigger(vendor, severity="warning")
    assert sent(vendor) == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": DEDUP_KEY,
        "payload": {"summary": SUMMARY, "source": "gate.acme.internal", "severity": "warning"},
        "client": "Gatekeeper",
    }


def test_the_timestamp_is_sent_as_iso_8601_in_utc() -> None:
    vendor = Vendor(accepted())
    berlin = timezone(timedelta(hours=1))
    trigger(vendor, timestamp=datetime(2026, 1, 1, 11, 56, 10, 250000, tzinfo=berlin))
    assert sent(vendor)["payload"]["timestamp"] == "2026-01-01T10:56:10.250+00:00"


def test_trigger_returns_the_dedup_key_pagerduty_echoes() -> None:
    assert trigger(Vendor(accepted("what-pagerduty-kept"))) == "what-pagerduty-kept"


def test_trigger_falls_back_to_the_dedup_key_it_sent_when_none_is_echoed() -> None:
    assert trigger(Vendor(accepted(dedup_key=None))) == DEDUP_KEY


@pytest.mark.parametrize("action", ["resolve"])
def test_resolve_and_acknowledge_send_only_the_key_the_dedup_key_and_the_action(action: str) -> None:
    vendor = Vendor(accepted())
    assert getattr(pagerduty(vendor), action)(ROUTING_KEY, DEDUP_KEY) == DEDUP_KEY
    assert vendor.last.url.path == "/v2/enqueue"
    assert sent(vendor) == {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": DEDUP_KEY}


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("https://events.pagerduty.test", "/v2/enqueue"),
        ("https://events.pagerduty.test/", "/v2/enqueue"),
        ("https://events.pagerduty.test/v2/enqueue", "/v2/enqueue"),
        ("https://events.pagerduty.test/v2/enqueue/", "/v2/enqueue"),
        ("http://simulator.test/pagerduty", "/pagerduty/v2/enqueue"),
        ("http://simulator.test/pagerduty/v2/enqueue", "/pagerduty/v2/enqueue"),
    ],
)
def test_the_events_path_is_appended_once(base_url: str, path: str) -> None:
    vendor = Vendor(accepted())
    pagerduty(vendor, base_url).resolve(ROUTING_KEY, DEDUP_KEY)
    assert vendor.last.url.path == path


def test_a_summary_over_1024_characters_is_truncated_not_refused() -> None:
    vendor = Vendor(accepted())
    trigger(vendor, summary="crash-free dropped " * 300)
    summary = sent(vendor)["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.startswith("crash-free dropped crash-free")
    assert summary.endswith("…")


def test_a_summary_of_exactly_1024_characters_is_sent_as_is() -> None:
    vendor = Vendor(accepted())
    trigger(vendor, summary="x" * 1024)
    assert sent(vendor)["payload"]["summary"] == "x" * 1024


def test_a_body_of_exactly_512_kb_is_sent() -> None:
    probe = Vendor(accepted())
    trigger(probe, custom_details={"log": ""})
    padding = MAX_BODY - len(probe.last.content)
    vendor = Vendor(accepted())
    trigger(vendor, custom_details={"log": "x" * padding})
    assert len(vendor.last.content) == MAX_BODY


# --- refused before sending ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing_key", "overrides", "problem"),
    [
        (ROUTING_KEY[:31], {}, "routing_key must be 32 characters, got 31"),
        (ROUTING_KEY + "0", {}, "routing_key must be 32 characters, got 33"),
        ("", {}, "routing_key must be 32 characters, got 0"),
        (ROUTING_KEY, {"severity": "high"}, "severity must be one of"),
        (ROUTING_KEY, {"severity": "CRITICAL"}, "severity must be one of"),
        (ROUTING_KEY, {"summary": "  "}, "summary is empty"),
        (ROUTING_KEY, {"source": ""}, "source is empty"),
        (ROUTING_KEY, {"dedup_key": ""}, "dedup_key is empty"),
        (ROUTING_KEY, {"dedup_key": "d" * 256}, "dedup_key is 256 characters"),
        (ROUTING_KEY, {"custom_details": {"log": "x" * MAX_BODY}}, "PagerDuty accepts at most 524288"),
        (ROUTING_KEY, {"custom_details": {"at": datetime.now(UTC)}}, "not JSON-serialisable"),
        (ROUTING_KEY, {"custom_details": {"rate": float("nan")}}, "not JSON-serialisable"),
        (ROUTING_KEY, {"timestamp": datetime(2026, 1, 1, 10, 56)}, "timestamp must be timezone-aware"),  # noqa: DTZ001
        (ROUTING_KEY, {"links": [("", "Sentry")]}, "every link needs an href"),
    ],
)
def test_an_event_pagerduty_would_reject_is_refused_without_a_request(
    routing_key: str, overrides: dict[str, Any], problem: str
) -> None:
    vendor = Vendor()
    error = failure(vendor, routing_key, **overrides)
    assert vendor.requests == []
    assert error.permanent
    assert not error.maybe_delivered
    assert error.provider == "pagerduty"
    assert problem in error.message


@pytest.mark.parametrize("action", ["resolve"])
@pytest.mark.parametrize(
    ("routing_key", "dedup_key"), [(ROUTING_KEY[:31], DEDUP_KEY), (ROUTING_KEY, ""), (ROUTING_KEY, "d" * 256)]
)
def test_a_bad_resolve_or_acknowledge_is_refused_without_a_request(
    action: str, routing_key: str, dedup_key: str
) -> None:
    vendor = Vendor()
    with pytest.raises(ProviderError) as caught:
        getattr(pagerduty(vendor), action)(routing_key, dedup_key)
    assert vendor.requests == []
    assert caught.value.permanent


# --- PagerDuty's answers -------------------------------------------------------------------------


def test_an_invalid_event_is_permanent_and_names_every_error() -> None:
    error = failure(
        Vendor(
            invalid(
                "Length of 'routing_key' is incorrect (should be 32 characters)",
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
            )
        )
    )
    assert error.permanent
    assert error.status == 400
    assert error.code == "invalid event"
    assert not error.maybe_delivered
    assert "Event object is invalid" in error.message
    assert "Length of 'routing_key' is incorrect" in error.message
    assert "'payload.severity' is invalid" in error.message


def test_a_throttled_event_waits_as_long_as_retry_after_says() -> None:
    throttled = httpx.Response(
        429,
        json={"status": "throttle event", "message": "Requests are arriving too quickly."},
        headers={"Retry-After": "30"},
    )
    error = failure(Vendor(throttled))
    assert not error.permanent
    assert error.retry_after == 30.0
    assert error.status == 429
    assert "rate limited" in error.message


@pytest.mark.parametrize(
    "throttled",
    [httpx.Response(429), httpx.Response(429, json={"status": "throttle event", "message": "slow down"})],
)
def test_a_throttled_event_without_retry_after_leaves_the_wait_to_the_caller(
    throttled: httpx.Response,
) -> None:
    error = failure(Vendor(throttled))
    assert not error.permanent
    assert error.retry_after is None  # docs/vendor-apis.md §4.1: no documented hint, so no invented one


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_transient(status: int) -> None:
    answer = httpx.Response(
        status, json={"status": "server error", "message": "Internal Server Error", "errors": ["boom"]}
    )
    error = failure(Vendor(answer))
    assert not error.permanent
    assert error.maybe_delivered
    assert error.status == status
    assert "boom" in error.message


def test_a_wrong_url_is_permanent() -> None:
    error = failure(Vendor(httpx.Response(404, json={"status": "not found", "message": "Not Found"})))
    assert error.permanent
    assert error.status == 404


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(202, text="<html>accepted</html>"),
        httpx.Response(202, json=["success"]),
        httpx.Response(202, json={"status": "success", "dedup_key": 42}),
    ],
)
def test_an_unreadable_202_is_transient_and_may_have_been_delivered(answer: httpx.Response) -> None:
    error = failure(Vendor(answer))
    assert not error.permanent
    assert error.maybe_delivered
    assert "malformed answer" in error.message


@pytest.mark.parametrize(("exc_type", "maybe"), [(httpx.ReadTimeout, True), (httpx.ConnectTimeout, False)])
def test_a_timeout_says_whether_the_event_may_have_been_delivered(
    exc_type: type[httpx.TransportError], maybe: bool
) -> None:
    with pytest.raises(ProviderTimeout) as caught:
        trigger(Vendor(raises(exc_type)))
    assert caught.value.maybe_delivered is maybe
    assert not caught.value.permanent


# --- the routing key is a secret -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing_key", "overrides", "answer"),
    [
        (ROUTING_KEY, {}, invalid(f"routing_key {ROUTING_KEY} is not a known integration")),
        (ROUTING_KEY, {}, httpx.Response(400, text=f"bad event {{'routing_key': '{ROUTING_KEY}'}}")),
        (ROUTING_KEY, {}, httpx.Response(429, text=f"slow down {ROUTING_KEY}")),
        (ROUTING_KEY, {}, httpx.Response(500, json={"status": "error", "message": ROUTING_KEY})),
        # The key straddling where the error text is cut must not leave half of it behind.
        (ROUTING_KEY, {}, httpx.Response(502, text="x" * 480 + ROUTING_KEY + "y" * 100)),
        (ROUTING_KEY, {}, httpx.Response(202, text=f"<html>{ROUTING_KEY}</html>")),
        (ROUTING_KEY, {}, raises(httpx.ReadTimeout)),
        (ROUTING_KEY, {}, raises(httpx.ConnectError)),
        (ROUTING_KEY, {}, raises(httpx.RemoteProtocolError)),
        (ROUTING_KEY, {"severity": "page-everyone"}, None),
        (ROUTING_KEY, {"custom_details": {"log": "x" * MAX_BODY}}, None),
        (ROUTING_KEY[:31], {}, None),
        (ROUTING_KEY + "X", {}, None),
    ],
)
def test_the_routing_key_never_appears_in_an_error_or_a_log_line(
    routing_key: str, overrides: dict[str, Any], answer: Answer | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    error = failure(Vendor(*([answer] if answer is not None else [])), routing_key, **overrides)
    for text in (str(error), repr(error), error.message, *map(str, error.args), caplog.text):
        assert routing_key not in text
        assert ROUTING_KEY[:16] not in text


def test_an_echoed_routing_key_is_replaced_by_a_marker() -> None:
    error = failure(Vendor(invalid(f"routing_key {ROUTING_KEY} is not a known integration")))
    assert "routing_key [redacted] is not a known integration" in error.message
