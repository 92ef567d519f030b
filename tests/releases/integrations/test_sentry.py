from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from releases.core.errors import ProviderError, ProviderTimeout
from releases.integrations.sentry.client import MAX_PAGES, SentryClient, SessionTotals, release_query
from tests.http import Vendor

NOW = 1_767_258_000.0
START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def sentry(vendor: Vendor, base_url: str = "https://sentry.test") -> SentryClient:
    return SentryClient(base_url, "sntrys_secret", transport=httpx.MockTransport(vendor), clock=lambda: NOW)


def group(release: str, sessions: object, crash_rate: object = 0.0) -> dict[str, Any]:
    """A release's group as Sentry answers ``groupBy=release`` with ``includeSeries=0``."""
    if sessions == 0 and crash_rate == 0.0:
        crash_rate = None  # a rate is null without data (docs/vendor-apis.md §3.2)
    return {
        "by": {"release": release},
        "totals": {"sum(session)": sessions, "crash_rate(session)": crash_rate},
    }


def sessions_page(*groups: dict[str, Any], link: str | None = None) -> httpx.Response:
    headers = {"Link": link} if link else {}
    body = {
        "start": "2026-01-01T09:00:00Z",
        "end": "2026-01-01T12:00:00Z",
        "intervals": [],
        "groups": list(groups),
    }
    return httpx.Response(200, json=body, headers=headers)


def next_link(cursor: str, results: bool = True) -> str:
    more = "true" if results else "false"
    return (
        '<https://sentry.test/api/0/organizations/acme/sessions/?cursor=0:0:1>; rel="previous"; '
        'results="false"; cursor="0:0:1", '
        f'<https://sentry.test/api/0/organizations/acme/sessions/?cursor={cursor}>; rel="next"; '
        f'results="{more}"; cursor="{cursor}"'
    )


def fetch(client: SentryClient, releases: list[str], environment: str | None = "production") -> dict:
    return client.release_sessions("acme", "4507", environment, releases, START, END)


# --- the request -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["https://sentry.test", "https://sentry.test/", "https://sentry.test/api/0/"]
)
def test_the_api_root_is_appended_once(base_url: str) -> None:
    vendor = Vendor(sessions_page())
    fetch(sentry(vendor, base_url), ["web@1.4.2"])
    assert vendor.last.url.path == "/api/0/organizations/acme/sessions/"


def test_it_sends_the_exact_query_parameters() -> None:
    vendor = Vendor(sessions_page())
    fetch(sentry(vendor), ["web@1.4.2", "web@1.4.1"])
    assert vendor.last.method == "GET"
    assert vendor.last.headers["Authorization"] == "Bearer sntrys_secret"
    assert vendor.last.url.params.multi_items() == [
        ("field", "sum(session)"),
        ("field", "crash_rate(session)"),
        ("groupBy", "release"),
        ("query", 'release:["web@1.4.2","web@1.4.1"]'),
        ("project", "4507"),
        ("environment", "production"),
        ("start", "2026-01-01T09:00:00Z"),
        ("end", "2026-01-01T12:00:00Z"),
        ("interval", "1h"),
        ("includeSeries", "0"),
        ("per_page", "100"),
    ]


def test_a_single_release_is_quoted_without_a_list() -> None:
    vendor = Vendor(sessions_page())
    fetch(sentry(vendor), ["web@1.4.2"])
    assert vendor.last.url.params["query"] == 'release:"web@1.4.2"'


def test_quotes_and_backslashes_inside_a_release_are_escaped() -> None:
    assert release_query(['a"b', "c\\d"]) == r'release:["a\"b","c\\d"]'


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_release_query_round_trips_any_release_names(releases: list[str]) -> None:
    query = release_query(releases)
    quoted = re.findall(r'"((?:\\.|[^"\\])*)"', query)
    assert [re.sub(r"\\(.)", r"\1", q, flags=re.DOTALL) for q in quoted] == releases


def test_times_are_sent_in_utc_with_a_z() -> None:
    vendor = Vendor(sessions_page())
    plus_two = timezone(timedelta(hours=2))
    sentry(vendor).release_sessions(
        "acme", "4507", None, ["a"], datetime(2026, 1, 1, 11, 0, 30, 999, tzinfo=plus_two), END, interval="5m"
    )
    assert vendor.last.url.params["start"] == "2026-01-01T09:00:30Z"
    assert vendor.last.url.params["interval"] == "5m"


