from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from releases.core.errors import ProviderError, ProviderTimeout
from releases.integrations import clients
from releases.integrations.posthog.client import HogQLResult, PostHogClient, hogql_string
from tests.http import Vendor

PROJECT = "12345"
QUERY_PATH = f"/api/projects/{PROJECT}/query/"
SQL = "SELECT count() AS exceptions FROM events"


class Clock:
    """Time that moves only when the client sleeps, so polling is deterministic."""

    def __init__(self) -> None:
        self.now = 1_767_258_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def posthog(
    vendor: Vendor,
    base_url: str = "https://posthog.test",
    *,
    clock: Clock | None = None,
    timeout: float = 10.0,
) -> PostHogClient:
    clock = clock or Clock()
    return PostHogClient(
        base_url,
        "phx_secret",
        timeout=timeout,
        transport=httpx.MockTransport(vendor),
        clock=clock,
        sleep=clock.sleep,
    )


def rows(columns: list[str], results: list[list[Any]], status: int = 200) -> httpx.Response:
    body = {
        "results": results,
        "columns": columns,
        "types": ["UInt64"] * len(columns),
        "hogql": SQL,
        "hasMore": False,
        "limit": 100,
        "offset": 0,
        "is_cached": False,
        "last_refresh": "2026-01-01T11:01:12.345Z",
        "timings": [{"k": "./query", "t": 0.183}],
    }
    return httpx.Response(status, json=body)


def count(n: object) -> httpx.Response:
    return rows(["exceptions"], [[n]])


def pending(query_id: str = "q-1", status: int = 202) -> httpx.Response:
    return httpx.Response(
        status, json={"query_status": {"id": query_id, "team_id": 12345, "complete": False}}
    )


def done(result: httpx.Response) -> httpx.Response:
    status = {"id": "q-1", "team_id": 12345, "complete": True, "error": False, "results": result.json()}
    return httpx.Response(200, json={"query_status": status})


def problem(status: int, type_: str, code: str, detail: str, **headers: str) -> httpx.Response:
    body = {"type": type_, "code": code, "detail": detail, "attr": None}
    return httpx.Response(status, json=body, headers=headers)


def exceptions(client: PostHogClient, value: str = "1.4.2", window: timedelta = timedelta(hours=1)) -> int:
    return client.exception_count(PROJECT, "$app_version", value, window)


# --- hogql: the request --------------------------------------------------------------------------


def test_hogql_posts_the_documented_body() -> None:
    vendor = Vendor(count(3))
    posthog(vendor).hogql(PROJECT, SQL, name="release-gate exceptions web@1.4.2")
    request = vendor.last
    assert request.method == "POST"
    assert request.url.path == QUERY_PATH
    assert request.headers["Authorization"] == "Bearer phx_secret"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "query": {"kind": "HogQLQuery", "query": SQL},
        "name": "release-gate exceptions web@1.4.2",
        "refresh": "blocking",
    }


@pytest.mark.parametrize(
    "base_url", ["https://posthog.test", "https://posthog.test/", "https://posthog.test/api"]
)
def test_the_api_root_is_appended_once(base_url: str) -> None:
    vendor = Vendor(count(3))
    posthog(vendor, base_url).hogql(PROJECT, SQL)
    assert vendor.last.url.path == QUERY_PATH


def test_a_project_id_cannot_escape_its_path_segment() -> None:
    vendor = Vendor(count(3))
    posthog(vendor).hogql("1/../../users?x=1", SQL)
    assert vendor.last.url.raw_path == b"/api/projects/1%2F..%2F..%2Fusers%3Fx%3D1/query/"


# --- hogql: the answer ---------------------------------------------------------------------------


def test_hogql_returns_columns_and_rows() -> None:
    vendor = Vendor(rows(["version", "exceptions"], [["1.4.2", 37], ["1.4.1", 2]]))
    result = posthog(vendor).hogql(PROJECT, SQL)
    assert result == HogQLResult(columns=["version", "exceptions"], rows=[["1.4.2", 37], ["1.4.1", 2]])


