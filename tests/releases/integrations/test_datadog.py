from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from releases.core.errors import ProviderError, ProviderTimeout
from releases.integrations import clients
from releases.integrations.datadog.client import DatadogClient
from tests.http import Vendor

NOW = 1_767_258_900.0
START = datetime(2026, 1, 1, 8, 15, tzinfo=UTC)  # 1767255300
END = datetime(2026, 1, 1, 9, 15, tzinfo=UTC)  # 1767258900
QUERY = "sum:trace.http.request.errors{service:shop-web,version:1.4.2}.as_count()"


def datadog(vendor: Vendor, base_url: str = "https://api.datadog.test") -> DatadogClient:
    return DatadogClient(
        base_url, "dd_api_secret", "dd_app_secret", transport=httpx.MockTransport(vendor), clock=lambda: NOW
    )


def series(*points: list[Any], metric: str = "trace.http.request.errors") -> dict[str, Any]:
    return {
        "metric": metric,
        "display_name": metric,
        "expression": QUERY,
        "scope": "service:shop-web,version:1.4.2",
        "tag_set": [],
        "aggr": "sum",
        "start": 1767255300000,
        "end": 1767258899000,
        "interval": 60,
        "length": len(points),
        "query_index": 0,
        "attributes": {},
        "unit": [None, None],
        "pointlist": list(points),
    }


def answer(*all_series: dict[str, Any], **overrides: Any) -> httpx.Response:
    body = {
        "status": "ok",
        "res_type": "time_series",
        "resp_version": 1,
        "query": QUERY,
        "from_date": 1767255300000,
        "to_date": 1767258900000,
        "group_by": [],
        "message": "",
        "series": list(all_series),
        "times": [],
        "values": [],
        **overrides,
    }
    return httpx.Response(200, json=body)


def fetch(client: DatadogClient) -> list[float]:
    return client.query_points(QUERY, START, END)


# --- the request -------------------------------------------------------------------------------


def test_it_sends_both_keys_and_the_window_in_epoch_seconds() -> None:
    vendor = Vendor(answer())
    fetch(datadog(vendor))
    request = vendor.last
    assert request.method == "GET"
    assert request.url.path == "/api/v1/query"
    assert request.url.params.multi_items() == [
        ("from", "1767255300"),
        ("to", "1767258900"),
        ("query", QUERY),
    ]
    assert request.headers["DD-API-KEY"] == "dd_api_secret"
    assert request.headers["DD-APPLICATION-KEY"] == "dd_app_secret"


@pytest.mark.parametrize(
    "base_url", ["https://api.datadog.test", "https://api.datadog.test/", "https://api.datadog.test/api/v1"]
)
def test_the_api_root_is_appended_once(base_url: str) -> None:
    vendor = Vendor(answer())
    fetch(datadog(vendor, base_url))
    assert vendor.last.url.path == "/api/v1/query"


def test_times_in_another_zone_and_with_fractions_become_whole_utc_seconds() -> None:
    vendor = Vendor(answer())
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 1, 1, 10, 15, 0, 900_000, tzinfo=plus_two)
    datadog(vendor).query_points(QUERY, start, END)
    assert vendor.last.url.params["from"] == "1767255300"


@pytest.mark.parametrize(
    ("query", "start", "end", "complaint"),
    [
        ("", START, END, "empty Datadog query"),
        (QUERY, datetime(2026, 1, 1, 8), END, "naive"),  # noqa: DTZ001
        (QUERY, END, START, "not before"),
        (QUERY, START, START, "not before"),
    ],
)
def test_a_bad_request_is_refused_before_anything_is_sent(
    query: str, start: datetime, end: datetime, complaint: str
) -> None:
    vendor = Vendor()
    with pytest.raises(ValueError, match=complaint):
        datadog(vendor).query_points(query, start, end)
    assert vendor.requests == []


# --- the answer ----------------------------------------------------------------------------------


