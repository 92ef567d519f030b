"""A metric alert whose webhook never arrived still rolls back: Sentry's open incidents are read.

Sentry sends each alert once; these tests lose the webhook on purpose (``deliver: false``) and
let the reconciliation find the incident, through the simulator's incidents list over HTTP.
"""

from __future__ import annotations

import time

import pytest

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Project, Release, WebhookDelivery
from releases.workflows.reconcile_alerts import reconcile
from tests.conftest import Simulator, wait_for
from tests.e2e.conftest import BASELINE
from tests.e2e.test_alert_rollback import alert, go_live, incidents, paged_project, rollbacks

pytestmark = pytest.mark.e2e
S = ReleaseState
__all__ = ["paged_project"]  # the fixture, used by name


@pytest.fixture
def resolved(paged_project: Project) -> Project:
    # The incidents list takes numeric project ids, as the data endpoints do.
    Project.objects.filter(pk=paged_project.pk).update(sentry_project_id=4507, sentry_project_slug="shop-web")
    paged_project.refresh_from_db()
    return paged_project


def test_a_lost_critical_alert_is_found_open_in_sentry_and_rolled_back_once(
    resolved: Project, e2e: Simulator
) -> None:
    release = go_live(e2e)
    assert alert(e2e, "critical", deliver=False) == []
    first = reconcile()
    assert first["acted"] == 1 and first["failed"] == 0, first
    wait_for(lambda: Release.objects.filter(pk=release.pk, state=S.ROLLED_BACK).exists(), what="rolled back")
    assert [r["path"].rsplit("/", 1)[-1] for r in rollbacks(e2e)] == [BASELINE]
    pages = wait_for(lambda: incidents(e2e), what="the page")
    assert (
        len(pages) == 1
        and "webhook never arrived" in pages[0]["events"][0]["payload"]["custom_details"]["cause"]
    )
    delivery = WebhookDelivery.objects.get(delivery_id="metric_alert:9001:critical")
    assert "found open in Sentry" in delivery.note
    # The incident is still open in Sentry: the next pass, and a late webhook, change nothing.
    assert reconcile()["known"] == 1
    assert [d["status"] for d in alert(e2e, "critical")] == [200]
    time.sleep(1)
    assert Action.objects.filter(kind="rollback").count() == 1 and len(rollbacks(e2e)) == 1
    assert Incident.objects.get().status == "open"


def test_an_alert_whose_webhook_arrived_is_not_acted_on_twice(resolved: Project, e2e: Simulator) -> None:
    release = go_live(e2e)
    assert [d["status"] for d in alert(e2e, "critical")] == [202]
    wait_for(lambda: Release.objects.filter(pk=release.pk, state=S.ROLLED_BACK).exists(), what="rolled back")
    assert reconcile()["known"] == 1
    assert Action.objects.filter(kind="rollback").count() == 1


def test_an_open_incident_that_does_not_measure_crashes_is_left_alone(
    resolved: Project, e2e: Simulator
) -> None:
    release = go_live(e2e)
    alert(e2e, "critical", deliver=False, aggregate="p95(transaction.duration)")
    assert reconcile()["not_crashes"] == 1
    assert not WebhookDelivery.objects.filter(source="sentry").exists()
    assert Release.objects.get(pk=release.pk).state == S.PROMOTED


def test_a_lost_alert_from_before_the_release_went_live_is_recorded_stale(
    resolved: Project, e2e: Simulator
) -> None:
    release = go_live(e2e)
    alert(e2e, "critical", deliver=False, started=time.time() - 600)
    assert reconcile()["acted"] == 1
    time.sleep(1)
    assert Incident.objects.get().status == "stale" and rollbacks(e2e) == []
    assert Release.objects.get(pk=release.pk).state == S.PROMOTED


def test_sentry_unreachable_changes_nothing_and_the_next_pass_acts(resolved: Project, e2e: Simulator) -> None:
    release = go_live(e2e)
    alert(e2e, "critical", deliver=False)
    e2e.control(
        "POST",
        "/faults",
        json={"service": "sentry", "kind": "5xx", "status": 500, "path_contains": "/incidents/"},
    )
    assert reconcile()["failed"] == 1
    assert Release.objects.get(pk=release.pk).state == S.PROMOTED
    e2e.control("DELETE", "/faults")
    assert reconcile()["acted"] == 1
    wait_for(lambda: Release.objects.filter(pk=release.pk, state=S.ROLLED_BACK).exists(), what="rolled back")
