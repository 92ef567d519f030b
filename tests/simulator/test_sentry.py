"""The simulated Sentry sessions endpoint against docs/vendor-apis.md §3.2."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

SESSIONS = "/sentry/api/0/organizations/acme/sessions/"
HOUR = 3600


@pytest.fixture
def sentry(simulator_process, control: httpx.Client) -> httpx.Client:
    # Sentry answers only for an organisation, project and environment it has.
    known = {"org": "acme", "slug": "shop-web", "id": 4507, "environments": ["production"]}
    assert control.post("/_sim/sentry/projects", json=known).status_code == 201
    with simulator_process.client(headers={"Authorization": "Bearer sntrys_test"}) as client:
        yield client


def _traffic(control: httpx.Client, release: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "org": "acme",
        "project": "shop-web",
        "project_id": 4507,
        "environment": "production",
        "release": release,
        "sessions_per_minute": 600,
        "crash_rate": 0.01,
        **overrides,
    }
    response = control.post("/_sim/sentry/traffic", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _expected(spm: float, rate: float, seconds: float) -> tuple[int, int]:
    sessions = math.floor(spm / 60 * seconds)
    return sessions, math.floor(sessions * rate + 0.5)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window() -> tuple[float, float]:
    """Traffic that started and stopped inside one past hour, so counts are exact and final."""
    hour = (int(time.time()) // HOUR - 3) * HOUR
    return hour + 600.0, hour + 1800.0


def test_group_by_release_and_status_matches_the_traffic_formula(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "good", start=start, stop=stop, crash_rate=0.001, sessions_per_minute=6000)
    _traffic(control, "bad", start=start, stop=stop, crash_rate=0.03, sessions_per_minute=6000)
    _traffic(control, "other", start=start, stop=stop)

    response = sentry.get(
        SESSIONS,
        params=[
            ("field", "sum(session)"),
            ("groupBy", "release"),
            ("groupBy", "session.status"),
            ("query", 'release:["good","bad"]'),
            ("project", "4507"),
            ("environment", "production"),
            ("start", _iso(start - 1200)),
            ("end", _iso(stop + 60)),
            ("interval", "1h"),
        ],
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert "totals" not in body
    groups = {(g["by"]["release"], g["by"]["session.status"]): g for g in body["groups"]}
    assert set(groups) == {
        (r, s) for r in ("good", "bad") for s in ("healthy", "errored", "crashed", "abnormal")
    }
    for release, rate in (("good", 0.001), ("bad", 0.03)):
        sessions, crashed = _expected(6000, rate, stop - start)
        assert groups[(release, "crashed")]["totals"]["sum(session)"] == crashed
        assert groups[(release, "abnormal")]["totals"]["sum(session)"] == 0
        total = sum(groups[(release, s)]["totals"]["sum(session)"] for s in ("healthy", "errored", "crashed"))
        assert total == sessions
        series = groups[(release, "crashed")]["series"]["sum(session)"]
        assert sum(series) == crashed
        assert len(series) == len(body["intervals"])


def test_crash_free_rate_without_group_by_and_range_rounding(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "r1", start=start, stop=stop)

    body = sentry.get(
        SESSIONS,
        params={
            "field": [
                "sum(session)",
                "crash_free_rate(session)",
                "crash_rate(session)",
                "count_unique(user)",
            ],
            "query": "release:r1",
            "start": _iso(start + 5).replace("Z", "+00:00"),
            "end": _iso(stop - 5),
            "interval": "1h",
        },
    ).json()

    hour = int(start) // HOUR * HOUR
    assert body["start"] == _iso(hour)
    assert body["end"] == _iso(hour + HOUR)
    assert body["intervals"] == [_iso(hour)]
    [group] = body["groups"]
    assert group["by"] == {}
    sessions, crashed = _expected(600, 0.01, stop - start)
    assert group["totals"]["sum(session)"] == sessions
    assert group["totals"]["crash_rate(session)"] == pytest.approx(crashed / sessions)
    assert group["totals"]["crash_free_rate(session)"] == pytest.approx(1 - crashed / sessions)
    assert group["totals"]["count_unique(user)"] == 0


def test_stats_period_counts_recent_traffic_in_minute_buckets(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    _traffic(control, "live", start=time.time() - 600, sessions_per_minute=120, crash_rate=0.5)
    body = sentry.get(
        SESSIONS,
        params={"field": "sum(session)", "groupBy": "release", "statsPeriod": "1h", "interval": "5m"},
    ).json()
    [group] = body["groups"]
    assert len(body["intervals"]) in (12, 13)
    assert all(at.endswith("Z") for at in body["intervals"])
    assert 1190 <= group["totals"]["sum(session)"] <= 1210
    assert group["series"]["sum(session)"][0] == 0


def test_no_data_shapes(control: httpx.Client, sentry: httpx.Client) -> None:
    grouped = sentry.get(
        SESSIONS, params={"field": "sum(session)", "groupBy": "release", "statsPeriod": "1h"}
    )
    ungrouped = sentry.get(
        SESSIONS, params={"field": ["sum(session)", "crash_free_rate(session)"], "statsPeriod": "1h"}
    )
    by_status = sentry.get(
        SESSIONS, params={"field": "sum(session)", "groupBy": "session.status", "statsPeriod": "1h"}
    )

    assert grouped.json()["groups"] == []
    [group] = ungrouped.json()["groups"]
    assert group["by"] == {}
    assert group["totals"] == {"sum(session)": 0, "crash_free_rate(session)": None}
    assert all(value is None for value in group["series"]["crash_free_rate(session)"])
    statuses = [g["by"]["session.status"] for g in by_status.json()["groups"]]
    assert sorted(statuses) == ["abnormal", "crashed", "errored", "healthy"]
    assert all(g["totals"]["sum(session)"] == 0 for g in by_status.json()["groups"])


def test_empty_query_means_every_release_and_environment_filters(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "a", start=start, stop=stop)
    _traffic(control, "b", start=start, stop=stop)
    _traffic(control, "c", start=start, stop=stop, environment="staging")
    params = {"field": "sum(session)", "groupBy": "release", "start": _iso(start), "end": _iso(stop)}

    everything = sentry.get(SESSIONS, params=params).json()
    production = sentry.get(SESSIONS, params={**params, "environment": "production"}).json()
    control.post("/_sim/sentry/projects", json={"org": "acme", "slug": "other", "id": 999})
    by_id = sentry.get(SESSIONS, params={**params, "project": "4507"}).json()
    other_project = sentry.get(SESSIONS, params={**params, "project": "999"}).json()

    assert sorted(g["by"]["release"] for g in everything["groups"]) == ["a", "b", "c"]
    assert sorted(g["by"]["release"] for g in production["groups"]) == ["a", "b"]
    assert len(by_id["groups"]) == 3
    assert other_project["groups"] == []


def test_pagination_follows_link_cursors(control: httpx.Client, sentry: httpx.Client) -> None:
    start, stop = _window()
    for release in ("r1", "r2", "r3"):
        _traffic(control, release, start=start, stop=stop)
    params = {
        "field": "sum(session)",
        "groupBy": "release",
        "start": _iso(start),
        "end": _iso(stop),
        "per_page": 2,
    }

    first = sentry.get(SESSIONS, params=params)
    assert first.links["next"]["results"] == "true"
    assert first.links["previous"]["results"] == "false"
    # Sentry's offset cursors: "0:<row offset>:<is_prev>".
    assert first.links["next"]["cursor"] == "0:2:0"
    second = sentry.get(SESSIONS, params={**params, "cursor": first.links["next"]["cursor"]})
    assert second.links["next"]["results"] == "false"
    assert second.links["previous"]["cursor"] == "0:0:1"
    # The URL in the header works as is, prefix included.
    followed = sentry.get(first.links["next"]["url"])

    releases = [g["by"]["release"] for g in first.json()["groups"] + second.json()["groups"]]
    assert sorted(releases) == ["r1", "r2", "r3"]
    assert followed.json()["groups"] == second.json()["groups"]


def test_traffic_phase_changes_the_crash_rate_from_then_on(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "p", start=start, stop=stop, crash_rate=0.0, sessions_per_minute=600)
    phase = control.post(
        "/_sim/sentry/traffic/phase",
        json={
            "org": "acme",
            "environment": "production",
            "release": "p",
            "at": start + 300,
            "crash_rate": 0.1,
        },
    )
    assert phase.status_code == 201
    body = sentry.get(
        SESSIONS,
        params={
            "field": "sum(session)",
            "groupBy": "session.status",
            "start": _iso(start),
            "end": _iso(stop),
        },
    ).json()
    crashed = next(g for g in body["groups"] if g["by"]["session.status"] == "crashed")
    assert crashed["totals"]["sum(session)"] == _expected(600, 0.1, stop - start - 300)[1]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"statsPeriod": "1h"}, 'Request is missing a "field"'),
        ({"field": "foo", "statsPeriod": "1h"}, 'Invalid field: "foo"'),
        (
            {"field": "crash_rate(session)", "groupBy": "session.status", "statsPeriod": "1h"},
            "Cannot group field crash_rate(session) by session.status",
        ),
        (
            {"field": "crash_free_rate(session)", "groupBy": "session.status", "statsPeriod": "1h"},
            "Cannot group field crash_free_rate(session) by session.status",
        ),
        (
            {"field": "sum(session)", "query": "release:web@*", "statsPeriod": "1h"},
            "Invalid condition: wildcard search is not supported",
        ),
        (
            {"field": "sum(session)", "interval": "2d", "statsPeriod": "7d"},
            "The interval has to be less than one day.",
        ),
    ],
)
def test_bad_requests_are_400_with_detail(
    control: httpx.Client, sentry: httpx.Client, params: dict[str, str], detail: str
) -> None:
    response = sentry.get(SESSIONS, params=params)
    assert response.status_code == 400
    assert response.json() == {"detail": detail}


def test_too_many_buckets_is_400(control: httpx.Client, sentry: httpx.Client) -> None:
    response = sentry.get(SESSIONS, params={"field": "sum(session)", "statsPeriod": "30d", "interval": "1m"})
    assert response.status_code == 400
    assert "too many" in response.json()["detail"]


def test_auth_and_rate_limit_headers(control: httpx.Client, sentry: httpx.Client, simulator_process) -> None:
    ok = sentry.get(SESSIONS, params={"field": "sum(session)", "statsPeriod": "1h"})
    with simulator_process.client() as anonymous:
        denied = anonymous.get(SESSIONS, params={"field": "sum(session)"})

    for name in ("Limit", "Remaining", "Reset", "ConcurrentLimit", "ConcurrentRemaining"):
        assert f"X-Sentry-Rate-Limit-{name}" in ok.headers
    assert int(ok.headers["X-Sentry-Rate-Limit-Reset"]) >= int(time.time())
    assert denied.status_code == 401
    assert "detail" in denied.json()


def test_rate_limit_fault_is_html_typed_json_without_retry_after(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    control.post("/_sim/faults", json={"service": "sentry", "kind": "429", "count": 1, "retry_after": 5})
    response = sentry.get(SESSIONS, params={"field": "sum(session)", "statsPeriod": "1h"})

    assert response.status_code == 429
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.json() == {
        "detail": "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"
    }
    assert "Retry-After" not in response.headers
    assert response.headers["X-Sentry-Rate-Limit-Remaining"] == "0"
    assert (
        int(response.headers["X-Sentry-Rate-Limit-Reset"])
        <= time.time() + timedelta(seconds=2).total_seconds()
    )


# --- error events (§3.4) -----------------------------------------------------------------------

EVENTS = "/sentry/api/0/organizations/acme/events/"


def _events(sentry: httpx.Client, **params: Any) -> httpx.Response:
    return sentry.get(EVENTS, params={"dataset": "errors", "field": ["release", "count()"], **params})


def test_error_events_per_release_in_the_documented_table_shape(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "web@1.4.2", start=start, stop=stop, errors_per_minute=60)
    _traffic(control, "web@1.4.1", start=start, stop=stop, errors_per_minute=120)

    response = _events(
        sentry,
        query='release:"web@1.4.2" event.type:error',
        project="4507",
        environment="production",
        start=_iso(start - 600),
        end=_iso(stop + 600),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == [{"release": "web@1.4.2", "count()": 1200}]
    assert body["meta"]["fields"] == {"release": "string", "count()": "integer"}
    assert body["meta"]["units"] == {"release": None, "count()": None}
    assert "X-Sentry-Rate-Limit-Remaining" in response.headers
    unquoted = _events(sentry, query="release:web@1.4.1", start=_iso(start), end=_iso(stop)).json()
    assert unquoted["data"] == [{"release": "web@1.4.1", "count()": 2400}]


def test_error_events_are_counted_in_start_inclusive_end_exclusive_ranges(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "r1", start=start, stop=stop, errors_per_minute=60)
    _traffic(control, "r2", start=start, stop=stop, errors_per_minute=6)

    part = _events(sentry, start=_iso(start + 300), end=_iso(start + 600)).json()["data"]
    total = sentry.get(
        EVENTS, params={"dataset": "errors", "field": "count()", "start": _iso(start), "end": _iso(stop)}
    ).json()["data"]
    sorted_desc = _events(sentry, start=_iso(start), end=_iso(stop), sort="-count()").json()["data"]

    assert part == [{"release": "r1", "count()": 300}, {"release": "r2", "count()": 30}]
    assert total == [{"count()": 1200 + 120}]
    assert [row["release"] for row in sorted_desc] == ["r1", "r2"]


def test_error_events_without_data(control: httpx.Client, sentry: httpx.Client) -> None:
    start, stop = _window()
    _traffic(control, "quiet", start=start, stop=stop)  # sessions, no error events

    grouped = _events(sentry, statsPeriod="24h").json()
    ungrouped = sentry.get(
        EVENTS, params={"dataset": "errors", "field": "count()", "statsPeriod": "24h"}
    ).json()
    spans = sentry.get(EVENTS, params={"dataset": "spans", "field": "count()", "statsPeriod": "24h"}).json()

    assert grouped["data"] == []
    assert ungrouped["data"] == [{"count()": 0}]
    assert spans["data"] == [{"count()": 0}]


def test_error_events_filter_by_project_environment_and_event_type(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    start, stop = _window()
    _traffic(control, "a", start=start, stop=stop, errors_per_minute=60)
    _traffic(control, "a", start=start, stop=stop, errors_per_minute=600, environment="staging")
    params = {"start": _iso(start), "end": _iso(stop), "field": ["environment", "count()"]}

    by_env = _events(sentry, **params).json()["data"]
    production = _events(sentry, environment="production", **params).json()["data"]
    control.post("/_sim/sentry/projects", json={"org": "acme", "slug": "other", "id": 999})
    by_id = _events(sentry, project="4507", **params).json()["data"]
    other_project = _events(sentry, project="999", **params).json()["data"]
    transactions = _events(sentry, query="event.type:transaction", **params).json()["data"]
    negated = _events(sentry, query="!environment:staging release:a*", **params).json()["data"]

    assert by_env == [
        {"environment": "production", "count()": 1200},
        {"environment": "staging", "count()": 12000},
    ]
    assert production == [{"environment": "production", "count()": 1200}]
    assert len(by_id) == 2
    assert other_project == []
    assert transactions == []
    assert negated == [{"environment": "production", "count()": 1200}]


def test_error_events_follow_the_simulated_clock_and_phases(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    now = control.get("/_sim/clock").json()["now"]
    registered = _traffic(control, "live", start=now, errors_per_minute=60)
    assert registered["phases"][0]["errors_per_minute"] == 60

    before = _events(sentry, statsPeriod="1h").json()["data"]
    control.post("/_sim/clock", json={"advance": 600})
    after = _events(sentry, statsPeriod="1h").json()["data"]
    phase = control.post(
        "/_sim/sentry/traffic/phase",
        json={"org": "acme", "environment": "production", "release": "live", "errors_per_minute": 600},
    )
    control.post("/_sim/clock", json={"advance": 60})
    later = _events(sentry, statsPeriod="1h").json()["data"]

    assert sum(row["count()"] for row in before) <= 1
    assert 599 <= after[0]["count()"] <= 601
    assert phase.status_code == 201
    assert 599 + 600 <= later[0]["count()"] <= 601 + 601
    [listed] = control.get("/_sim/sentry/traffic").json()["traffic"]
    assert listed["so_far"]["errors"] == later[0]["count()"]


def test_error_only_traffic_needs_no_session_rate(control: httpx.Client) -> None:
    response = control.post(
        "/_sim/sentry/traffic",
        json={"org": "acme", "project": "shop-web", "release": "r", "errors_per_minute": 5},
    )
    assert response.status_code == 201
    assert response.json()["phases"][0]["sessions_per_minute"] == 0
    bad = control.post(
        "/_sim/sentry/traffic",
        json={"org": "acme", "project": "shop-web", "release": "r", "errors_per_minute": -1},
    )
    assert bad.status_code == 400
    assert "errors_per_minute" in bad.json()["error"]


def test_error_events_paginate_with_link_cursors(control: httpx.Client, sentry: httpx.Client) -> None:
    start, stop = _window()
    for release in ("r1", "r2", "r3"):
        _traffic(control, release, start=start, stop=stop, errors_per_minute=6)
    params = {"start": _iso(start), "end": _iso(stop), "per_page": 2}

    first = _events(sentry, **params)
    second = sentry.get(first.links["next"]["url"])

    assert first.links["next"]["results"] == "true"
    assert second.links["next"]["results"] == "false"
    releases = [row["release"] for row in first.json()["data"] + second.json()["data"]]
    assert releases == ["r1", "r2", "r3"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"field": "count()"}, 'Request is missing a "dataset"'),
        ({"dataset": "nope", "field": "count()"}, "dataset must be one of: "),
        ({"dataset": "errors"}, "No columns selected"),
        ({"dataset": "errors", "field": "count_if(x)"}, "Invalid field: count_if(x)"),
        (
            {"dataset": "errors", "field": "count()", "sort": "-release"},
            "Cannot sort by a field that is not selected.",
        ),
        (
            {"dataset": "errors", "field": "count()", "query": "browser:firefox"},
            "Invalid search filter: browser",
        ),
        ({"dataset": "errors", "field": "count()", "query": "release:"}, "Invalid query: empty value"),
        ({"dataset": "errors", "field": "count()", "start": "2026-01-01T00:00:00Z"}, "start and end"),
        ({"dataset": "errors", "field": "count()", "statsPeriod": "soon"}, "Invalid statsPeriod"),
        ({"dataset": "errors", "field": [f"f{i}" for i in range(21)]}, "up to 20 fields"),
    ],
)
def test_bad_event_queries_are_400_with_detail(
    control: httpx.Client, sentry: httpx.Client, params: dict[str, Any], detail: str
) -> None:
    response = sentry.get(EVENTS, params=params)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["detail"]
    assert body["detail"].startswith(detail) or detail in body["detail"]


def test_events_need_a_token(control: httpx.Client, simulator_process) -> None:
    with simulator_process.client() as anonymous:
        denied = anonymous.get(EVENTS, params={"dataset": "errors", "field": "count()"})
    assert denied.status_code == 401
    assert denied.json() == {"detail": "Authentication credentials were not provided."}


def test_faults_on_the_events_endpoint_leave_sessions_alone(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    control.post(
        "/_sim/faults", json={"service": "sentry", "kind": "429", "path_contains": "/events/", "count": 1}
    )
    control.post(
        "/_sim/faults",
        json={"service": "sentry", "kind": "5xx", "status": 502, "path_contains": "/events/", "count": 1},
    )

    sessions_ok = sentry.get(SESSIONS, params={"field": "sum(session)", "statsPeriod": "1h"})
    limited = _events(sentry, statsPeriod="1h")
    failed = _events(sentry, statsPeriod="1h")
    recovered = _events(sentry, statsPeriod="1h")

    assert sessions_ok.status_code == 200
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "text/html; charset=utf-8"
    assert "Retry-After" not in limited.headers
    assert limited.headers["X-Sentry-Rate-Limit-Remaining"] == "0"
    assert failed.status_code == 502
    assert "detail" in failed.json()
    assert recovered.status_code == 200


# --- projects, ids and refusals (§3.1, §3.2) -------------------------------------------------


def test_a_project_resolves_by_slug_or_id_to_its_numeric_id(sentry: httpx.Client) -> None:
    by_slug = sentry.get("/sentry/api/0/projects/acme/shop-web/")
    by_id = sentry.get("/sentry/api/0/projects/acme/4507/")

    assert by_slug.status_code == by_id.status_code == 200
    assert (by_slug.json()["id"], by_slug.json()["slug"]) == ("4507", "shop-web")
    assert by_id.json()["slug"] == "shop-web"
    assert by_slug.json()["organization"]["slug"] == "acme"
    environments = sentry.get("/sentry/api/0/projects/acme/shop-web/environments/")
    assert [e["name"] for e in environments.json()] == ["production"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/sentry/api/0/projects/acme/nope/", 404), ("/sentry/api/0/projects/nobody/shop-web/", 404)],
)
def test_an_unknown_project_or_org_is_a_404(sentry: httpx.Client, path: str, status: int) -> None:
    response = sentry.get(path)

    assert response.status_code == status
    assert response.json() == {"detail": "The requested resource does not exist"}


def test_a_renamed_project_redirects_its_old_slug(control: httpx.Client, sentry: httpx.Client) -> None:
    control.post("/_sim/sentry/projects", json={"org": "acme", "slug": "storefront", "id": 4507})

    moved = sentry.get("/sentry/api/0/projects/acme/shop-web/")

    assert moved.status_code == 302
    assert moved.json()["detail"]["extra"]["slug"] == "storefront"
    assert moved.headers["Location"].endswith("/projects/acme/storefront/")
    assert sentry.get("/sentry/api/0/projects/acme/storefront/").json()["id"] == "4507"


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"project": "shop-web"}, 400, "Invalid project parameter. Values must be numbers."),
        ({"project": "999"}, 403, "You do not have permission to perform this action."),
        ({"project": "4507", "environment": "staging"}, 404, "The requested resource does not exist"),
    ],
)
def test_data_queries_refuse_as_sentry_does(
    sentry: httpx.Client, params: dict[str, str], status: int, detail: str
) -> None:
    base = {"field": "sum(session)", "statsPeriod": "1h"}
    sessions = sentry.get(SESSIONS, params={**base, **params})
    events = sentry.get(
        "/sentry/api/0/organizations/acme/events/",
        params={"field": "count()", "dataset": "errors", "statsPeriod": "1h", **params},
    )

    assert (sessions.status_code, sessions.json()) == (status, {"detail": detail})
    assert (events.status_code, events.json()) == (status, {"detail": detail})


def test_an_unknown_org_is_a_404_on_data_queries(sentry: httpx.Client) -> None:
    response = sentry.get(
        "/sentry/api/0/organizations/nobody/sessions/", params={"field": "sum(session)", "statsPeriod": "1h"}
    )

    assert response.status_code == 404


def test_a_token_without_project_read_cannot_look_projects_up(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    control.post("/_sim/sentry/scopes", json={"scopes": ["org:read"]})

    lookup = sentry.get("/sentry/api/0/projects/acme/shop-web/")
    data = sentry.get(SESSIONS, params={"field": "sum(session)", "project": "4507", "statsPeriod": "1h"})

    assert lookup.status_code == 403
    assert data.status_code == 200


def test_traffic_and_vercel_mappings_register_their_sentry_projects(
    control: httpx.Client, sentry: httpx.Client
) -> None:
    _traffic(control, "r1", org="beta", project="api", project_id=77, environment="staging")
    control.post(
        "/_sim/vercel/projects",
        json={"id": "prj_x", "name": "x", "sentry": {"org": "gamma", "project": "web", "project_id": 88}},
    )

    api = sentry.get("/sentry/api/0/projects/beta/api/").json()
    web = sentry.get("/sentry/api/0/projects/gamma/web/").json()

    assert (api["id"], api["environments"]) == ("77", ["staging"])
    assert (web["id"], web["environments"]) == ("88", ["production"])