def test_hogql_with_no_rows_is_an_empty_result() -> None:
    result = posthog(Vendor(rows(["version", "exceptions"], []))).hogql(PROJECT, SQL)
    assert result == HogQLResult(columns=["version", "exceptions"], rows=[])


def test_an_async_answer_is_polled_until_complete() -> None:
    clock = Clock()
    vendor = Vendor(pending("q-7"), pending("q-7"), pending("q-7", status=202), done(count(5)))
    result = posthog(vendor, clock=clock).hogql(PROJECT, SQL)
    assert result == HogQLResult(columns=["exceptions"], rows=[[5]])
    assert [(r.method, r.url.path) for r in vendor.requests] == [
        ("POST", QUERY_PATH),
        ("GET", f"{QUERY_PATH}q-7/"),
        ("GET", f"{QUERY_PATH}q-7/"),
        ("GET", f"{QUERY_PATH}q-7/"),
    ]
    assert clock.sleeps == [0.1, 0.2, 0.4]


def test_an_async_query_that_never_completes_is_cancelled_and_reported_transient() -> None:
    clock = Clock()
    vendor = Vendor(*(pending("q-9") for _ in range(30)))
    with pytest.raises(ProviderTimeout) as caught:
        posthog(vendor, clock=clock, timeout=3.0).hogql(PROJECT, SQL)
    assert not caught.value.permanent
    assert caught.value.code == "query_incomplete"
    # Polls stop at the client's timeout; sleeps never exceed a second nor overrun the budget.
    assert sum(clock.sleeps) == pytest.approx(3.0)
    assert max(clock.sleeps) <= 1.0
    assert vendor.last.method == "DELETE"
    assert vendor.last.url.path == f"{QUERY_PATH}q-9/"


def test_a_failed_cancel_does_not_hide_the_timeout() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(500, text="oops")
        return pending("q-9")

    vendor = Vendor(*([respond] * 20))
    with pytest.raises(ProviderTimeout) as caught:
        posthog(vendor, timeout=1.0).hogql(PROJECT, SQL)
    assert caught.value.code == "query_incomplete"
    assert vendor.last.method == "DELETE"


def test_a_failed_async_query_is_permanent_with_its_error_message() -> None:
    # The poll reports a user-fixable failure as a 400 carrying the query status (docs/vendor-apis.md §6.2).
    failed = {
        "query_status": {"id": "q-1", "complete": True, "error": True, "error_message": "Unknown table"}
    }
    vendor = Vendor(pending("q-1"), httpx.Response(400, json=failed))
    with pytest.raises(ProviderError) as caught:
        posthog(vendor).hogql(PROJECT, SQL)
    assert caught.value.permanent
    assert caught.value.status == 400
    assert "Unknown table" in caught.value.message


def test_an_internal_async_failure_is_transient() -> None:
    failed = {"query_status": {"id": "q-1", "complete": True, "error": True, "error_message": None}}
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(pending("q-1"), httpx.Response(500, json=failed))).hogql(PROJECT, SQL)
    assert not caught.value.permanent


# --- hogql: errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "type_", "code", "detail"),
    [
        (400, "validation_error", "invalid_input", "Unable to resolve field: nope"),
        (401, "authentication_error", "invalid_personal_api_key", "Invalid Personal API key."),
        (403, "authentication_error", "permission_denied", "API key missing required scope 'query:read'"),
        (404, "invalid_request", "not_found", "Not found."),
    ],
)
def test_a_4xx_is_permanent_with_detail_and_code(status: int, type_: str, code: str, detail: str) -> None:
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(problem(status, type_, code, detail))).hogql(PROJECT, SQL)
    assert caught.value.permanent
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.provider == "posthog"
    assert detail in caught.value.message


def test_a_500_is_transient() -> None:
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(problem(500, "server_error", "error", "A server error occurred."))).hogql(PROJECT, SQL)
    assert not caught.value.permanent
    assert caught.value.code == "error"
    assert caught.value.maybe_delivered


def test_a_429_honours_retry_after() -> None:
    detail = "Request was throttled. Expected available in 62 seconds."
    response = problem(429, "throttled_error", "throttled", detail, **{"Retry-After": "62"})
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(response)).hogql(PROJECT, SQL)
    assert caught.value.retry_after == 62.0
    assert not caught.value.permanent
    assert caught.value.code == "throttled"
    assert caught.value.status == 429


