"""The canary ramp and GET /api/slo end to end: a real worker, the web, the simulator over HTTP.

The simulator keeps Vercel's rolling release (start, approve-stage, complete; abort through the
rollback endpoint) and Sentry's sessions and error events per release, so these tests watch real
traffic moves land in Vercel's state and real error rates decide them.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from releases.domain.lifecycle import ReleaseState
from releases.domain.slo_rules import parse_check
from releases.models import Action, Project, RampCheck, Release, ReleaseEvent
from tests.conftest import Simulator, wait_for
from tests.e2e.conftest import BASELINE, E2E_PROJECT

pytestmark = pytest.mark.e2e
S = ReleaseState
SPM = 12000  # sessions per minute for each release
CANARY = "dpl_e2eCanary0000000000000001"


def policy(*checks: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    specs = []
    for raw in checks:
        spec, problems = parse_check(raw, "check")
        assert not problems and spec is not None
        specs.append(spec.to_json())
    return {
        "router": "vercel",
        "stages": [{"percent": 5, "hold": 0.0}, {"percent": 25, "hold": 0.0}, {"percent": 100, "hold": 0.0}],
        "confirmations": 2,
        "confirmation_interval": 1.0,
        "abort_on_failure": True,
        "failures_to_abort": 1,
        "checks": specs,
        **overrides,
    }


ERROR_RATE = {"kind": "sentry_error_rate", "max": 0.01, "window": "5m", "timeout": "5s"}


def canary_project(
    project: Project, canary: dict[str, Any], sim: Simulator, baseline_errors: float = 0.0
) -> None:
    baseline = wait_for(
        lambda: Release.objects.filter(deployment_id=BASELINE, state=S.PROMOTED).first(), what="the baseline"
    )
    Project.objects.filter(pk=project.pk).update(canary=canary, live_deployment_id=BASELINE)
    # The baseline's own traffic: what relative checks compare with.
    sim.control(
        "POST",
        "/sentry/traffic",
        json={
            "org": "acme",
            "project": "shop-web",
            "environment": "production",
            "release": baseline.version,
            "sessions_per_minute": SPM,
            "crash_rate": 0.0,
            "errors_per_minute": baseline_errors,
            "start": time.time() - 600,  # a whole window of history already
        },
    )


def deploy_canary(sim: Simulator, errors_per_minute: float) -> None:
    sim.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": E2E_PROJECT,
            "id": CANARY,
            "target": "production",
            "meta": {"githubCommitSha": CANARY},
            "traffic": {
                "org": "acme",
                "project": "shop-web",
                "environment": "production",
                "release": CANARY,
                "sessions_per_minute": SPM,
                "crash_rate": 0.0,
                "errors_per_minute": errors_per_minute,
                # Serving for a while already (a preview, say), so the first window is full and
                # the rates are steady rather than the noise of the first second.
                "start": time.time() - 600,
            },
            "webhooks": ["deployment.succeeded"],
        },
    )


def errors_rose(sim: Simulator, errors_per_minute: float) -> None:
    """The canary's error events rose to this rate half a minute ago."""
    sim.control(
        "POST",
        "/sentry/traffic/phase",
        json={
            "org": "acme",
            "environment": "production",
            "release": CANARY,
            "errors_per_minute": errors_per_minute,
            "at": time.time() - 30,
        },
    )


def rolling(sim: Simulator) -> dict[str, Any]:
    return sim.control("GET", f"/vercel/projects/{E2E_PROJECT}")["rolling_release"]


def settled(*states: str, timeout: float = 60) -> Release:
    def check() -> Release | None:
        release = Release.objects.filter(deployment_id=CANARY).first()
        return release if release is not None and release.state in states else None

    return wait_for(check, timeout=timeout, what=f"the canary to reach {states}")


def vercel_posts(sim: Simulator, fragment: str) -> list[dict[str, Any]]:
    return [
        r for r in sim.requests(service="vercel", method="POST") if fragment in r["path"] and not r["fault"]
    ]


def test_a_healthy_canary_climbs_every_stage_and_completes(project: Project, e2e: Simulator) -> None:
    canary_project(project, policy(ERROR_RATE), e2e)
    deploy_canary(e2e, errors_per_minute=SPM * 0.002)
    release = settled(S.PROMOTED)
    state = e2e.control("GET", f"/vercel/projects/{E2E_PROJECT}")
    assert state["production_deployment_id"] == CANARY
    percents = [h["percent"] for h in rolling(e2e)["history"]]
    assert percents[0] == 5 and 25 in percents and percents[-1] == 100
    approvals = vercel_posts(e2e, "/rolling-release/approve-stage")
    assert len(approvals) == 1 and len(vercel_posts(e2e, "/rolling-release/complete")) == 1
    checks = list(RampCheck.objects.filter(release=release))
    assert [(c.stage, c.ok) for c in checks] == [(0, True), (0, True), (1, True), (1, True)]
    rates = [c.checks[0]["value"] for c in checks]
    assert 0 < max(rates) <= 0.01  # a real rate: errors over sessions, not a field that is never there
    shares = [e.data["percent"] for e in ReleaseEvent.objects.filter(release=release, kind="traffic")]
    assert shares == [5, 25, 100]
    texts = [m["text"] for m in e2e.control("GET", "/slack/messages")["messages"]]
    assert any("canary complete" in t for t in texts)


