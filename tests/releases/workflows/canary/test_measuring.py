"""Running SLO checks for a deployment, and GET /api/slo/, against fake providers over httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.domain.slo_rules import parse_check
from releases.integrations import clients
from releases.integrations.datadog.client import DatadogClient
from releases.integrations.http_check.client import HttpCheckResult
from releases.integrations.posthog.client import PostHogClient
from releases.integrations.sentry.client import iso_z
from releases.models import Project, Release
from releases.ops.slo_api import SloThrottle
from releases.workflows.canary import measuring as slo
from tests.factories import make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState


def checks(*raw: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in raw:
        spec, problems = parse_check(entry, "c")
        assert not problems
        assert spec is not None
        out.append(spec.to_json())
    return out


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return install(monkeypatch)


@pytest.fixture
def scene() -> tuple[Project, Release, Release]:
    project = make_project(canary={"stages": [{"percent": 5, "hold": 0}, {"percent": 100, "hold": 0}]})
    previous = make_release(project, deployment_id="dpl_prev", version="web@1", promoted_at=timezone.now())
    canary = make_release(
        project, deployment_id="dpl_canary", version="web@2", deployment_url="shop-abc.vercel.app"
    )
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_prev")
    project.refresh_from_db()
    canary.project = project
    return project, previous, canary


def use(project: Project, *raw: dict[str, Any]) -> None:
    Project.objects.filter(pk=project.pk).update(canary={**(project.canary or {}), "checks": checks(*raw)})
    project.refresh_from_db()


def datadog(monkeypatch: pytest.MonkeyPatch, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    monkeypatch.setattr(
        clients,
        "datadog",
        lambda timeout=None: DatadogClient(
            "https://dd.test", "k", "a", transport=httpx.MockTransport(handler)
        ),
    )


def series(*values: float | None) -> dict[str, Any]:
    now = int(time.time() * 1000)
    points = [[now - 60000 * (len(values) - i), v] for i, v in enumerate(values)]
    return {
        "status": "ok",
        "res_type": "time_series",
        "query": "q",
        "from_date": 0,
        "to_date": 0,
        "group_by": [],
        "message": "",
        "series": [
            {
                "metric": "m",
                "display_name": "m",
                "expression": "q",
                "scope": "s",
                "tag_set": [],
                "aggr": "avg",
                "start": 0,
                "end": 0,
                "interval": 60,
                "length": len(values),
                "query_index": 0,
                "attributes": {},
                "unit": None,
                "pointlist": points,
            }
        ]
        if values
        else [],
    }


def test_sentry_error_rate_is_error_events_over_sessions_for_the_release_and_window(
    scene: tuple[Project, Release, Release], fakes: Fakes
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "sentry_error_rate", "max": 0.01, "relative_to_previous": 2.0, "window": "5m"})
    fakes.sentry.totals = {"web@2": (1000, 3), "web@1": (4000, 10)}
    fakes.sentry.error_events = {"web@2": 12, "web@1": 20}
    result = slo.run_checks(project, canary, previous)
    (check,) = result.checks
    assert (check.value, check.baseline) == (0.012, 0.005)
    assert not result.ok and not check.ok
    assert "above the maximum 0.01" in check.reason and "more than 2 x" in check.reason
    events = [r for r in fakes.sentry.requests if r.url.path.endswith("/events/")]
    assert events[0].url.params["dataset"] == "errors"
    assert events[0].url.params["query"] == 'release:"web@2" event.type:error'
    sessions = next(r for r in fakes.sentry.requests if r.url.path.endswith("/sessions/"))
    assert sessions.url.params["query"] == 'release:"web@2"'
    assert sessions.url.params["interval"] == "1m"
    fakes.sentry.error_events = {"web@2": 5, "web@1": 20}
    assert slo.run_checks(project, canary, previous).ok


def test_no_sessions_in_the_window_is_no_data_and_never_passes(
    scene: tuple[Project, Release, Release], fakes: Fakes
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "sentry_crash_free", "method": "fixed", "min": 0.9, "min_sessions": 50})
    fakes.sentry.totals = {"web@2": (49, 0)}
    (check,) = slo.run_checks(project, canary, previous).checks
    assert not check.ok and check.value is None
    assert "49 sessions in the window, fewer than 50" in check.reason


def test_a_provider_error_or_rate_limit_fails_the_check(
    scene: tuple[Project, Release, Release], fakes: Fakes
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "sentry_crash_free", "min": 0.9})
    fakes.sentry.errors = [
        httpx.Response(429, json={"detail": "slow down"}, headers={"X-Sentry-Rate-Limit-Reset": "1"})
    ]
    result = slo.run_checks(project, canary, previous)
    assert not result.ok
    assert "could not measure" in result.checks[0].reason and "rate limited" in result.checks[0].error


def test_datadog_query_is_scoped_and_averaged(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "datadog_query", "query": "avg:err{deployment_id:$DEPLOYMENT_ID}", "max": 0.05})
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["query"])
        return httpx.Response(200, json=series(0.02, None, 0.06))

    datadog(monkeypatch, handler)
    (check,) = slo.run_checks(project, canary, previous).checks
    assert seen == ["avg:err{deployment_id:dpl_canary}"]
    assert check.value == pytest.approx(0.04) and check.ok
    datadog(monkeypatch, lambda request: httpx.Response(200, json=series()))
    (empty,) = slo.run_checks(project, canary, previous).checks
    assert not empty.ok and "no points" in empty.reason


def test_posthog_exceptions_count_for_the_deployment(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, previous, canary = scene
    use(
        project,
        {
            "kind": "posthog_exceptions",
            "max": 10,
            "project_id": "4242",
            "property": "vercel_deployment",
            "value": "$DEPLOYMENT_ID",
        },
    )
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"results": [[11]], "columns": ["exceptions"], "types": ["UInt64"]})

    monkeypatch.setattr(
        clients,
        "posthog",
        lambda timeout=None: PostHogClient("https://ph.test", "phx", transport=httpx.MockTransport(handler)),
    )
    (check,) = slo.run_checks(project, canary, previous).checks
    assert "properties.vercel_deployment = 'dpl_canary'" in bodies[0]["query"]["query"]
    assert check.value == 11 and not check.ok


def test_http_check_gets_the_deployment_and_needs_a_200(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "http", "url": "https://$DEPLOYMENT_URL/api/health"})
    calls: list[tuple[str, dict[str, str]]] = []
    answers = [200, 503, None]

    def fake(url: str, *, timeout: float, headers: dict[str, str], allow_private: bool) -> HttpCheckResult:
        assert allow_private is False  # the project did not allow private addresses
        calls.append((url, headers))
        status = answers.pop(0)
        return HttpCheckResult(url, status, 3.0, "" if status else "timed out")

    monkeypatch.setattr(slo, "http_check", fake)
    assert slo.run_checks(project, canary, previous).ok
    assert calls[0] == (
        "https://shop-abc.vercel.app/api/health",
        {"X-Gatekeeper-Deployment": "dpl_canary", "X-Gatekeeper-Release": "web@2"},
    )
    assert not slo.run_checks(project, canary, previous).ok
    timed_out = slo.run_checks(project, canary, previous)
    assert not timed_out.ok and "timed out" in timed_out.checks[0].reason


@pytest.mark.parametrize("url", ["evil@127.0.0.1:18556/x", "attacker.test", "shop-abc.vercel.app:8443"])
def test_a_deployment_url_that_is_not_the_projects_host_is_never_probed(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    project, previous, canary = scene
    Release.objects.filter(pk=canary.pk).update(deployment_url=url)
    canary.refresh_from_db()
    use(project, {"kind": "http", "url": "https://$DEPLOYMENT_URL/api/health"})
    calls: list[str] = []
    monkeypatch.setattr(slo, "http_check", lambda target, **_: calls.append(target))

    result = slo.run_checks(project, canary, previous)

    assert not result.ok and calls == []
    assert "is not a *.vercel.app host or a production domain of the project" in result.checks[0].reason


def test_a_datadog_query_holds_the_release_as_a_datadog_tag(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, previous, canary = scene
    Release.objects.filter(pk=canary.pk).update(version="web} OR {service:*")
    canary.refresh_from_db()
    use(
        project,
        {
            "kind": "datadog_query",
            "query": "avg:errors{release:$RELEASE,deployment:$DEPLOYMENT_ID}",
            "max": 1,
        },
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["query"])
        return httpx.Response(200, json=series(0.5))

    datadog(monkeypatch, handler)
    slo.run_checks(project, canary, previous)

    assert seen == ["avg:errors{release:web__or__service:_,deployment:dpl_canary}"]


def test_composite_every_check_must_pass_and_all_are_reported(
    scene: tuple[Project, Release, Release], fakes: Fakes
) -> None:
    project, previous, canary = scene
    use(
        project,
        {"kind": "sentry_crash_free", "min": 0.99},
        {"kind": "sentry_error_rate", "max": 0.001},
    )
    fakes.sentry.totals = {"web@2": (1000, 2)}
    fakes.sentry.error_events = {"web@2": 5}
    result = slo.run_checks(project, canary, previous)
    assert [c.ok for c in result.checks] == [True, False]
    assert not result.ok and len(result.reasons) == 1


def test_a_slow_check_costs_its_timeout_not_the_others(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "http", "url": "https://x.example/$DEPLOYMENT_ID", "timeout": "1s"})
    monkeypatch.setattr(slo, "GRACE", 0.2)

    def stuck(url: str, **_: Any) -> HttpCheckResult:
        time.sleep(3)
        return HttpCheckResult(url, 200, 3000.0, "")

    monkeypatch.setattr(slo, "http_check", stuck)
    started = time.monotonic()
    result = slo.run_checks(project, canary, previous)
    assert time.monotonic() - started < 2.5
    assert not result.ok and "no answer within 1s" in result.checks[0].reason


def test_no_checks_configured_is_not_ok(scene: tuple[Project, Release, Release]) -> None:
    project, previous, canary = scene
    assert not slo.run_checks(project, canary, previous).ok


# --- GET /api/slo/ ------------------------------------------------------------------------------

URL = "/api/slo/"


@pytest.fixture
def http(settings: Any) -> Client:
    # Served to anyone, as SLO_PUBLIC says on purpose, and measured afresh for every call.
    settings.SLO_PUBLIC = True
    settings.SLO_CACHE_SECONDS = 0
    return Client(HTTP_HOST="127.0.0.1")


def test_api_slo_answers_200_when_healthy_and_503_when_not(
    scene: tuple[Project, Release, Release], fakes: Fakes, http: Client
) -> None:
    project, _, _ = scene
    use(project, {"kind": "sentry_error_rate", "max": 0.01})
    fakes.sentry.totals = {"web@2": (1000, 0)}
    fakes.sentry.error_events = {"web@2": 3}
    healthy = http.get(URL, {"deployment": "dpl_canary"})
    assert healthy.status_code == 200
    body = healthy.json()
    assert body["ok"] is True and body["deployment"] == "dpl_canary"
    assert body["checks"][0]["value"] == 0.003 and body["checks"][0]["threshold"] == "<= 0.01"
    assert healthy["Cache-Control"] == "no-store"
    fakes.sentry.error_events = {"web@2": 30}
    unhealthy = http.get(URL, {"deployment": "dpl_canary"})
    assert unhealthy.status_code == 503
    assert unhealthy.json()["ok"] is False and "above the maximum" in unhealthy.json()["reasons"][0]


def test_api_slo_is_503_when_a_provider_is_unreachable(
    scene: tuple[Project, Release, Release], fakes: Fakes, http: Client
) -> None:
    project, _, _ = scene
    use(project, {"kind": "sentry_error_rate", "max": 0.01})
    fakes.sentry.errors = [httpx.Response(502, text="bad gateway")] * 2
    answer = http.get(URL, {"deployment": "dpl_canary"})
    assert answer.status_code == 503 and answer.json()["checks"][0]["error"]


@pytest.mark.parametrize(
    ("params", "code", "text"),
    [
        ({}, 400, "deployment"),
        ({"deployment": "dpl_unknown"}, 404, "not known"),
        ({"deployment": "x" * 101}, 400, ""),
    ],
)
def test_api_slo_refuses_bad_requests(
    scene: tuple[Project, Release, Release], http: Client, params: dict[str, str], code: int, text: str
) -> None:
    answer = http.get(URL, params)
    assert answer.status_code == code and answer.json()["ok"] is False and text in answer.json()["error"]


def test_api_slo_without_checks_is_503_and_says_why(
    scene: tuple[Project, Release, Release], http: Client
) -> None:
    answer = http.get(URL, {"deployment": "dpl_canary"})
    assert answer.status_code == 503 and "no SLO checks" in answer.json()["error"]


def test_api_slo_is_off_without_a_token_unless_public_is_set_on_purpose(
    scene: tuple[Project, Release, Release], fakes: Fakes, http: Client, settings: Any
) -> None:
    project, _, _ = scene
    use(project, {"kind": "sentry_error_rate", "max": 0.01})
    settings.SLO_PUBLIC = False

    answer = http.get(URL, {"deployment": "dpl_canary"})

    assert answer.status_code == 403 and "set SLO_AUTH_TOKEN" in answer.json()["error"]
    assert fakes.sentry.requests == []  # nothing measured with our credentials


def test_api_slo_measures_a_deployment_once_for_every_caller_while_it_is_kept(
    scene: tuple[Project, Release, Release], fakes: Fakes, http: Client, settings: Any
) -> None:
    project, _, _ = scene
    use(project, {"kind": "sentry_error_rate", "max": 0.01})
    fakes.sentry.totals = {"web@2": (1000, 0)}
    fakes.sentry.error_events = {"web@2": 3}
    settings.SLO_CACHE_SECONDS = 15

    answers = [http.get(URL, {"deployment": "dpl_canary"}) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["cached"] for a in answers] == [False, True, True, True, True]
    assert len(fakes.sentry.requests) == 2  # one measurement: sessions and error events
    cache.clear()
    assert http.get(URL, {"deployment": "dpl_canary"}).json()["cached"] is False


def test_api_slo_throttles_each_address(
    scene: tuple[Project, Release, Release], fakes: Fakes, http: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SloThrottle, "THROTTLE_RATES", {"slo": "3/min"})

    codes = [http.get(URL, {"deployment": "dpl_unknown"}).status_code for _ in range(5)]

    assert codes == [404, 404, 404, 429, 429]


@override_settings(SLO_AUTH_TOKEN="s3cret-token")
@pytest.mark.parametrize(
    ("header", "code"),
    [(None, 401), ("Bearer wrong", 401), ("Token s3cret-token", 401), ("Bearer s3cret-token", 200)],
)
def test_api_slo_bearer_token_when_set(
    scene: tuple[Project, Release, Release], fakes: Fakes, http: Client, header: str | None, code: int
) -> None:
    project, _, _ = scene
    use(project, {"kind": "sentry_error_rate", "max": 0.01})
    fakes.sentry.totals = {"web@2": (1000, 0)}
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    answer = http.get(URL, {"deployment": "dpl_canary"}, **extra)
    assert answer.status_code == code
    if code == 401:
        assert answer["WWW-Authenticate"].startswith("Bearer") and fakes.sentry.requests == []


def test_slow_checks_run_side_by_side_within_their_own_timeouts(
    scene: tuple[Project, Release, Release], fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, previous, canary = scene
    use(
        project,
        {"kind": "http", "url": "https://a.example/$DEPLOYMENT_ID", "timeout": "1s"},
        {"kind": "http", "url": "https://b.example/$DEPLOYMENT_ID", "timeout": "1s"},
        {"kind": "http", "url": "https://c.example/$DEPLOYMENT_ID", "timeout": "1s"},
    )
    monkeypatch.setattr(slo, "GRACE", 0.2)

    def stuck(url: str, **_: Any) -> HttpCheckResult:
        time.sleep(3)
        return HttpCheckResult(url, 200, 3000.0, "")

    monkeypatch.setattr(slo, "http_check", stuck)
    started = time.monotonic()
    result = slo.run_checks(project, canary, previous)
    assert time.monotonic() - started < 2.0  # not three timeouts one after another
    assert [c.ok for c in result.checks] == [False, False, False]


@pytest.mark.parametrize(
    "case",
    [
        ((1000, 1), True, False, "evidence"),  # 99.9%: shown good for a 0.995 bar
        ((50, 0), False, True, "undecided: 50 sessions"),  # clean so far, not enough yet
        ((300, 15), False, False, "or worse"),  # 95%: shown bad
        ((0, 0), False, True, "undecided: no sessions"),  # no traffic yet: holds, never passes
    ],
)
def test_a_sequential_crash_free_check_passes_fails_or_holds_on_the_stages_sessions(
    scene: tuple[Project, Release, Release], fakes: Fakes, case: tuple[tuple[int, int], bool, bool, str]
) -> None:
    totals, ok, pending, says = case
    project, previous, canary = scene
    use(project, {"kind": "sentry_crash_free", "min": 0.995})
    fakes.sentry.totals = {"web@2": totals}
    stage_began = timezone.now() - timedelta(minutes=42)
    result = slo.run_checks(project, canary, previous, since=stage_began)
    (check,) = result.checks
    assert (check.ok, check.pending, result.pending) == (ok, pending, pending)
    assert says in check.reason
    # The stage's sessions, from when it began, not the check's window.
    params = fakes.sentry.requests[-1].url.params
    assert params["start"] == iso_z(stage_began)


def test_api_slo_answers_503_while_a_sequential_check_is_undecided(
    scene: tuple[Project, Release, Release], fakes: Fakes
) -> None:
    project, previous, canary = scene
    use(project, {"kind": "sentry_crash_free", "min": 0.995})
    fakes.sentry.totals = {"web@2": (50, 0)}
    result = slo.run_checks(project, canary, previous)
    assert not result.ok and result.pending


@pytest.mark.parametrize(
    "case",
    [
        ((5000, 8), True, False),  # no worse than production, with crashes enough to tell
        ((5000, 30), False, False),  # three times production's crash rate
        ((5000, 0), False, True),  # no crash yet: undecided, the stage holds
    ],
)
def test_a_relative_crash_check_compares_the_canary_with_production_over_the_same_time(
    scene: tuple[Project, Release, Release], fakes: Fakes, case: tuple[tuple[int, int], bool, bool]
) -> None:
    canary_totals, ok, pending = case
    project, previous, canary = scene
    use(project, {"kind": "sentry_crash_free", "relative_to_previous": 2.0})
    fakes.sentry.totals = {"web@2": canary_totals, "web@1": (95000, 190 if canary_totals[1] else 0)}
    stage_began = timezone.now() - timedelta(minutes=20)
    (check,) = slo.run_checks(project, canary, previous, since=stage_began).checks
    assert (check.ok, check.pending) == (ok, pending), check.reason
    assert check.detail["previous_sessions"] == 95000
    # Both deployments over the same stretch: the canary's stage.
    starts = {request.url.params["start"] for request in fakes.sentry.requests}
    assert starts == {iso_z(stage_began)}


def test_a_relative_crash_check_without_a_previous_deployment_never_passes(
    scene: tuple[Project, Release, Release], fakes: Fakes
) -> None:
    project, _previous, canary = scene
    use(project, {"kind": "sentry_crash_free", "relative_to_previous": 2.0})
    (check,) = slo.run_checks(project, canary, None).checks
    assert not check.ok and not check.pending
    assert "no previous deployment to compare with" in check.reason
