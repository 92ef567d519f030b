"""The simulated Datadog metrics query API against docs/vendor-apis.md §6.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator.datadog import QueryError, parse_query

QUERY = "/datadog/api/v1/query"
KEYS = {"DD-API-KEY": "dd-api", "DD-APPLICATION-KEY": "dd-app"}
SCOPED = "sum:next.server.request.error{deployment_id:dpl_a,env:production}.as_rate()"


@pytest.fixture
def datadog(simulator_process) -> Iterator[httpx.Client]:
    with simulator_process.client(headers=KEYS) as client:
        yield client


def _series(control: httpx.Client, **body: Any) -> dict[str, Any]:
    response = control.post("/_sim/datadog/series", json={"tag": "deployment_id:dpl_a", **body})
    assert response.status_code == 201, response.text
    return response.json()


def _base() -> int:
    """An hour boundary two to three hours ago: series and queries there are complete and exact,
    and every grid (60 s, 300 s) lines up with it."""
    return (int(time.time()) // 3600) * 3600 - 7200


def _query(datadog: httpx.Client, start: int, end: int, query: str = SCOPED) -> httpx.Response:
    return datadog.get(QUERY, params={"from": start, "to": end, "query": query})


def test_matching_scope_answers_the_documented_time_series_shape(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    base = _base()
    _series(control, value=0.02, start=base)

    response = _query(datadog, base + 1, base + 600)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["res_type"] == "time_series"
    assert body["query"] == SCOPED
    assert (body["from_date"], body["to_date"]) == ((base + 1) * 1000, (base + 600) * 1000)
    assert body["group_by"] == []
    assert body["message"] == ""
    assert (body["times"], body["values"]) == ([], [])
    [series] = body["series"]
    # The 60 s grid inside [from, to]: base+60 ... base+600.
    assert series["pointlist"] == [[(base + 60 * k) * 1000, 0.02] for k in range(1, 11)]
    assert series["length"] == 10
    assert series["interval"] == 60
    assert series["metric"] == series["display_name"] == "next.server.request.error"
    assert series["expression"] == SCOPED
    assert series["scope"] == "deployment_id:dpl_a,env:production"
    assert series["aggr"] == "sum"
    assert series["tag_set"] == []
    assert series["start"] == (base + 60) * 1000
    assert series["end"] == (base + 600) * 1000 - 1000
    assert series["unit"] == [None, None]


def test_later_phases_override_from_their_start_until_their_stop(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    base = _base()
    _series(control, value=1.0, start=base)
    _series(control, value=5.0, start=base + 300)
    _series(control, value=9.0, start=base + 120, stop=base + 180)

    [series] = _query(datadog, base, base + 420).json()["series"]

    values = {(at // 1000 - base): value for at, value in series["pointlist"]}
    assert values == {0: 1.0, 60: 1.0, 120: 9.0, 180: 1.0, 240: 1.0, 300: 5.0, 360: 5.0, 420: 5.0}
    listed = control.get("/_sim/datadog/series").json()["series"]
    assert [p["value"] for p in listed[0]["phases"]] == [1.0, 9.0, 5.0]  # ordered by start
    assert listed[0]["value_now"] == 5.0


def test_points_are_on_the_registered_interval_and_only_where_data_exists(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    base = _base()
    _series(control, value=3.5, start=base + 600, stop=base + 1800, interval=300)

    [series] = _query(datadog, base, base + 3600).json()["series"]

    assert series["interval"] == 300
    assert [at // 1000 - base for at, _ in series["pointlist"]] == [600, 900, 1200, 1500]


def test_no_matching_tag_or_metric_is_an_empty_series_list(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    base = _base()
    _series(control, value=1.0, start=base, metric="next.server.request.error")
    _series(control, tag="deployment_id:dpl_other", value=2.0, start=base)

    other_deployment = _query(datadog, base, base + 600, "sum:next.server.request.error{deployment_id:dpl_b}")
    other_metric = _query(datadog, base, base + 600, "avg:other.metric{deployment_id:dpl_a}")
    before_data = _query(datadog, base - 3600, base - 60)
    tag_only = _query(datadog, base, base + 600, "avg:any.metric{deployment_id:dpl_other}")

    for response in (other_deployment, other_metric, before_data):
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert response.json()["series"] == []
    [series] = tag_only.json()["series"]  # a series without a metric matches any metric
    assert series["aggr"] == "avg"
    assert {value for _, value in series["pointlist"]} == {2.0}


def test_the_simulated_clock_decides_what_exists(control: httpx.Client, datadog: httpx.Client) -> None:
    now = int(control.get("/_sim/clock").json()["now"])
    _series(control, value=7.0)  # starts at the simulated now
    window = {"from": now - 60, "to": now + 3600, "query": SCOPED}

    before = datadog.get(QUERY, params=window).json()["series"]
    control.post("/_sim/clock", json={"advance": 600})
    after = datadog.get(QUERY, params=window).json()["series"]

    assert sum(s["length"] for s in before) <= 1  # nothing from the future yet
    assert 9 <= after[0]["length"] <= 11
    assert max(at for at, _ in after[0]["pointlist"]) <= (now + 601) * 1000


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"to": "2", "query": SCOPED}, "Missing required parameter 'from'"),
        ({"from": "1", "query": SCOPED}, "Missing required parameter 'to'"),
        ({"from": "1", "to": "2"}, "Missing required parameter 'query'"),
        ({"from": "yesterday", "to": "2", "query": SCOPED}, "Invalid parameter 'from'"),
        ({"from": "1", "to": "1.5", "query": SCOPED}, "Invalid parameter 'to'"),
        ({"from": "5", "to": "5", "query": SCOPED}, "must be greater than 'from'"),
        ({"from": "1", "to": "2", "query": "sum:trace.errors"}, "Error parsing query"),
        ({"from": "1", "to": "2", "query": "sum:trace.errors{env:prod"}, "Error parsing query"),
        ({"from": "1", "to": "2", "query": "sum:trace.errors{}"}, "Error parsing query"),
        ({"from": "1", "to": "2", "query": "{env:prod}"}, "Error parsing query"),
    ],
)
def test_bad_parameters_are_400_with_an_errors_list(
    control: httpx.Client, datadog: httpx.Client, params: dict[str, str], fragment: str
) -> None:
    response = datadog.get(QUERY, params=params)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["errors"]
    [message] = body["errors"]
    assert fragment in message


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"DD-API-KEY": "dd-api"},
        {"DD-APPLICATION-KEY": "dd-app"},
        {"DD-API-KEY": "", "DD-APPLICATION-KEY": "x"},
    ],
)
def test_missing_keys_are_403_forbidden(
    control: httpx.Client, simulator_process, headers: dict[str, str]
) -> None:
    with simulator_process.client(headers=headers) as client:
        response = client.get(QUERY, params={"from": 1, "to": 2, "query": SCOPED})
    assert response.status_code == 403
    assert response.json() == {"errors": ["Forbidden"]}


def test_every_answer_carries_relative_rate_limit_headers(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    first = _query(datadog, 1, 2)
    second = datadog.get("/datadog/api/v1/nothing")

    assert second.status_code == 404
    assert second.json() == {"errors": ["Not found"]}
    for response in (first, second):
        assert response.headers["X-RateLimit-Limit"] == "1600"
        assert response.headers["X-RateLimit-Period"] == "3600"
        assert response.headers["X-RateLimit-Name"]
        assert 0 <= int(response.headers["X-RateLimit-Reset"]) <= 3600  # seconds left, not epoch
    assert int(second.headers["X-RateLimit-Remaining"]) < int(first.headers["X-RateLimit-Remaining"])


def test_rate_limit_fault_sets_the_reset_in_seconds_remaining(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    fault = control.post(
        "/_sim/faults", json={"service": "datadog", "kind": "429", "count": 1, "reset_after": 7}
    )
    assert fault.status_code == 201

    limited = _query(datadog, 1, 2)
    after = _query(datadog, 1, 2)

    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Reset"] == "7"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Limit"] == "1600"
    assert "Retry-After" not in limited.headers
    [message] = limited.json()["errors"]
    assert "Rate limit" in message
    assert after.status_code == 200


def test_5xx_timeout_and_reset_faults_apply_and_are_logged(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    control.post("/_sim/faults", json={"service": "datadog", "kind": "5xx", "count": 1})
    control.post("/_sim/faults", json={"service": "datadog", "kind": "5xx", "status": 500, "count": 1})
    control.post("/_sim/faults", json={"service": "datadog", "kind": "timeout", "delay": 2, "count": 1})
    control.post("/_sim/faults", json={"service": "datadog", "kind": "reset", "count": 1})

    unavailable = _query(datadog, 1, 2)
    internal = _query(datadog, 1, 2)
    with pytest.raises(httpx.ReadTimeout):
        datadog.get(QUERY, params={"from": 1, "to": 2, "query": SCOPED}, timeout=0.4)
    with pytest.raises(httpx.TransportError):
        _query(datadog, 1, 2)

    assert unavailable.status_code == 503
    assert unavailable.json() == {"errors": ["Service Unavailable"]}
    assert internal.status_code == 500
    assert internal.json() == {"errors": ["Internal Server Error"]}
    log = control.get("/_sim/requests", params={"service": "datadog"}).json()["requests"]
    assert [(e["fault"], e["status"]) for e in log] == [
        ("5xx", 503),
        ("5xx", 500),
        ("timeout", 504),
        ("reset", None),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"value": 1.0}, "tag: required"),
        ({"tag": "deployment_id:x"}, "value: required"),
        ({"tag": "deployment_id:x", "value": "high"}, "value: expected a number"),
        ({"tag": "deployment_id:x", "value": 1, "interval": 0}, "interval"),
        ({"tag": "deployment_id:x", "value": 1, "start": 100, "stop": 50}, "stop"),
    ],
)
def test_bad_series_registrations_are_400(control: httpx.Client, body: dict[str, Any], error: str) -> None:
    response = control.post("/_sim/datadog/series", json=body)
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_reset_forgets_series(control: httpx.Client) -> None:
    _series(control, value=1.0)
    assert len(control.get("/_sim/datadog/series").json()["series"]) == 1
    control.post("/_sim/reset")
    assert control.get("/_sim/datadog/series").json()["series"] == []


@pytest.mark.parametrize(
    ("query", "metric", "scope", "tags"),
    [
        ("sum:a.b{deployment_id:x}.as_count()", "a.b", "deployment_id:x", {"deployment_id:x"}),
        (
            "a.b{env:prod, version:1.4.2} by {host}",
            "a.b",
            "env:prod,version:1.4.2",
            {"env:prod", "version:1.4.2"},
        ),
        ("sum:a{x:1}.as_count() / sum:b{x:1}.as_count()", "a", "x:1", {"x:1"}),
        ("top(avg:a{x:1 AND y:2}, 10, 'mean', 'desc')", "a", "x:1 AND y:2", {"x:1", "y:2"}),
    ],
)
def test_query_parser_reads_the_first_term(query: str, metric: str, scope: str, tags: set[str]) -> None:
    parsed = parse_query(query)
    assert (parsed.metric, parsed.scope, set(parsed.tags)) == (metric, scope, tags)


@pytest.mark.parametrize("query", ["", "avg:a", "avg:a{x:1", "avg:a{x:1} ; drop", "weird:a{x:1}"])
def test_query_parser_rejects_what_datadog_would_not_parse(query: str) -> None:
    with pytest.raises(QueryError):
        parse_query(query)


def test_long_ranges_are_rolled_up_to_at_most_1500_points(
    control: httpx.Client, datadog: httpx.Client
) -> None:
    base = _base() - 2 * 86400
    _series(control, value=4.0, start=base, stop=base + 2 * 86400)

    [series] = _query(datadog, base, base + 2 * 86400).json()["series"]

    assert series["interval"] == 120  # 2880 one-minute points would be too many
    assert series["length"] == len(series["pointlist"]) == 1440
    assert all(at % 120_000 == 0 for at, _ in series["pointlist"])