def test_errors_rising_at_25_percent_abort_there_and_traffic_returns(
    project: Project, e2e: Simulator
) -> None:
    Project.objects.filter(pk=project.pk).update(pagerduty_routing_key_env="E2E_PAGERDUTY_ROUTING_KEY")
    # A hold at 25%, so the errors below rise before the first check there, whatever the timing.
    stages = [{"percent": 5, "hold": 0.0}, {"percent": 25, "hold": 3.0}, {"percent": 100, "hold": 0.0}]
    canary_project(project, policy(ERROR_RATE, stages=stages), e2e)
    deploy_canary(e2e, errors_per_minute=SPM * 0.002)
    wait_for(lambda: (rolling(e2e).get("canary_percent") or 0) >= 25, timeout=60, what="25% of traffic")
    errors_rose(e2e, SPM * 2.0)
    release = settled(S.ROLLED_BACK)
    assert release.verdict_rule == "slo"
    failed = RampCheck.objects.filter(release=release, ok=False).last()
    assert failed is not None and failed.stage == 1 and failed.percent == 25
    assert vercel_posts(e2e, "/rolling-release/complete") == []
    rollbacks = vercel_posts(e2e, "/rollback/")
    assert [r["path"].rsplit("/", 1)[-1] for r in rollbacks] == [BASELINE]
    state = e2e.control("GET", f"/vercel/projects/{E2E_PROJECT}")
    assert state["production_deployment_id"] == BASELINE
    assert rolling(e2e)["release"]["state"] == "ABORTED"
    incidents = wait_for(
        lambda: e2e.control("GET", "/pagerduty/incidents")["incidents"], what="the PagerDuty incident"
    )
    assert len(incidents) == 1 and incidents[0]["status"] == "triggered"
    assert "canary aborted at 25%" in incidents[0]["events"][0]["payload"]["summary"]
    texts = wait_for(
        lambda: [
            m["text"] for m in e2e.control("GET", "/slack/messages")["messages"] if "aborted" in m["text"]
        ],
        what="the Slack message",
    )
    assert len(texts) == 1 and BASELINE in texts[0]


def test_relative_to_previous_aborts_a_canary_twice_as_bad_as_the_previous_deployment(
    project: Project, e2e: Simulator
) -> None:
    relative = {"kind": "sentry_error_rate", "relative_to_previous": 2.0, "window": "5m"}
    canary_project(project, policy(relative), e2e, baseline_errors=SPM * 0.004)
    deploy_canary(e2e, errors_per_minute=SPM * 0.012)  # 3x the previous deployment's rate
    release = settled(S.ROLLED_BACK)
    assert list(RampCheck.objects.filter(release=release).values_list("ok", flat=True)) == [False]
    (check,) = RampCheck.objects.get(release=release).checks
    assert 0.003 < check["baseline"] < 0.005 and check["value"] > 2 * check["baseline"]
    assert "more than 2 x the previous deployment's" in check["reason"]
    assert vercel_posts(e2e, "/rolling-release/approve-stage") == []


def test_an_unreachable_provider_never_advances(project: Project, e2e: Simulator) -> None:
    canary_project(project, policy(ERROR_RATE, abort_on_failure=False), e2e)
    e2e.control("POST", "/faults", json={"service": "sentry", "kind": "5xx", "status": 503})
    deploy_canary(e2e, errors_per_minute=0)
    wait_for(lambda: RampCheck.objects.filter(release__deployment_id=CANARY).count() >= 4, what="four checks")
    release = Release.objects.get(deployment_id=CANARY)
    stage = release.open_analysis()
    assert release.state == S.RAMPING and stage is not None and (stage.kind, stage.stage) == ("canary", 0)
    assert stage.failures >= 4 and stage.passes == 0
    assert not RampCheck.objects.filter(release=release, ok=True).exists()
    assert "could not measure" in RampCheck.objects.filter(release=release).first().reasons[0]
    assert vercel_posts(e2e, "/rolling-release/approve-stage") == []
    assert rolling(e2e)["canary_percent"] == 5