def test_no_environment_means_no_environment_filter() -> None:
    vendor = Vendor(sessions_page())
    fetch(sentry(vendor), ["a"], environment=None)
    assert "environment" not in vendor.last.url.params


def test_naive_datetimes_are_refused_before_any_request() -> None:
    vendor = Vendor()
    with pytest.raises(ValueError, match="naive"):
        sentry(vendor).release_sessions("acme", "4507", None, ["a"], datetime(2026, 1, 1), END)  # noqa: DTZ001
    assert vendor.requests == []


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="not before"):
        sentry(Vendor()).release_sessions("acme", "4507", None, ["a"], END, START)


def test_no_releases_asks_nothing() -> None:
    vendor = Vendor()
    assert fetch(sentry(vendor), []) == {}
    assert vendor.requests == []


def test_more_than_a_hundred_releases_are_asked_in_chunks() -> None:
    releases = [f"web@1.0.{i}" for i in range(250)]
    vendor = Vendor(
        sessions_page(group("web@1.0.0", 1, 1.0)),
        sessions_page(),
        sessions_page(group("web@1.0.249", 9)),
    )
    result = fetch(sentry(vendor), releases)
    queries = [r.url.params["query"] for r in vendor.requests]
    assert [q.count(",") + 1 for q in queries] == [100, 100, 50]
    assert queries[0].startswith('release:["web@1.0.0","web@1.0.1",')
    assert queries[2].endswith(',"web@1.0.249"]')
    assert len(result) == 250
    assert result["web@1.0.0"] == SessionTotals(sessions=1, crashed=1)
    assert result["web@1.0.249"] == SessionTotals(sessions=9)


# --- the answer ----------------------------------------------------------------------------------


def test_crashed_sessions_are_the_rate_times_the_sessions() -> None:
    vendor = Vendor(
        sessions_page(
            group("web@1.4.2", 1000, 0.005), group("web@1.4.1", 100, 0.0), group("web@1.4.0", 3, 1 / 3)
        )
    )
    result = fetch(sentry(vendor), ["web@1.4.2", "web@1.4.1", "web@1.4.0"])
    assert result["web@1.4.2"] == SessionTotals(sessions=1000, crashed=5)
    assert result["web@1.4.2"].crash_free_rate == pytest.approx(0.995)
    assert result["web@1.4.1"].crash_free_rate == 1.0
    assert result["web@1.4.0"] == SessionTotals(sessions=3, crashed=1)


@given(st.integers(min_value=1, max_value=10**9), st.data())
def test_the_crashed_count_survives_the_rate_exactly(sessions: int, data: st.DataObject) -> None:
    crashed = data.draw(st.integers(min_value=0, max_value=sessions))
    vendor = Vendor(sessions_page(group("a", sessions, crashed / sessions)))
    assert fetch(sentry(vendor), ["a"])["a"] == SessionTotals(sessions=sessions, crashed=crashed)


def test_a_hundred_releases_are_one_request() -> None:
    releases = [f"web@2.0.{i}" for i in range(100)]
    vendor = Vendor(sessions_page(*(group(r, 500, 0.002) for r in releases)))
    result = fetch(sentry(vendor), releases)
    assert len(vendor.requests) == 1
    assert set(result.values()) == {SessionTotals(sessions=500, crashed=1)}


def test_a_release_without_data_is_present_with_zeros() -> None:
    result = fetch(sentry(Vendor(sessions_page())), ["web@1.4.2"])
    assert result == {"web@1.4.2": SessionTotals()}
    assert result["web@1.4.2"].crash_free_rate is None


def test_a_release_nobody_asked_for_is_ignored() -> None:
    vendor = Vendor(sessions_page(group("a", 3), group("other", 50, 1.0)))
    assert fetch(sentry(vendor), ["a"]) == {"a": SessionTotals(sessions=3)}


