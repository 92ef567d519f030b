"""The simulated incidents list (docs/vendor-apis.md §3.6): what alerts leave open in Sentry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

INCIDENTS = "/sentry/api/0/organizations/acme/incidents/"


@pytest.fixture
def sentry(simulator_process: Any, control: httpx.Client) -> Iterator[httpx.Client]:
    for slug, ident in (("shop-web", 4507), ("admin-web", 4508)):
        known = {"org": "acme", "slug": slug, "id": ident, "environments": ["production"]}
        assert control.post("/_sim/sentry/projects", json=known).status_code == 201
    with simulator_process.client(headers={"Authorization": "Bearer sntrys_test"}) as client:
        yield client


def lost_alert(control: httpx.Client, incident_id: str, action: str = "critical", **extra: Any) -> None:
    body = {"action": action, "project": "shop-web", "org": "acme", "incident_id": incident_id}
    response = control.post("/_sim/sentry/webhooks", json={**body, "deliver": False, **extra})
    assert response.status_code == 200, response.text
    assert response.json()["deliveries"] == []


def test_an_alert_whose_webhook_was_lost_is_listed_open_in_camel_case(
    sentry: httpx.Client, control: httpx.Client
) -> None:
    lost_alert(control, "812")
    rows = sentry.get(INCIDENTS, params={"status": "open", "project": "4507"}).json()
    assert [(r["id"], r["status"], r["projects"]) for r in rows] == [("812", 20, ["shop-web"])]
    assert rows[0]["alertRule"]["aggregate"].startswith("percentage(sessions_crashed")
    assert rows[0]["alertRule"]["environment"] == "production" and rows[0]["dateClosed"] is None


def test_resolved_closes_it_and_filters_choose_by_status_and_project(
    sentry: httpx.Client, control: httpx.Client
) -> None:
    lost_alert(control, "812")
    lost_alert(control, "813", "warning")
    lost_alert(control, "814", project="admin-web")
    lost_alert(control, "812", "resolved")
    ids = {
        status: [r["id"] for r in sentry.get(INCIDENTS, params={"status": status, "project": "4507"}).json()]
        for status in ("open", "closed", "warning", "critical")
    }
    assert ids == {"open": ["813"], "closed": ["812"], "warning": ["813"], "critical": []}
    assert [r["id"] for r in sentry.get(INCIDENTS, params={"project": "4508"}).json()] == ["814"]


def test_it_pages_with_offset_cursors(sentry: httpx.Client, control: httpx.Client) -> None:
    for number in range(5):
        lost_alert(control, str(900 + number), date_started=1_767_000_000 + number)
    first = sentry.get(INCIDENTS, params={"status": "open", "per_page": "2"})
    assert [r["id"] for r in first.json()] == ["904", "903"]  # newest first
    assert first.links["next"]["results"] == "true" and first.links["next"]["cursor"] == "2:1:0"
    last = sentry.get(INCIDENTS, params={"status": "open", "per_page": "2", "cursor": "2:2:0"})
    assert [r["id"] for r in last.json()] == ["900"] and last.links["next"]["results"] == "false"


def test_a_slug_for_project_is_refused_like_the_data_endpoints(sentry: httpx.Client) -> None:
    response = sentry.get(INCIDENTS, params={"project": "shop-web"})
    assert response.status_code == 400 and "must be numbers" in response.json()["detail"]