def test_one_failed_confirmation_of_two_never_advances(project: Project, e2e: Simulator) -> None:
    canary_project(project, policy(ERROR_RATE, abort_on_failure=False), e2e)
    deploy_canary(e2e, errors_per_minute=SPM * 0.002)
    wait_for(
        lambda: RampCheck.objects.filter(release__deployment_id=CANARY).count() >= 1, what="a first check"
    )
    # The second confirmation's error count fails (one 503); the first passed.
    e2e.control(
        "POST",
        "/faults",
        json={"service": "sentry", "kind": "5xx", "status": 503, "count": 1, "path_contains": "/events/"},
    )
    settled(S.PROMOTED, timeout=90)
    release = Release.objects.get(deployment_id=CANARY)
    at_five = [c.ok for c in RampCheck.objects.filter(release=release, stage=0)]
    assert at_five == [True, False, True, True]  # the failure reset the count: two more were needed
    first_move = Action.objects.get(release=release, key=f"traffic:{release.pk}:stage-1")
    last_check_at_five = RampCheck.objects.filter(release=release, stage=0).last()
    assert first_move.created_at >= last_check_at_five.checked_at


def test_api_slo_for_healthy_unhealthy_and_unreachable(
    project: Project, e2e: Simulator, live_server: Any, settings: Any
) -> None:
    settings.SLO_PUBLIC, settings.SLO_CACHE_SECONDS = True, 0  # every call measured, for anyone
    canary_project(project, policy(ERROR_RATE, abort_on_failure=False), e2e)
    Project.objects.filter(pk=project.pk).update(canary=None)  # no ramp: the deployment is only gated
    deploy_canary(e2e, errors_per_minute=SPM * 0.002)
    wait_for(lambda: Release.objects.filter(deployment_id=CANARY).exists(), what="the release")
    Project.objects.filter(pk=project.pk).update(canary=policy(ERROR_RATE))
    url = f"{live_server.url}/api/slo/"
    healthy = httpx.get(url, params={"deployment": CANARY}, timeout=30)
    assert healthy.status_code == 200 and healthy.json()["ok"] is True
    assert healthy.json()["checks"][0]["value"] == pytest.approx(0.002, rel=0.2)
    errors_rose(e2e, SPM * 5.0)
    unhealthy = httpx.get(url, params={"deployment": CANARY}, timeout=30)
    assert unhealthy.status_code == 503 and "above the maximum" in unhealthy.json()["reasons"][0]
    e2e.control("POST", "/faults", json={"service": "sentry", "kind": "timeout"})
    unreachable = httpx.get(url, params={"deployment": CANARY}, timeout=60)
    assert unreachable.status_code == 503 and unreachable.json()["checks"][0]["error"]


def test_api_slo_with_datadog_and_posthog_signals(
    project: Project, e2e: Simulator, live_server: Any, settings: Any
) -> None:
    settings.DD_API_KEY, settings.DD_APP_KEY, settings.POSTHOG_API_KEY = "dd-api", "dd-app", "phx_test"
    settings.SLO_PUBLIC, settings.SLO_CACHE_SECONDS = True, 0
    datadog = {
        "kind": "datadog_query",
        "query": "avg:next.server.request.error_rate{deployment_id:$DEPLOYMENT_ID}",
        "max": 0.01,
    }
    posthog = {
        "kind": "posthog_exceptions",
        "max": 20,
        "window": "5m",
        "project_id": "4242",
        "property": "vercel_deployment",
        "value": "$DEPLOYMENT_ID",
    }
    canary_project(project, None, e2e)  # gated, not ramped: /api/slo is asked from outside
    deploy_canary(e2e, errors_per_minute=0)
    wait_for(lambda: Release.objects.filter(deployment_id=CANARY).exists(), what="the release")
    Project.objects.filter(pk=project.pk).update(canary=policy(datadog, posthog))
    now = time.time()
    e2e.control(
        "POST", "/datadog/series", json={"tag": f"deployment_id:{CANARY}", "value": 0.004, "start": now - 600}
    )
    e2e.control(
        "POST",
        "/posthog/exceptions",
        json={
            "project_id": 4242,
            "property": "vercel_deployment",
            "value": CANARY,
            "per_minute": 2,
            "start": now - 600,
        },
    )
    url = f"{live_server.url}/api/slo/"
    healthy = httpx.get(url, params={"deployment": CANARY}, timeout=30)
    assert healthy.status_code == 200, healthy.json()
    values = {c["kind"]: c["value"] for c in healthy.json()["checks"]}
    assert values["datadog_query"] == pytest.approx(0.004)
    assert values["posthog_exceptions"] == 10  # 2 a minute over the 5-minute window
    e2e.control(
        "POST", "/datadog/series", json={"tag": f"deployment_id:{CANARY}", "value": 0.05, "start": now - 600}
    )
    unhealthy = httpx.get(url, params={"deployment": CANARY}, timeout=30)
    assert unhealthy.status_code == 503
    (reason,) = unhealthy.json()["reasons"]
    assert reason.startswith("datadog_query") and "above the maximum 0.01" in reason
