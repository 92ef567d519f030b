"""The simulated PostHog query API (HogQL exception counts) against docs/vendor-apis.md §6.2."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator.hogql import HogQLError, parse

PROJECT = 4242
COUNT_WHERE_P = "SELECT count() FROM events WHERE properties.p = "
QUERY_PATH = f"/posthog/api/projects/{PROJECT}/query/"


@pytest.fixture
def posthog(simulator_process) -> Iterator[httpx.Client]:
    with simulator_process.client(headers={"Authorization": "Bearer phx_test"}) as client:
        yield client


def _hogql(window: str = "5 MINUTE", version: str = "1.4.2", prop: str = "$app_version") -> str:
    # HogQL built the way Gatekeeper builds it, escapes included.
    escaped = version.replace("\\", "\\\\").replace("'", "\\'")
    select = "SELECT count() AS exceptions FROM events WHERE event = '$exception' "
    return select + f"AND timestamp > now() - INTERVAL {window} AND properties.{prop} = '{escaped}'"


def _ask(posthog: httpx.Client, query: str, project: int = PROJECT, **extra: Any) -> httpx.Response:
    body = {"query": {"kind": "HogQLQuery", "query": query}, "name": "release-gate", **extra}
    return posthog.post(f"/posthog/api/projects/{project}/query/", json=body)


def _count(posthog: httpx.Client, query: str, project: int = PROJECT) -> int:
    response = _ask(posthog, query, project)
    assert response.status_code == 200, response.text
    [[count]] = response.json()["results"]
    return count


def _stream(control: httpx.Client, **body: Any) -> dict[str, Any]:
    payload = {"project_id": PROJECT, "property": "$app_version", "value": "1.4.2", "per_minute": 60, **body}
    response = control.post("/_sim/posthog/exceptions", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def test_exception_count_in_the_window_has_the_hogql_response_shape(
    control: httpx.Client, posthog: httpx.Client
) -> None:
    now = time.time()
    # 60/min from 10 minutes ago until 1 minute ago: the last 5 minutes hold 4 minutes of it.
    _stream(control, start=now - 600, stop=now - 60)

    response = _ask(posthog, _hogql("5 MINUTE"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"] == [[240]]
    assert body["columns"] == ["exceptions"]
    assert body["types"] == ["UInt64"]
    assert body["hogql"] == _hogql("5 MINUTE") + " LIMIT 100"
    assert body["hasMore"] is False
    assert (body["limit"], body["offset"]) == (100, 0)
    assert body["is_cached"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["last_refresh"])
    assert body["timings"] and all(set(t) == {"k", "t"} for t in body["timings"])


def test_counts_are_per_project_property_and_value(control: httpx.Client, posthog: httpx.Client) -> None:
    start, stop = time.time() - 1200, time.time() - 600
    _stream(control, start=start, stop=stop, per_minute=30)
    _stream(control, start=start, stop=stop, value="1.4.1", per_minute=90)
    _stream(control, start=start, stop=stop, value="it's \\new", per_minute=6)
    _stream(control, start=start, stop=stop, project_id=99, per_minute=600)

    assert _count(posthog, _hogql("1 HOUR")) == 300
    assert _count(posthog, _hogql("1 HOUR", version="1.4.1")) == 900
    assert _count(posthog, _hogql("1 HOUR", version="it's \\new")) == 60  # backslash escapes
    assert _count(posthog, _hogql("1 HOUR", version="9.9.9")) == 0
    assert _count(posthog, _hogql("1 HOUR", prop="$environment")) == 0
    assert _count(posthog, _hogql("1 HOUR"), project=99) == 6000
    assert _count(posthog, _hogql("5 MINUTE")) == 0  # all of it was longer ago


def test_window_units_and_queries_without_filters(control: httpx.Client, posthog: httpx.Client) -> None:
    now = time.time()
    _stream(control, start=now - 7200, stop=now - 3600, per_minute=60)
    _stream(control, value="2.0.0", start=now - 7200, stop=now - 3600, per_minute=60)

    assert _count(posthog, _hogql("7200 SECOND")) == 3600
    assert _count(posthog, _hogql("90 MINUTE")) == 1800
    assert _count(posthog, _hogql("1 DAY")) == 3600
    assert _count(posthog, "SELECT count() FROM events") == 7200
    assert _count(posthog, "select count(*) from events where event = 'pageview' limit 5;") == 0
    limited = _ask(posthog, "SELECT count() FROM events LIMIT 5").json()
    assert (limited["columns"], limited["limit"]) == (["count()"], 5)
    assert limited["hogql"] == "SELECT count() FROM events LIMIT 5"


def test_a_second_registration_adds_a_phase(control: httpx.Client, posthog: httpx.Client) -> None:
    base = time.time() - 1000
    _stream(control, start=base, per_minute=60)
    stream = _stream(control, start=base + 300, stop=base + 360, per_minute=600)

    assert [p["per_minute"] for p in stream["phases"]] == [60, 600]
    # 300 s at 1/s, then 60 s at 10/s, then nothing (the newer phase stopped).
    assert _count(posthog, _hogql("1 DAY")) == 300 + 600
    [listed] = control.get("/_sim/posthog/exceptions").json()["exceptions"]
    assert listed["so_far"] == 900


def test_the_simulated_clock_moves_the_window(control: httpx.Client, posthog: httpx.Client) -> None:
    _stream(control, per_minute=120)  # from the simulated now on

    before = _count(posthog, _hogql("1 HOUR"))
    control.post("/_sim/clock", json={"advance": 60})
    after = _count(posthog, _hogql("1 HOUR"))
    control.post("/_sim/clock", json={"advance": 3600})
    much_later = _count(posthog, _hogql("1 HOUR"))

    assert before <= 2
    assert 120 <= after <= 123
    assert 7200 - 3 <= much_later <= 7200  # only the last hour counts


def test_missing_or_wrong_credentials_are_401(control: httpx.Client, simulator_process) -> None:
    with simulator_process.client() as anonymous:
        response = anonymous.post(QUERY_PATH, json={"query": {"kind": "HogQLQuery", "query": "SELECT 1"}})
    assert response.status_code == 401
    assert response.json() == {
        "type": "authentication_error",
        "code": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
        "attr": None,
    }


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "SELECT count() FROM persons",
        "SELECT count() AS n FROM events WHERE distinct_id = 'x'",
        "SELECT count() FROM events WHERE event = '$exception",
        "SELECT count() FROM events WHERE timestamp > now() - INTERVAL 5 FORTNIGHT",
        "SELECT count() FROM events WHERE timestamp < now() - INTERVAL 5 MINUTE",
        "SELECT count() FROM events WHERE properties.$app_version = 142",
        "SELECT count() FROM events GROUP BY event",
        "",
    ],
)
def test_unparseable_hogql_is_400_validation_error(
    control: httpx.Client, posthog: httpx.Client, query: str
) -> None:
    response = _ask(posthog, query)
    assert response.status_code == 400
    body = response.json()
    assert (body["type"], body["code"], body["attr"]) == ("validation_error", "invalid_input", None)
    assert isinstance(body["detail"], str) and body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": {"kind": "TrendsQuery", "series": []}},
        {"query": {"kind": "EventsQuery"}},
        {"query": "SELECT count() FROM events"},
        {"name": "no query"},
        {"query": {"kind": "HogQLQuery", "query": 5}},
        {"query": {"kind": "HogQLQuery", "query": "SELECT count() FROM events"}, "refresh": "sometimes"},
        ["not", "an", "object"],
    ],
)
def test_other_kinds_and_bad_bodies_are_400_validation_error(
    control: httpx.Client, posthog: httpx.Client, body: Any
) -> None:
    response = posthog.post(QUERY_PATH, json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert response.json()["code"] == "invalid_input"


def test_invalid_json_unknown_project_path_and_method(control: httpx.Client, posthog: httpx.Client) -> None:
    broken = posthog.post(QUERY_PATH, content=b"{nope", headers={"Content-Type": "application/json"})
    not_numeric = posthog.post("/posthog/api/projects/abc/query/", json={})
    other_path = posthog.get("/posthog/api/projects/1/insights/")
    wrong_method = posthog.get(QUERY_PATH)

    assert broken.status_code == 400
    assert (broken.json()["type"], broken.json()["code"]) == ("validation_error", "parse_error")
    assert not_numeric.status_code == 404
    assert not_numeric.json() == {
        "type": "invalid_request",
        "code": "not_found",
        "detail": "Not found.",
        "attr": None,
    }
    assert other_path.status_code == 404
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


def test_rate_limit_fault_is_throttled_error_with_retry_after(
    control: httpx.Client, posthog: httpx.Client
) -> None:
    control.post("/_sim/faults", json={"service": "posthog", "kind": "429", "count": 1, "retry_after": 3})

    limited = _ask(posthog, "SELECT count() FROM events")
    after = _ask(posthog, "SELECT count() FROM events")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json() == {
        "type": "throttled_error",
        "code": "throttled",
        "detail": "Request was throttled. Expected available in 3 seconds.",
        "attr": None,
    }
    assert after.status_code == 200


def test_rate_limit_fault_defaults_to_one_second(control: httpx.Client, posthog: httpx.Client) -> None:
    control.post("/_sim/faults", json={"service": "posthog", "kind": "429", "count": 1})
    limited = _ask(posthog, "SELECT count() FROM events")
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["detail"] == "Request was throttled. Expected available in 1 second."


def test_5xx_fault_is_a_server_error_and_changes_nothing(
    control: httpx.Client, posthog: httpx.Client
) -> None:
    control.post(
        "/_sim/faults", json={"service": "posthog", "kind": "5xx", "path_contains": "/query/", "count": 1}
    )
    failed = _ask(posthog, "SELECT count() FROM events")
    retried = _ask(posthog, "SELECT count() FROM events")

    assert failed.status_code == 503
    assert failed.json() == {
        "type": "server_error",
        "code": "error",
        "detail": "A server error occurred.",
        "attr": None,
    }
    assert retried.status_code == 200
    log = control.get("/_sim/requests", params={"service": "posthog"}).json()["requests"]
    assert [(e["fault"], e["status"]) for e in log] == [("5xx", 503), (None, 200)]
    assert log[0]["body"]["query"]["kind"] == "HogQLQuery"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"property": "$app_version", "value": "1", "per_minute": 1}, "project_id"),
        ({"project_id": "abc", "property": "$app_version", "value": "1", "per_minute": 1}, "project_id"),
        ({"project_id": 1, "value": "1", "per_minute": 1}, "property"),
        ({"project_id": 1, "property": "$app_version", "per_minute": 1}, "value"),
        ({"project_id": 1, "property": "$app_version", "value": "1", "per_minute": -1}, "per_minute"),
        ({"project_id": 1, "property": "p", "value": "1", "per_minute": 1, "start": 10, "stop": 5}, "stop"),
    ],
)
def test_bad_stream_registrations_are_400(control: httpx.Client, body: dict[str, Any], error: str) -> None:
    response = control.post("/_sim/posthog/exceptions", json=body)
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_reset_forgets_streams(control: httpx.Client) -> None:
    _stream(control)
    control.post("/_sim/reset")
    assert control.get("/_sim/posthog/exceptions").json()["exceptions"] == []


def test_parser_reads_gatekeepers_query() -> None:
    parsed = parse(
        "SELECT count() AS exceptions FROM events WHERE event = '$exception' "
        "AND timestamp > now() - INTERVAL 2 HOUR AND properties.$app_version = 'a\\'b\\\\c' AND "
        "properties.$environment = 'it''s'"
    )
    assert parsed.column == "exceptions"
    assert parsed.event == "$exception"
    assert parsed.window_seconds == 7200
    assert parsed.properties == (("$app_version", "a'b\\c"), ("$environment", "it's"))
    assert parsed.limit is None


@pytest.mark.parametrize("query", ["SELECT count() FROM events WHERE", "SELECT count() FROM events LIMIT x"])
def test_parser_rejects_incomplete_queries(query: str) -> None:
    with pytest.raises(HogQLError):
        parse(query)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ("'a\\'b'", "a'b"),
        ("'it''s'", "it's"),
        ("'back\\\\slash'", "back\\slash"),
        ("'line\\nbreak\\ttab'", "line\nbreak\ttab"),
        ("'\\q'", "q"),
    ],
)
def test_string_literals_use_clickhouse_escapes(literal: str, value: str) -> None:
    parsed = parse(COUNT_WHERE_P + literal)
    assert parsed.properties == (("p", value),)
