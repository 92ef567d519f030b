"""The first releases after installing Gatekeeper on a Vercel project that already serves production.

Gatekeeper has no record of what serves production there: it never saw a promote. These tests
start from that state (the baseline is live in the simulator, and no webhook told Gatekeeper)
with a real worker, the web and the simulator over HTTP, and with Vercel's Rolling Releases
configured on the project, as many real projects have them.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Project, Release
from tests.conftest import Simulator, wait_for
from tests.e2e.test_canary_ramp import ERROR_RATE, policy
from tests.factories import make_project

pytestmark = pytest.mark.e2e
S = ReleaseState
PROJECT = "prj_e2eFirstInstall0000000001"
BASELINE = "dpl_e2eFirstBaseline000000001"
NEW = "dpl_e2eFirstNew0000000000001"
SPM = 12000


def installed(sim: Simulator, *, canary: dict[str, Any] | None, rolling: bool) -> Project:
    """Vercel serves BASELINE on the production domain; Gatekeeper was just installed."""
    sim.control(
        "POST",
        "/vercel/projects",
        json={
            "id": PROJECT,
            "name": "storefront",
            "domains": ["store.example.com"],
            "sentry": {
                "org": "acme",
                "project": "storefront",
                "project_id": 4600,
                "environment": "production",
            },
        },
    )
    if rolling:
        sim.control(
            "PATCH", f"/vercel/projects/{PROJECT}", json={"rolling_release": {"stages": [5, 25, 100]}}
        )
    sim.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": PROJECT,
            "id": BASELINE,
            "live": True,
            "target": "production",
            "meta": {"githubCommitSha": BASELINE},
            "traffic": {
                "release": BASELINE,
                "sessions_per_minute": SPM,
                "crash_rate": 0.0,
                "start": time.time() - 600,
            },
            "webhooks": [],  # before Gatekeeper: nothing told it
        },
    )
    return make_project(
        name="storefront",
        vercel_project_id=PROJECT,
        production_domains=["store.example.com"],
        sentry_project="storefront",
        sentry_project_id=None,
        sentry_project_slug="",
        min_sessions=300,
        poll_interval=timedelta(seconds=1),
        max_wait=timedelta(minutes=5),
        canary=canary,
    )


def deploy(sim: Simulator, *, crash_rate: float = 0.0, errors_per_minute: float = 0.0) -> None:
    sim.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": PROJECT,
            "id": NEW,
            "target": "production",
            "meta": {"githubCommitSha": NEW},
            "traffic": {
                "release": NEW,
                "sessions_per_minute": SPM,
                "crash_rate": crash_rate,
                "errors_per_minute": errors_per_minute,
                "start": time.time() - 600,
            },
            "webhooks": ["deployment.succeeded"],
        },
    )


def settled(deployment_id: str, *states: str, timeout: float = 60) -> Release:
    def check() -> Release | None:
        release = Release.objects.filter(deployment_id=deployment_id).first()
        return release if release is not None and release.state in states else None

    return wait_for(check, timeout=timeout, what=f"{deployment_id} to reach {states}")


def vercel_state(sim: Simulator) -> dict[str, Any]:
    return sim.control("GET", f"/vercel/projects/{PROJECT}")


def test_the_first_canary_release_is_ramped_from_what_vercel_says_serves_production(e2e: Simulator) -> None:
    installed(e2e, canary=policy(ERROR_RATE), rolling=True)
    deploy(e2e, errors_per_minute=SPM * 0.001)

    release = settled(NEW, S.PROMOTED)

    baseline = Release.objects.get(deployment_id=BASELINE)
    assert baseline.learned and baseline.version == BASELINE
    assert baseline.state == S.SUPERSEDED  # live until the canary completed
    assert release.rollback_target == BASELINE
    assert release.events.filter(to_state=S.RAMPING).exists()
    state = vercel_state(e2e)
    assert state["production_deployment_id"] == NEW
    percents = [h["percent"] for h in state["rolling_release"]["history"]]
    assert percents[0] == 5 and percents[-1] == 100
    learn = Action.objects.get(release=release, kind="learn")
    assert (learn.status, learn.result["serving"]) == ("succeeded", BASELINE)


def test_a_promote_that_starts_a_vercel_rolling_release_is_driven_to_completion(e2e: Simulator) -> None:
    installed(e2e, canary=None, rolling=True)
    deploy(e2e, crash_rate=0.0)

    release = settled(NEW, S.PROMOTED)

    promote = Action.objects.get(release=release, kind="promote")
    assert promote.status == "succeeded" and promote.result["completed_rolling_release"] is True
    state = vercel_state(e2e)
    assert state["production_deployment_id"] == NEW
    assert state["rolling_release"]["release"]["state"] == "COMPLETE"
    # What Vercel served before is on record now: the rollback target should this one go bad.
    assert Release.objects.get(deployment_id=BASELINE).learned


def test_a_failing_first_staged_build_keeps_the_deployment_vercel_serves(e2e: Simulator) -> None:
    installed(e2e, canary=None, rolling=False)
    deploy(e2e, crash_rate=0.05)

    release = settled(NEW, S.ROLLED_BACK)

    assert release.verdict == "fail" and release.rollback_target == BASELINE
    rollback = Action.objects.get(release=release, kind="rollback")
    assert rollback.status == "succeeded" and "nothing sent" in rollback.result["note"]
    assert vercel_state(e2e)["production_deployment_id"] == BASELINE