def test_a_429_without_retry_after_reads_the_wait_from_the_detail() -> None:
    response = problem(
        429, "throttled_error", "throttled", "Request was throttled. Expected available in 8 seconds."
    )
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(response)).hogql(PROJECT, SQL)
    assert caught.value.retry_after == 8.0


def test_a_429_with_no_hint_at_all_leaves_the_wait_to_the_caller() -> None:
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(problem(429, "throttled_error", "throttled", "Slow down."))).hogql(PROJECT, SQL)
    assert caught.value.retry_after is None


def test_an_error_body_that_is_not_json_still_gives_a_message() -> None:
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(httpx.Response(502, text="Bad Gateway"))).hogql(PROJECT, SQL)
    assert "Bad Gateway" in caught.value.message
    assert caught.value.code is None


@pytest.mark.parametrize(("exc_type", "maybe"), [(httpx.ReadTimeout, True), (httpx.ConnectTimeout, False)])
def test_a_timeout_is_a_transient_provider_timeout(exc_type: type[httpx.TransportError], maybe: bool) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise exc_type("slow", request=request)

    with pytest.raises(ProviderTimeout) as caught:
        posthog(Vendor(hang)).hogql(PROJECT, SQL)
    assert not caught.value.permanent
    assert caught.value.maybe_delivered is maybe


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([], "query answer: expected an object"),
        ({"results": [[1]]}, "query answer.columns: expected a list"),
        ({"columns": ["a"], "results": None}, "query answer.results: expected a list"),
        ({"columns": [1], "results": []}, "query answer.columns[0]: expected a string"),
        ({"columns": ["a"], "results": [5]}, "query answer.results[0]: expected a list"),
        ({"columns": ["a"], "results": [[1, 2]]}, "query answer.results[0]: 2 values for 1 columns"),
        ({"query_status": None}, "query_status: expected an object"),
        ({"query_status": {"id": "q", "complete": "no"}}, "query_status.complete: expected a boolean"),
        ({"query_status": {"complete": False}}, "query_status.id"),
        ({"query_status": {"id": "q", "complete": True}}, "query_status.results: expected an object"),
        (
            {"query_status": {"id": "q", "complete": True, "results": {"results": []}}},
            "query_status.results.columns",
        ),
    ],
)
def test_a_malformed_answer_is_a_transient_error_naming_the_field(body: object, complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        posthog(Vendor(httpx.Response(200, json=body))).hogql(PROJECT, SQL)
    assert not caught.value.permanent
    assert complaint in caught.value.message


def test_a_non_json_success_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="not JSON"):
        posthog(Vendor(httpx.Response(200, text="<html>"))).hogql(PROJECT, SQL)


# --- exception_count -----------------------------------------------------------------------------


def sent_query(vendor: Vendor) -> str:
    return json.loads(vendor.last.content)["query"]["query"]


def test_exception_count_asks_the_contract_shaped_query() -> None:
    vendor = Vendor(count(37))
    assert exceptions(posthog(vendor)) == 37
    assert sent_query(vendor) == (
        "SELECT count() AS exceptions FROM events WHERE event = '$exception'"
        " AND timestamp > now() - INTERVAL 60 MINUTE AND properties.$app_version = '1.4.2'"
    )
    assert json.loads(vendor.last.content)["name"]


@pytest.mark.parametrize(
    ("window", "interval"),
    [
        (timedelta(minutes=15), "INTERVAL 15 MINUTE"),
        (timedelta(seconds=90), "INTERVAL 90 SECOND"),
        (timedelta(seconds=1, microseconds=1), "INTERVAL 2 SECOND"),
        (timedelta(days=1), "INTERVAL 1440 MINUTE"),
    ],
)
def test_the_window_is_whole_minutes_or_else_whole_seconds(window: timedelta, interval: str) -> None:
    vendor = Vendor(count(0))
    exceptions(posthog(vendor), window=window)
    assert f" - {interval} AND " in sent_query(vendor)