def test_it_follows_link_pagination_with_the_cursor() -> None:
    vendor = Vendor(
        sessions_page(group("a", 10), link=next_link("0:100:0")),
        sessions_page(group("a", 2, 1.0), link=next_link("0:200:0", results=False)),
    )
    assert fetch(sentry(vendor), ["a"])["a"] == SessionTotals(sessions=12, crashed=2)
    assert "cursor" not in vendor.requests[0].url.params
    second = vendor.requests[1].url.params
    assert second["cursor"] == "0:100:0"
    assert second["query"] == 'release:"a"'
    assert second.get_list("groupBy") == ["release"]


def test_pagination_stops_after_the_page_cap() -> None:
    pages = [sessions_page(link=next_link(f"0:{i}:0")) for i in range(MAX_PAGES + 1)]
    vendor = Vendor(*pages)
    with pytest.raises(ProviderError, match="more than 50 pages") as caught:
        fetch(sentry(vendor), ["a"])
    assert caught.value.code == "too_many_pages"
    assert len(vendor.requests) == MAX_PAGES


def test_a_repeating_cursor_is_an_error_not_a_loop() -> None:
    vendor = Vendor(*(sessions_page(link=next_link("0:100:0")) for _ in range(3)))
    with pytest.raises(ProviderError, match="repeats"):
        fetch(sentry(vendor), ["a"])
    assert len(vendor.requests) == 2


# --- failures ------------------------------------------------------------------------------------


def test_a_400_is_permanent_with_sentrys_detail() -> None:
    vendor = Vendor(
        httpx.Response(400, json={"detail": "Invalid condition: wildcard search is not supported"})
    )
    with pytest.raises(ProviderError) as caught:
        fetch(sentry(vendor), ["web@*"])
    assert caught.value.permanent
    assert caught.value.provider == "sentry"
    assert "wildcard search is not supported" in caught.value.message


def test_a_detail_with_a_code_gives_both() -> None:
    body = {"detail": {"message": "You do not have permission", "code": "permission_denied"}}
    with pytest.raises(ProviderError) as caught:
        fetch(sentry(Vendor(httpx.Response(403, json=body))), ["a"])
    assert caught.value.code == "permission_denied"
    assert "You do not have permission" in caught.value.message


def test_a_500_is_transient() -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(sentry(Vendor(httpx.Response(500, text="Internal Error"))), ["a"])
    assert not caught.value.permanent


def test_a_429_as_html_waits_until_the_sentry_reset_header() -> None:
    # Sentry builds this 429 as a plain HttpResponse: JSON text under a text/html type (§3.1).
    detail = "You are attempting to use this endpoint too frequently. Limit is 40 requests in 1 seconds"
    response = httpx.Response(
        429,
        content=json.dumps({"detail": detail}).encode(),
        headers={"Content-Type": "text/html; charset=utf-8", "X-Sentry-Rate-Limit-Reset": str(int(NOW) + 12)},
    )
    with pytest.raises(ProviderError) as caught:
        fetch(sentry(Vendor(response)), ["a"])
    assert caught.value.retry_after == 12.0
    assert not caught.value.permanent
    assert detail in caught.value.message


def test_the_reset_header_on_a_success_is_not_a_wait() -> None:
    response = sessions_page()
    response.headers["X-Sentry-Rate-Limit-Reset"] = str(int(NOW) + 12)
    assert fetch(sentry(Vendor(response)), ["a"]) == {"a": SessionTotals()}


@pytest.mark.parametrize(("exc_type", "maybe"), [(httpx.ReadTimeout, True), (httpx.ConnectTimeout, False)])
def test_a_timeout_is_transient(exc_type: type[httpx.TransportError], maybe: bool) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise exc_type("slow", request=request)

    with pytest.raises(ProviderTimeout) as caught:
        fetch(sentry(Vendor(hang)), ["a"])
    assert caught.value.maybe_delivered is maybe
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([], "sessions answer: expected an object"),
        ({"groups": None}, "groups: expected a list"),
        ({"groups": [{"by": [], "totals": {}}]}, "groups[0].by"),
        ({"groups": [{"by": {"session.status": "ok"}, "totals": {}}]}, "groups[0].by.release"),
        ({"groups": [{"by": {"release": "a"}, "totals": None}]}, "groups[0].totals"),
        ({"groups": [group("a", "12")]}, "sum(session)"),
        ({"groups": [group("a", None)]}, "sum(session)"),
        ({"groups": [group("a", True)]}, "sum(session)"),
        ({"groups": [group("a", 1.5)]}, "sum(session)"),
        ({"groups": [group("a", -1)]}, "negative"),
        ({"groups": [group("a", 10, None)]}, "null with 10 sessions"),
        ({"groups": [group("a", 10, 1.5)]}, "fraction 0-1"),
        ({"groups": [group("a", 10, "0.1")]}, "fraction 0-1"),
        ({"groups": [group("a", 10, True)]}, "fraction 0-1"),
    ],
)
def test_a_malformed_answer_is_a_transient_provider_error(body: object, complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        fetch(sentry(Vendor(httpx.Response(200, json=body))), ["a"])
    assert not caught.value.permanent
    assert complaint in caught.value.message


def test_a_non_json_success_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="not JSON"):
        fetch(sentry(Vendor(httpx.Response(200, text="<html>"))), ["a"])


