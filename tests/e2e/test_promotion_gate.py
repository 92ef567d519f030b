"""The promotion gate end to end: signed webhook -> polls -> verdict -> Vercel and Slack, for real.

Gatekeeper's web runs as pytest-django's live server, the worker is a real `celery worker` process
on the test database and a test Redis database, and every vendor is the simulator over HTTP.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Release, WebhookDelivery
from releases.scheduling import watchdog
from tests.conftest import Simulator, Worker, wait_for
from tests.e2e.conftest import BASELINE, E2E_PROJECT

pytestmark = pytest.mark.e2e
S = ReleaseState


def deploy(
    sim: Simulator,
    deployment_id: str,
    *,
    crash_rate: float,
    live: bool = False,
    webhooks: tuple[str, ...] = ("deployment.succeeded",),
) -> dict[str, Any]:
    return sim.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": E2E_PROJECT,
            "id": deployment_id,
            "live": live,
            "target": "production",
            "traffic": {
                "org": "acme",
                "project": "shop-web",
                "environment": "production",
                "sessions_per_minute": 12000,
                "crash_rate": crash_rate,
            },
            "webhooks": list(webhooks),
        },
    )


def release_of(deployment_id: str) -> Release | None:
    return Release.objects.filter(deployment_id=deployment_id).first()


def settled(deployment_id: str, *states: str) -> Release:
    def check() -> Release | None:
        release = release_of(deployment_id)
        return release if release is not None and release.state in states else None

    return wait_for(check, timeout=45, what=f"{deployment_id} to reach {states}")


def posts_to(sim: Simulator, fragment: str) -> list[dict[str, Any]]:
    return [
        r for r in sim.requests(service="vercel", method="POST") if fragment in r["path"] and not r["fault"]
    ]


def slack_texts(sim: Simulator) -> list[str]:
    return [m["text"] for m in sim.control("GET", "/slack/messages")["messages"]]


def test_a_healthy_staged_build_is_promoted_and_slack_gets_the_figures(project: Any, e2e: Simulator) -> None:
    settled(BASELINE, S.PROMOTED)
    deploy(e2e, "dpl_e2eGood000000000000000001", crash_rate=0.001)
    release = settled("dpl_e2eGood000000000000000001", S.PROMOTED)
    assert release.verdict == "pass" and release.sessions >= 300
    promotes = posts_to(e2e, "/promote/dpl_e2eGood000000000000000001")
    assert [r["status"] for r in promotes] == [202]
    state = e2e.control("GET", f"/vercel/projects/{E2E_PROJECT}")
    assert state["production_deployment_id"] == "dpl_e2eGood000000000000000001"
    texts = wait_for(lambda: [t for t in slack_texts(e2e) if "passed" in t], what="the Slack verdict")
    assert len(texts) == 1
    assert f"{release.sessions:,} sessions" in texts[0] and "threshold 99.50%" in texts[0]
    baseline = release_of(BASELINE)
    assert baseline is not None and baseline.state == S.SUPERSEDED


def test_a_bad_build_that_went_live_is_rolled_back_to_the_previous_good_deployment(
    project: Any, e2e: Simulator
) -> None:
    settled(BASELINE, S.PROMOTED)
    deploy(
        e2e,
        "dpl_e2eBad0000000000000000001",
        crash_rate=0.05,
        live=True,
        webhooks=("deployment.succeeded", "deployment.promoted"),
    )
    release = settled("dpl_e2eBad0000000000000000001", S.ROLLED_BACK)
    assert release.verdict == "fail" and release.rollback_target == BASELINE
    rollbacks = posts_to(e2e, "/rollback/")
    assert [r["path"].rsplit("/", 1)[-1] for r in rollbacks] == [BASELINE]
    state = e2e.control("GET", f"/vercel/projects/{E2E_PROJECT}")
    assert state["production_deployment_id"] == BASELINE
    assert posts_to(e2e, "/promote/") == []
    texts = wait_for(lambda: [t for t in slack_texts(e2e) if "failed" in t], what="the Slack verdict")
    assert BASELINE in texts[0]


def test_a_bad_staged_build_is_kept_out_without_touching_production(project: Any, e2e: Simulator) -> None:
    settled(BASELINE, S.PROMOTED)
    deploy(e2e, "dpl_e2eBadStaged00000000000001", crash_rate=0.05)
    release = settled("dpl_e2eBadStaged00000000000001", S.ROLLED_BACK)
    assert release.verdict == "fail"
    rollback = Action.objects.get(release=release, kind="rollback")
    assert rollback.status == "succeeded" and "nothing sent" in rollback.result["note"]
    assert posts_to(e2e, "/rollback/") == [] and posts_to(e2e, "/promote/") == []
    assert e2e.control("GET", f"/vercel/projects/{E2E_PROJECT}")["production_deployment_id"] == BASELINE


def test_twenty_identical_deliveries_in_parallel_make_one_gate_and_one_promote(
    project: Any, e2e: Simulator
) -> None:
    settled(BASELINE, S.PROMOTED)
    deploy(e2e, "dpl_e2eTwenty0000000000000001", crash_rate=0.0, webhooks=())
    answer = e2e.control(
        "POST",
        "/vercel/webhooks",
        json={
            "type": "deployment.succeeded",
            "deployment_id": "dpl_e2eTwenty0000000000000001",
            "event_id": "evt_twenty",
            "repeat": 20,
            "parallel": True,
        },
    )
    statuses = sorted(d["status"] for d in answer["deliveries"])
    assert statuses == [200] * 19 + [202]
    settled("dpl_e2eTwenty0000000000000001", S.PROMOTED)
    assert Release.objects.filter(deployment_id="dpl_e2eTwenty0000000000000001").count() == 1
    assert WebhookDelivery.objects.filter(delivery_id="evt_twenty").count() == 1
    assert len(posts_to(e2e, "/promote/dpl_e2eTwenty0000000000000001")) == 1


def test_a_worker_killed_mid_action_still_promotes_exactly_once(
    project: Any, e2e: Simulator, worker: Worker
) -> None:
    settled(BASELINE, S.PROMOTED)
    # Hold the promote's first Vercel call open so the worker is inside the action when killed.
    e2e.control(
        "POST",
        "/faults",
        json={
            "service": "vercel",
            "method": "GET",
            "path_contains": f"/v9/projects/{E2E_PROJECT}",
            "kind": "timeout",
            "delay": 8,
            "count": 1,
        },
    )
    deploy(e2e, "dpl_e2eKilled0000000000000001", crash_rate=0.0)

    def promote_running() -> Action | None:
        action = Action.objects.filter(
            kind="promote", release__deployment_id="dpl_e2eKilled0000000000000001", status="running"
        ).first()
        return action

    wait_for(promote_running, timeout=45, what="the promote to be running")
    # Claimed is not enough: kill only once the worker is inside the held request.
    wait_for(
        lambda: [r for r in e2e.requests(service="vercel", method="GET") if r["fault"]],
        what="the held request",
    )
    worker.kill()
    time.sleep(4.5)  # the action's lease (4 s in this worker) runs out: its owner is gone
    worker.start()
    wait_for(
        lambda: watchdog.redrive()["actions"] >= 1, timeout=20, what="the watchdog to re-drive the promote"
    )
    release = settled("dpl_e2eKilled0000000000000001", S.PROMOTED)
    accepted = [r for r in posts_to(e2e, "/promote/dpl_e2eKilled0000000000000001") if r["status"] == 202]
    assert len(accepted) == 1
    # The simulator's deployment.promoted webhook may mark the release a moment before the worker
    # records the action's own confirmation.
    action = wait_for(
        lambda: Action.objects.filter(release=release, kind="promote", status="succeeded").first(),
        what="the promote action to be confirmed",
    )
    # The killed attempt and the re-driven one at least. Under a loaded machine (a CI run) a slow
    # vendor answer can add a retry of its own (3 attempts): still one promote sent, above.
    assert action.attempts >= 2
