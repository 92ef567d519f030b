"""Alert rollback end to end: a signed Sentry alert in, the rollback call out, one page, one message.

Also the bake watch: a live release that starts crashing is rolled back with no alert at all.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Project, Release
from tests.conftest import PD_KEY_ENV, Simulator, wait_for
from tests.e2e.conftest import BASELINE, E2E_PROJECT

pytestmark = pytest.mark.e2e
S = ReleaseState
LIVE = "dpl_e2eLive00000000000000000001"


@pytest.fixture
def paged_project(project: Project) -> Project:
    Project.objects.filter(pk=project.pk).update(pagerduty_routing_key_env=PD_KEY_ENV)
    project.refresh_from_db()
    return project


def go_live(sim: Simulator, deployment_id: str = LIVE, crash_rate: float = 0.0) -> Release:
    """A release that goes straight to production (no gate), as Vercel reports it."""
    wait_for(
        lambda: Release.objects.filter(deployment_id=BASELINE, state=S.PROMOTED).exists(), what="baseline"
    )
    sim.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": E2E_PROJECT,
            "id": deployment_id,
            "live": True,
            "target": "production",
            "traffic": {
                "org": "acme",
                "project": "shop-web",
                "environment": "production",
                "sessions_per_minute": 12000,
                "crash_rate": crash_rate,
            },
            "webhooks": ["deployment.promoted"],
        },
    )
    return wait_for(
        lambda: Release.objects.filter(deployment_id=deployment_id, state=S.PROMOTED).first(),
        what=f"{deployment_id} live",
    )


def alert(sim: Simulator, action: str, *, started: float | None = None, **extra: Any) -> list[dict[str, Any]]:
    body = {
        "action": action,
        "project": "shop-web",
        "org": "acme",
        "environment": "production",
        "date_started": started if started is not None else time.time(),
        "incident_id": "9001",
        **extra,
    }
    return sim.control("POST", "/sentry/webhooks", json=body)["deliveries"]


def rollbacks(sim: Simulator) -> list[dict[str, Any]]:
    return [
        r for r in sim.requests(service="vercel", method="POST", path_contains="/rollback/") if not r["fault"]
    ]


def incidents(sim: Simulator) -> list[dict[str, Any]]:
    return sim.control("GET", "/pagerduty/incidents")["incidents"]


def test_a_critical_alert_rolls_back_pages_once_and_tells_slack(
    paged_project: Project, e2e: Simulator
) -> None:
    release = go_live(e2e)
    deliveries = alert(e2e, "critical")
    assert [d["status"] for d in deliveries] == [202], deliveries
    wait_for(lambda: Release.objects.filter(pk=release.pk, state=S.ROLLED_BACK).exists(), what="rolled back")
    assert [r["path"].rsplit("/", 1)[-1] for r in rollbacks(e2e)] == [BASELINE]
    assert e2e.control("GET", f"/vercel/projects/{E2E_PROJECT}")["production_deployment_id"] == BASELINE
    pages = wait_for(lambda: incidents(e2e), what="the page")
    assert len(pages) == 1 and pages[0]["status"] == "triggered"
    assert pages[0]["dedup_key"] == f"gatekeeper/{paged_project.name}/{LIVE}"
    details = pages[0]["events"][0]["payload"]["custom_details"]
    assert details["rollback_target"] == BASELINE and details["release"] == release.version
    assert details["rollback_status"] in ("pending", "running", "confirming", "succeeded")
    texts = wait_for(
        lambda: [
            m["text"]
            for m in e2e.control("GET", "/slack/messages")["messages"]
            if "rolling back" in m["text"]
        ],
        what="the Slack announcement",
    )
    assert len(texts) == 1 and BASELINE in texts[0]
    # Rolled back for good: never a rollback target again.
    assert Release.objects.get(pk=release.pk).rolled_back_at is not None


def test_resolved_resolves_the_same_pagerduty_incident(paged_project: Project, e2e: Simulator) -> None:
    go_live(e2e)
    alert(e2e, "critical")
    wait_for(lambda: incidents(e2e), what="the page")
    assert [d["status"] for d in alert(e2e, "resolved")] == [202]
    resolved = wait_for(lambda: [i for i in incidents(e2e) if i["status"] == "resolved"], what="resolve")
    assert len(resolved) == 1 and len(incidents(e2e)) == 1
    assert Incident.objects.get().status == "resolved"


def test_a_stale_alert_does_nothing(paged_project: Project, e2e: Simulator) -> None:
    release = go_live(e2e)
    deliveries = alert(e2e, "critical", started=time.time() - 600)  # before the release went live
    assert [d["status"] for d in deliveries] == [200]
    time.sleep(1.5)  # give a wrongly enqueued action time to show itself
    assert rollbacks(e2e) == [] and incidents(e2e) == []
    assert Release.objects.get(pk=release.pk).state == S.PROMOTED
    assert Incident.objects.get().status == "stale"


def test_ten_identical_alerts_in_parallel_roll_back_once(paged_project: Project, e2e: Simulator) -> None:
    release = go_live(e2e)
    statuses = sorted(d["status"] for d in alert(e2e, "critical", repeat=10, parallel=True))
    assert statuses == [200] * 9 + [202]
    wait_for(lambda: Release.objects.filter(pk=release.pk, state=S.ROLLED_BACK).exists(), what="rolled back")
    time.sleep(1)
    assert len(rollbacks(e2e)) == 1
    assert Action.objects.filter(kind="rollback").count() == 1
    assert len(incidents(e2e)) == 1


def test_with_no_known_good_deployment_it_pages_without_rolling_back(
    paged_project: Project, e2e: Simulator
) -> None:
    release = go_live(e2e)
    Release.objects.filter(deployment_id=BASELINE).update(rolled_back_at=timezone.now())
    alert(e2e, "critical")
    pages = wait_for(lambda: incidents(e2e), what="the page")
    assert "NOT rolled back" in pages[0]["events"][0]["payload"]["summary"]
    assert rollbacks(e2e) == []
    assert Release.objects.get(pk=release.pk).state == S.PROMOTED


def test_the_bake_watch_rolls_back_a_crashing_release_without_any_alert(
    paged_project: Project, e2e: Simulator
) -> None:
    release = go_live(e2e, "dpl_e2eBakeBad000000000000001", crash_rate=0.05)
    wait_for(
        lambda: Release.objects.filter(pk=release.pk, state=S.ROLLED_BACK).exists(),
        timeout=45,
        what="the bake watch to roll it back",
    )
    assert [r["path"].rsplit("/", 1)[-1] for r in rollbacks(e2e)] == [BASELINE]
    check = release.checks.filter(analysis__kind="bake").order_by("-checked_at").first()
    assert check is not None and check.outcome == "fail"
    assert check.analysis.phase == "failed"
    assert (
        "bake watch"
        in wait_for(lambda: incidents(e2e), what="the page")[0]["events"][0]["payload"]["custom_details"][
            "cause"
        ]
    )