def test_crash_free_rate_is_none_without_sessions() -> None:
    assert SessionTotals().crash_free_rate is None
    assert SessionTotals(sessions=4, crashed=1).crash_free_rate == 0.75


# --- error_count (§3.4) --------------------------------------------------------------------------


def events_page(*rows: dict[str, Any]) -> httpx.Response:
    body = {
        "data": list(rows),
        "meta": {"fields": {"count()": "integer"}, "units": {"count()": None}},
    }
    return httpx.Response(200, json=body)


def errors(client: SentryClient, release: str = "web@1.4.2", environment: str | None = "production") -> int:
    return client.error_count("acme", "4507", environment, release, START, END)


def test_error_count_sends_the_exact_events_query() -> None:
    vendor = Vendor(events_page({"count()": 37}))
    assert errors(sentry(vendor)) == 37
    assert vendor.last.method == "GET"
    assert vendor.last.url.path == "/api/0/organizations/acme/events/"
    assert vendor.last.headers["Authorization"] == "Bearer sntrys_secret"
    assert vendor.last.url.params.multi_items() == [
        ("field", "count()"),
        ("dataset", "errors"),
        ("query", 'release:"web@1.4.2" event.type:error'),
        ("project", "4507"),
        ("environment", "production"),
        ("start", "2026-01-01T09:00:00Z"),
        ("end", "2026-01-01T12:00:00Z"),
        ("per_page", "1"),
    ]


def test_error_count_without_environment_sends_no_environment_filter() -> None:
    vendor = Vendor(events_page({"count()": 0}))
    assert errors(sentry(vendor), environment=None) == 0
    assert "environment" not in vendor.last.url.params


def test_error_count_quotes_an_awkward_release_and_escapes_the_org() -> None:
    vendor = Vendor(events_page({"count()": 1}))
    sentry(vendor).error_count("a/b", "4507", None, 'web@1.4 "rc", 2', START, END)
    assert vendor.last.url.params["query"] == r'release:"web@1.4 \"rc\", 2" event.type:error'
    assert vendor.last.url.raw_path.startswith(b"/api/0/organizations/a%2Fb/events/?")


def test_error_count_without_rows_is_zero() -> None:
    assert errors(sentry(Vendor(events_page()))) == 0


def test_error_count_accepts_a_whole_float() -> None:
    assert errors(sentry(Vendor(events_page({"count()": 12.0, "release": "web@1.4.2"})))) == 12


def test_error_count_refuses_naive_times_and_empty_windows_before_asking() -> None:
    vendor = Vendor()
    client = sentry(vendor)
    with pytest.raises(ValueError, match="naive"):
        client.error_count("acme", "4507", None, "a", datetime(2026, 1, 1), END)  # noqa: DTZ001
    with pytest.raises(ValueError, match="not before"):
        client.error_count("acme", "4507", None, "a", END, START)
    assert vendor.requests == []


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (400, "Invalid query. Argument to function is wrong type."),
        (401, "Invalid token"),
        (403, "You do not have permission to perform this action."),
        (404, "The requested resource does not exist"),
    ],
)
def test_error_count_4xx_is_permanent_with_the_detail(status: int, detail: str) -> None:
    with pytest.raises(ProviderError) as caught:
        errors(sentry(Vendor(httpx.Response(status, json={"detail": detail}))))
    assert caught.value.permanent
    assert caught.value.status == status
    assert caught.value.retry_after is None
    assert detail in caught.value.message