@pytest.mark.parametrize("window", [timedelta(0), timedelta(minutes=-5)])
def test_an_empty_or_negative_window_is_refused(window: timedelta) -> None:
    vendor = Vendor()
    with pytest.raises(ValueError, match="positive"):
        exceptions(posthog(vendor), window=window)
    assert vendor.requests == []


@pytest.mark.parametrize("prop", ["$app_version", "release", "_x", "$lib.version_2", "a.b.c"])
def test_plain_property_paths_are_accepted(prop: str) -> None:
    vendor = Vendor(count(1))
    assert posthog(vendor).exception_count(PROJECT, prop, "v", timedelta(minutes=5)) == 1
    assert f"AND properties.{prop} = 'v'" in sent_query(vendor)


@pytest.mark.parametrize(
    "prop",
    ["", "$", "1abc", "a b", "a.", ".a", "a..b", "$$a", "a-b", "x' OR 1=1 --", "a\n", "a['b']", "a.$b"],
)
def test_a_property_that_could_change_the_query_is_refused(prop: str) -> None:
    vendor = Vendor()
    with pytest.raises(ValueError, match="property"):
        posthog(vendor).exception_count(PROJECT, prop, "v", timedelta(minutes=5))
    assert vendor.requests == []


def test_quotes_and_backslashes_in_the_value_are_escaped() -> None:
    vendor = Vendor(count(0))
    exceptions(posthog(vendor), value="1.4.2' OR 1=1 --\\")
    assert sent_query(vendor).endswith(r"properties.$app_version = '1.4.2\' OR 1=1 --\\'")


@given(st.text())
def test_a_hogql_literal_holds_any_value_and_nothing_more(value: str) -> None:
    literal = hogql_string(value)
    # The whole literal is one string token (it cannot end early) and decodes back to the value.
    token = re.fullmatch(r"'((?:\\.|[^'\\])*)'", literal, flags=re.DOTALL)
    assert token is not None
    assert re.sub(r"\\(.)", r"\1", token.group(1), flags=re.DOTALL) == value


def test_no_rows_count_as_zero() -> None:
    assert exceptions(posthog(Vendor(rows(["exceptions"], [])))) == 0


def test_a_count_as_a_whole_float_is_accepted() -> None:
    assert exceptions(posthog(Vendor(count(12.0)))) == 12


def test_exception_count_follows_an_async_answer() -> None:
    vendor = Vendor(pending(), done(count(4)))
    assert exceptions(posthog(vendor)) == 4


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (count("37"), "results[0][0]: expected a number"),
        (count(None), "results[0][0]: expected a number"),
        (count(1.5), "results[0][0]: expected a whole number"),
        (count(-1), "negative count"),
        (rows(["exceptions"], [[1], [2]]), "expected one row with one count, got 2 rows"),
        (rows(["version", "exceptions"], [["1.4.2", 3]]), "of 2 columns"),
    ],
)
def test_a_count_that_is_not_one_whole_number_is_a_provider_error(
    answer: httpx.Response, complaint: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        exceptions(posthog(Vendor(answer)))
    assert not caught.value.permanent
    assert caught.value.message.startswith(f"POST {QUERY_PATH}: malformed answer")
    assert complaint in caught.value.message


def test_exception_count_passes_errors_through() -> None:
    vendor = Vendor(
        problem(400, "validation_error", "invalid_input", "Unable to resolve field: $app_version")
    )
    with pytest.raises(ProviderError) as caught:
        exceptions(posthog(vendor))
    assert caught.value.permanent
    assert caught.value.code == "invalid_input"


# --- the shared client ---------------------------------------------------------------------------


def test_the_shared_client_is_built_from_settings_and_reused(settings: Any) -> None:
    settings.POSTHOG_API_URL = "https://eu.posthog.com"
    settings.POSTHOG_API_KEY = "phx_one"
    settings.PROVIDER_TIMEOUT = 4.0
    first = clients.posthog()
    assert first is clients.posthog()
    assert first.base_url == "https://eu.posthog.com/api"
    assert first.timeout == 4.0
    assert first._client.headers["Authorization"] == "Bearer phx_one"
    settings.POSTHOG_API_KEY = "phx_two"
    assert clients.posthog() is not first