def test_it_returns_the_values_of_the_contract_example() -> None:
    vendor = Vendor(answer(series([1767258720000, 2.0], [1767258780000, 0.0], [1767258840000, 5.0])))
    assert fetch(datadog(vendor)) == [2.0, 0.0, 5.0]


def test_every_series_is_flattened_in_order_and_nulls_are_dropped() -> None:
    vendor = Vendor(
        answer(
            series([1767258720000, 1], [1767258780000, None], metric="a"),
            series([1767258720000, None], [1767258780000, 3.5], [1767258840000, 4], metric="b"),
        )
    )
    points = fetch(datadog(vendor))
    assert points == [1.0, 3.5, 4.0]
    assert all(isinstance(p, float) for p in points)


def test_no_matching_data_is_an_empty_list() -> None:
    assert fetch(datadog(Vendor(answer()))) == []


def test_a_series_of_only_nulls_is_an_empty_list() -> None:
    assert fetch(datadog(Vendor(answer(series([1767258720000, None]))))) == []


# --- status "error" at HTTP 200 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"error": "Error parsing query: unexpected token"}, "Error parsing query: unexpected token"),
        ({"error": "", "message": "metric not found"}, "metric not found"),
        ({"message": ""}, "status 'error'"),
    ],
)
def test_a_200_with_status_error_is_a_permanent_refusal(fields: dict[str, str], text: str) -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(answer(status="error", series=[], **fields))))
    assert caught.value.permanent
    assert caught.value.status == 200
    assert caught.value.provider == "datadog"
    assert text in caught.value.message


def test_any_status_other_than_ok_is_a_refusal_even_with_series() -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(answer(series([1, 2.0]), status="warn", error="partial"))))
    assert caught.value.permanent
    assert caught.value.code == "warn"


@pytest.mark.parametrize("status", [None, 3, ""])
def test_a_missing_status_is_a_malformed_answer_not_a_refusal(status: object) -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(answer(status=status))))
    assert not caught.value.permanent
    assert "malformed answer: status" in caught.value.message


# --- error statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "errors"),
    [
        (400, ["Error parsing query: unable to parse sum:trace{: Rule 'scope_expr' didn't match"]),
        (403, ["Forbidden"]),
        (404, ["Not found"]),
    ],
)
def test_a_4xx_is_permanent_with_datadogs_errors(status: int, errors: list[str]) -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(httpx.Response(status, json={"errors": errors}))))
    assert caught.value.permanent
    assert caught.value.status == status
    assert caught.value.retry_after is None
    assert errors[0] in caught.value.message


def test_several_errors_are_joined() -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(httpx.Response(400, json={"errors": ["first", 7, "second"]}))))
    assert caught.value.message.endswith(": first; second")


def test_an_error_body_without_errors_falls_back_to_the_text() -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(httpx.Response(502, text="Bad Gateway"))))
    assert "Bad Gateway" in caught.value.message
    assert not caught.value.permanent
    assert caught.value.maybe_delivered


def test_a_500_is_transient_and_the_reset_header_is_no_wait() -> None:
    response = httpx.Response(500, json={"errors": ["Internal error"]}, headers={"X-RateLimit-Reset": "30"})
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(response)))
    assert not caught.value.permanent
    assert caught.value.retry_after is None
    assert caught.value.status == 500


def test_a_429_waits_the_relative_seconds_of_the_reset_header() -> None:
    # Relative, unlike Vercel and Sentry: 17 means 17 seconds, whatever the clock says
    # (docs/vendor-apis.md §6.1).
    headers = {
        "X-RateLimit-Limit": "1600",
        "X-RateLimit-Period": "3600",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "17",
        "X-RateLimit-Name": "query",
    }
    response = httpx.Response(429, json={"errors": ["Rate limit of 1600 requests in 3600 seconds reached."]})
    response.headers.update(headers)
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(response)))
    assert caught.value.retry_after == 17.0
    assert not caught.value.permanent
    assert caught.value.status == 429
    assert "rate limited: Rate limit of 1600" in caught.value.message