def test_error_count_429_waits_until_the_sentry_reset() -> None:
    response = httpx.Response(
        429,
        json={"detail": "You are attempting to use this endpoint too frequently."},
        headers={"X-Sentry-Rate-Limit-Reset": str(int(NOW) + 7)},
    )
    with pytest.raises(ProviderError) as caught:
        errors(sentry(Vendor(response)))
    assert caught.value.retry_after == 7.0
    assert not caught.value.permanent
    assert caught.value.status == 429


def test_error_count_5xx_is_transient() -> None:
    with pytest.raises(ProviderError) as caught:
        errors(sentry(Vendor(httpx.Response(503, text="upstream"))))
    assert not caught.value.permanent
    assert caught.value.status == 503


def test_error_count_timeout_is_a_provider_timeout() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderTimeout) as caught:
        errors(sentry(Vendor(hang)))
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([], "events answer: expected an object"),
        ({"meta": {}}, "data: expected a list"),
        ({"data": None}, "data: expected a list"),
        ({"data": [7]}, "data[0]: expected an object"),
        ({"data": [{}]}, "data[0].count(): expected a number, got null"),
        ({"data": [{"count()": "37"}]}, "data[0].count(): expected a number"),
        ({"data": [{"count()": 2.5}]}, "data[0].count(): expected a whole number"),
        ({"data": [{"count()": -1}]}, "negative count"),
    ],
)
def test_error_count_malformed_answer_names_the_field(body: object, complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        errors(sentry(Vendor(httpx.Response(200, json=body))))
    assert not caught.value.permanent
    assert complaint in caught.value.message


# --- the project lookup: slug to numeric id (docs/vendor-apis.md §3.2) ------------------------


def project_answer(project_id: str = "4507", slug: str = "shop-web") -> httpx.Response:
    return httpx.Response(200, json={"id": project_id, "slug": slug, "name": "Shop Web", "status": "active"})


def test_a_slug_resolves_to_the_numeric_id_sentry_gives() -> None:
    vendor = Vendor(project_answer())

    found = sentry(vendor).project("acme", "shop-web")

    assert (found.id, found.slug, found.moved_from) == (4507, "shop-web", None)
    assert vendor.last.url.path == "/api/0/projects/acme/shop-web/"


def test_a_renamed_slug_follows_sentrys_redirect_once_on_the_configured_host() -> None:
    moved = httpx.Response(
        302,
        headers={"Location": "https://elsewhere.test/api/0/projects/acme/storefront/"},
        json={
            "detail": {
                "code": "resource-moved",
                "message": "Resource has been moved",
                "extra": {"url": "/api/0/projects/acme/storefront/", "slug": "storefront"},
            }
        },
    )
    vendor = Vendor(moved, project_answer(slug="storefront"))

    found = sentry(vendor).project("acme", "shop-web")

    assert (found.id, found.slug, found.moved_from) == (4507, "storefront", "shop-web")
    assert [str(r.url) for r in vendor.requests] == [
        "https://sentry.test/api/0/projects/acme/shop-web/",
        "https://sentry.test/api/0/projects/acme/storefront/",
    ]


@pytest.mark.parametrize("status", [403, 404])
def test_a_refused_lookup_is_a_permanent_error_with_its_status(status: int) -> None:
    vendor = Vendor(httpx.Response(status, json={"detail": "The requested resource does not exist"}))

    with pytest.raises(ProviderError) as refused:
        sentry(vendor).project("acme", "nope")

    assert (refused.value.status, refused.value.permanent) == (status, True)


@pytest.mark.parametrize("body", [{"id": "abc", "slug": "x"}, {"id": "12"}, {"id": True, "slug": "x"}, []])
def test_a_project_answer_without_a_numeric_id_and_a_slug_is_malformed(body: Any) -> None:
    with pytest.raises(ProviderError, match="malformed answer"):
        sentry(Vendor(httpx.Response(200, json=body))).project("acme", "shop-web")


def test_environments_are_listed_by_name() -> None:
    answer = [{"id": "1", "name": "production", "isHidden": False}, {"id": "2", "name": "staging"}]
    vendor = Vendor(httpx.Response(200, json=answer))

    assert sentry(vendor).environments("acme", "shop-web") == ["production", "staging"]
    assert vendor.last.url.path == "/api/0/projects/acme/shop-web/environments/"