def test_a_429_prefers_retry_after_when_present() -> None:
    response = httpx.Response(
        429, json={"errors": ["slow"]}, headers={"Retry-After": "4", "X-RateLimit-Reset": "17"}
    )
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(response)))
    assert caught.value.retry_after == 4.0


def test_a_429_without_any_hint_leaves_the_wait_to_the_caller() -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(httpx.Response(429, json={"errors": ["slow"]}))))
    assert caught.value.retry_after is None
    assert not caught.value.permanent


@pytest.mark.parametrize(("exc_type", "maybe"), [(httpx.ReadTimeout, True), (httpx.ConnectTimeout, False)])
def test_a_timeout_is_a_transient_provider_timeout(exc_type: type[httpx.TransportError], maybe: bool) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise exc_type("slow", request=request)

    with pytest.raises(ProviderTimeout) as caught:
        fetch(datadog(Vendor(hang)))
    assert not caught.value.permanent
    assert caught.value.maybe_delivered is maybe


# --- malformed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([], "query answer: expected an object"),
        ({"status": "ok"}, "series: expected a list"),
        ({"status": "ok", "series": None}, "series: expected a list"),
        ({"status": "ok", "series": ["x"]}, "series[0]: expected an object"),
        ({"status": "ok", "series": [{"metric": "m"}]}, "series[0].pointlist: expected a list"),
        ({"status": "ok", "series": [series([1, 2.0], 3)]}, "series[0].pointlist[1]: expected a list"),
        ({"status": "ok", "series": [series([1, 2.0, 3.0])]}, "series[0].pointlist[0]: expected [timestamp"),
        ({"status": "ok", "series": [series([1])]}, "series[0].pointlist[0]: expected [timestamp"),
        ({"status": "ok", "series": [series(["1767258720000", 2.0])]}, "series[0].pointlist[0][0]"),
        ({"status": "ok", "series": [series([None, 2.0])]}, "series[0].pointlist[0][0]"),
        ({"status": "ok", "series": [series([1, 1.0]), series([1, "2.0"])]}, "series[1].pointlist[0][1]"),
        ({"status": "ok", "series": [series([1, True])]}, "series[0].pointlist[0][1]"),
    ],
)
def test_a_malformed_answer_is_a_transient_error_naming_the_field(body: object, complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(httpx.Response(200, json=body))))
    assert not caught.value.permanent
    assert complaint in caught.value.message


def test_a_non_finite_value_is_malformed() -> None:
    # Python's json writes and reads NaN; Datadog's points must be real numbers.
    content = b'{"status": "ok", "series": [{"pointlist": [[1767258720000, NaN]]}]}'
    with pytest.raises(ProviderError, match=r"pointlist\[0\]\[1\]: expected a finite number"):
        fetch(datadog(Vendor(httpx.Response(200, content=content))))


def test_a_non_json_success_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(datadog(Vendor(httpx.Response(200, text="<html>proxy</html>"))))
    assert "not JSON" in caught.value.message
    assert not caught.value.permanent


# --- the shared client ---------------------------------------------------------------------------


def test_the_shared_client_is_built_from_settings_and_reused(settings: Any) -> None:
    settings.DATADOG_API_URL = "https://api.datadoghq.eu"
    settings.DD_API_KEY = "k1"
    settings.DD_APP_KEY = "a1"
    first = clients.datadog()
    assert first is clients.datadog()
    assert first.base_url == "https://api.datadoghq.eu/api/v1"
    assert first._client.headers["DD-API-KEY"] == "k1"
    assert first._client.headers["DD-APPLICATION-KEY"] == "a1"
    settings.DD_APP_KEY = "a2"
    assert clients.datadog() is not first
