"""Every Vercel deployment event and every Sentry metric-alert shape in the vendors' references,
one captured-shape payload each (tests/payloads/), posted signed as the vendor sends it: what
Gatekeeper records, what it answers, and what moves or does not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from releases.core.production import live_and_known_good
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Project, Release, ReleaseEvent, WebhookDelivery
from tests.factories import gating_release, make_project, make_release
from tests.releases.inbound.test_sentry import alert
from tests.releases.inbound.test_sentry import post as post_sentry
from tests.releases.inbound.test_vercel import load
from tests.releases.inbound.test_vercel import post as post_vercel

pytestmark = pytest.mark.django_db
S = ReleaseState

NEW = "dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q"  # the deployment the captured payloads are about
GOOD = "dpl_5Fw8Jk2Np6Rt0Vx4Bz8Dh2Lm9S"  # the one before it, a rollback target
LIVE_FOR = timedelta(minutes=30)


def snapshot(project: Project) -> tuple[Any, ...]:
    """What Gatekeeper holds as production: the live deployment, since when, every release's state
    and when it was promoted or rolled back."""
    project.refresh_from_db()
    releases = Release.objects.filter(project=project).order_by("deployment_id")
    return (
        project.live_deployment_id,
        project.live_since,
        list(releases.values_list("deployment_id", "state", "promoted_at", "rolled_back_at")),
    )


@dataclass
class Production:
    project: Project
    good: Release
    live: Release


def production(live_state: str = S.PROMOTED) -> Production:
    """NEW serves production (by our records) since LIVE_FOR ago; GOOD served before it."""
    project = make_project()
    now = timezone.now()
    good = make_release(project, deployment_id=GOOD, state=S.SUPERSEDED, promoted_at=now - timedelta(days=1))
    live = make_release(project, deployment_id=NEW, state=live_state, promoted_at=now - LIVE_FOR)
    Project.objects.filter(pk=project.pk).update(live_deployment_id=NEW, live_since=now - LIVE_FOR)
    project.refresh_from_db()
    return Production(project, good, live)


def good_serves() -> Project:
    """GOOD serves production (by our records) since LIVE_FOR ago; NEW is not known yet."""
    project = make_project()
    now = timezone.now()
    make_release(project, deployment_id=GOOD, state=S.PROMOTED, promoted_at=now - LIVE_FOR)
    Project.objects.filter(pk=project.pk).update(live_deployment_id=GOOD, live_since=now - LIVE_FOR)
    return project


# --- Vercel: deployment.promoted, with and without payload.target ------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [("deployment_promoted.json", None), ("deployment_promoted_production.json", "production")],
)
def test_promoted_with_or_without_a_target_records_the_deployment_as_live_in_production(
    client: Client, name: str, target: str | None
) -> None:
    project = good_serves()
    event = load(name)
    assert event["payload"].get("target") == target
    response = post_vercel(client, event)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    project.refresh_from_db()
    assert project.live_deployment_id == NEW
    live = Release.objects.get(deployment_id=NEW)
    # Promotion is production whether or not the payload says so.
    assert (live.state, live.target) == (S.PROMOTED, "production")
    assert live.promoted_at is not None
    assert Release.objects.get(deployment_id=GOOD).state == S.SUPERSEDED
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.release_id) == ("accepted", live.pk)


# --- Vercel: deployment.rollback is a request, not a switch ------------------------------------


@pytest.mark.parametrize("live_state", [S.PROMOTED, S.ROLLING_BACK])
def test_rollback_request_is_noted_on_both_releases_and_moves_nothing(
    client: Client, live_state: str
) -> None:
    # ROLLING_BACK: Gatekeeper asked for this rollback itself; it is confirmed over REST, not here.
    scene = production(live_state)
    before = snapshot(scene.project)
    response = post_vercel(client, load("deployment_rollback.json"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ignored"
    assert snapshot(scene.project) == before
    # The next alert is still judged against NEW, and GOOD is still where it would roll back to.
    assert live_and_known_good(scene.project) == (scene.live, scene.good)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event_type, delivery.outcome) == ("deployment.rollback", "ignored")
    assert (delivery.project_id, delivery.release_id) == (scene.project.pk, scene.good.pk)
    assert f"rollback to {GOOD} requested" in delivery.note and "live unchanged" in delivery.note
    notes = ReleaseEvent.objects.filter(kind=ReleaseEvent.Kind.NOTE, actor="vercel")
    assert sorted(notes.values_list("release__deployment_id", flat=True)) == sorted([GOOD, NEW])
    assert all("unchanged until the switch is confirmed" in n.reason and NEW in n.reason for n in notes)
    assert not ReleaseEvent.objects.filter(kind=ReleaseEvent.Kind.TRANSITION).exists()
    # The one action asks Vercel until production serves the deployment asked for.
    (confirm,) = Action.objects.all()
    assert (confirm.kind, confirm.payload["then"], confirm.payload["expect"]) == ("learn", "confirm", GOOD)


def test_rollback_request_without_from_or_to_is_noted_on_the_live_release(client: Client) -> None:
    scene = production()
    event = load("deployment_rollback.json")
    for key in ("fromDeploymentId", "toDeploymentId", "deployment"):
        del event["payload"][key]
    before = snapshot(scene.project)
    response = post_vercel(client, event)
    assert response.status_code == 200, response.content
    assert snapshot(scene.project) == before
    note = ReleaseEvent.objects.get(kind=ReleaseEvent.Kind.NOTE)
    assert note.release_id == scene.live.pk and "an earlier deployment" in note.reason
    assert WebhookDelivery.objects.get().release_id == scene.live.pk


def test_rollback_request_for_a_project_gatekeeper_does_not_know_is_recorded_and_ignored(
    client: Client,
) -> None:
    scene = production()
    event = load("deployment_rollback.json")
    event["payload"]["project"]["id"] = "prj_SomeoneElse0000000000000"
    before = snapshot(scene.project)
    response = post_vercel(client, event)
    assert response.status_code == 200
    assert "unknown project prj_SomeoneElse" in response.json()["detail"]
    assert snapshot(scene.project) == before
    assert WebhookDelivery.objects.get().project_id is None
    assert not ReleaseEvent.objects.exists()


def test_rollback_request_with_a_wrongly_typed_deployment_id_is_400_and_changes_nothing(
    client: Client,
) -> None:
    scene = production()
    event = load("deployment_rollback.json")
    event["payload"]["toDeploymentId"] = 42
    before = snapshot(scene.project)
    response = post_vercel(client, event)
    assert response.status_code == 400
    assert "payload.toDeploymentId" in response.json()["detail"]
    assert snapshot(scene.project) == before
    assert not WebhookDelivery.objects.exists() and not ReleaseEvent.objects.exists()


# --- Vercel: the events Gatekeeper takes no action on ------------------------------------------


@pytest.mark.parametrize(
    ("name", "event_type"),
    [
        ("deployment_created.json", "deployment.created"),
        ("deployment_cleanup.json", "deployment.cleanup"),
        ("deployment_check_rerequested.json", "deployment.check-rerequested"),
        ("deployment_checks_failed.json", "deployment.checks.failed"),
        ("deployment_checks_succeeded.json", "deployment.checks.succeeded"),
        ("project_rolling_release_started.json", "project.rolling-release.started"),
        ("project_rolling_release_approved.json", "project.rolling-release.approved"),
        ("project_rolling_release_completed.json", "project.rolling-release.completed"),
        ("project_rolling_release_aborted.json", "project.rolling-release.aborted"),
        ("legacy_deployment_ready.json", "deployment-ready"),  # the deprecated name and shape
    ],
)
def test_an_event_gatekeeper_does_not_act_on_is_acknowledged_recorded_and_moves_nothing(
    client: Client, name: str, event_type: str
) -> None:
    project = good_serves()
    gating = gating_release(project, deployment_id=NEW)  # what these events are about
    before = snapshot(project)
    event = load(name)
    assert event["type"] == event_type
    response = post_vercel(client, event)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ignored"
    assert snapshot(project) == before
    gating.refresh_from_db()
    assert gating.state == S.GATING and gating.analyses.get().phase == "running"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event_type, delivery.outcome, delivery.release_id) == (event_type, "ignored", None)
    assert delivery.note == f"{event_type}: not used by Gatekeeper"  # a known type, not a new one
    assert delivery.payload == event
    assert ReleaseEvent.objects.filter(release=gating).count() == 0
    assert post_vercel(client, event).json()["status"] == "duplicate"


def test_a_captured_payload_posted_a_day_later_is_refused_as_a_replay(client: Client) -> None:
    scene = production()
    event = load("deployment_rollback.json")
    event["createdAt"] = int((timezone.now() - timedelta(hours=25)).timestamp() * 1000)
    before = snapshot(scene.project)
    response = post_vercel(client, event)
    assert response.status_code == 400
    assert "replay window" in response.json()["detail"]
    assert snapshot(scene.project) == before
    assert not WebhookDelivery.objects.exists() and not ReleaseEvent.objects.exists()


# --- Sentry: every metric-alert shape, told apart by the org in its link -----------------------


@dataclass
class TwoOrgs:
    """Two projects whose Sentry projects share the slug ``shop-web``, in orgs acme and globex:
    only the alert's link says which one it is about."""

    live: dict[str, Release]
    good: dict[str, Release]


@pytest.fixture
def two_orgs(monkeypatch: pytest.MonkeyPatch) -> TwoOrgs:
    monkeypatch.setenv("PD_KEY", "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73")
    now = timezone.now()
    live: dict[str, Release] = {}
    good: dict[str, Release] = {}
    for org, vercel_id in (
        ("acme", "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7"),
        ("globex", "prj_Gx2Bq9Wt4Rn7Lk1Vz6Hd3Sp"),
    ):
        project = make_project(
            name=f"shop-web-{org}",
            vercel_project_id=vercel_id,
            sentry_org=org,
            pagerduty_routing_key_env="PD_KEY",
        )
        good[org] = make_release(project, state=S.SUPERSEDED, promoted_at=now - timedelta(days=2))
        live[org] = make_release(project, state=S.PROMOTED, promoted_at=now - LIVE_FOR)
        Project.objects.filter(pk=project.pk).update(
            live_deployment_id=live[org].deployment_id, live_since=now - LIVE_FOR
        )
    return TwoOrgs(live, good)


def in_org(payload: dict[str, Any], org: str) -> dict[str, Any]:
    """The payload as the same alert in ``org`` would link it."""
    payload["data"]["web_url"] = payload["data"]["web_url"].replace("acme", org)
    return payload


def states(scene: TwoOrgs) -> dict[str, str]:
    return {org: Release.objects.get(pk=r.pk).state for org, r in scene.live.items()}


@pytest.mark.parametrize("org", ["acme", "globex"])
@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("metric_alert_critical.json", "https://acme.sentry.io/alerts/rules/details/341/"),
        ("metric_alert_critical_org_in_path.json", "https://sentry.io/organizations/acme/alerts/64/"),
        (
            "metric_alert_critical_customer_domain.json",
            "https://acme.sentry.io/alerts/rules/details/341/?alert=65&referrer=metric_alert_sentry_app",
        ),
    ],
)
def test_a_critical_rolls_back_only_the_org_its_link_names(
    client: Client, two_orgs: TwoOrgs, name: str, url: str, org: str
) -> None:
    payload = in_org(alert(name), org)
    assert payload["data"]["web_url"].startswith(url.replace("acme", org))
    response = post_sentry(client, payload)
    assert response.status_code == 202, response.content
    other = "globex" if org == "acme" else "acme"
    assert states(two_orgs) == {org: S.ROLLING_BACK, other: S.PROMOTED}
    rollback = Action.objects.get(kind="rollback")
    assert rollback.payload["deployment_id"] == two_orgs.good[org].deployment_id
    incident = Incident.objects.get()
    assert incident.project_id == two_orgs.live[org].project_id
    assert (incident.web_url, incident.severity, incident.status) == (
        payload["data"]["web_url"],
        "critical",
        Incident.Status.OPEN,
    )
    assert incident.description == payload["data"]["description_text"]


@pytest.mark.parametrize("org", ["acme", "globex"])
def test_a_warning_from_an_error_count_rule_in_no_environment_tells_slack_for_its_org(
    client: Client, two_orgs: TwoOrgs, org: str
) -> None:
    payload = in_org(alert("metric_alert_warning_error_count.json"), org)
    assert payload["data"]["metric_alert"]["alert_rule"]["environment"] is None
    response = post_sentry(client, payload)
    assert response.status_code == 202, response.content
    assert states(two_orgs) == {"acme": S.PROMOTED, "globex": S.PROMOTED}
    slack = Action.objects.get()
    assert (slack.kind, slack.release_id) == ("slack", two_orgs.live[org].pk)
    incident = Incident.objects.get()
    assert (incident.project_id, incident.severity) == (two_orgs.live[org].project_id, "warning")
    assert "\nFilter: level:error" in incident.description


@pytest.mark.parametrize("org", ["acme", "globex"])
def test_a_resolve_linked_on_the_org_path_resolves_the_page_the_critical_opened(
    client: Client, two_orgs: TwoOrgs, org: str
) -> None:
    assert (
        post_sentry(client, in_org(alert("metric_alert_critical_customer_domain.json"), org)).status_code
        == 202
    )
    trigger = Action.objects.get(kind="pagerduty")
    resolved = in_org(alert("metric_alert_resolved_org_in_path.json"), org)
    assert f"/organizations/{org}/" in resolved["data"]["web_url"]
    response = post_sentry(client, resolved)
    assert response.status_code == 202, response.content
    assert "PagerDuty resolve sent" in response.json()["detail"]
    resolve = Action.objects.filter(kind="pagerduty").exclude(pk=trigger.pk).get()
    assert resolve.payload["event_action"] == "resolve"
    assert resolve.payload["dedup_key"] == trigger.payload["dedup_key"]
    incident = Incident.objects.get()
    assert (incident.project_id, incident.status) == (two_orgs.live[org].project_id, Incident.Status.RESOLVED)
    assert incident.description == resolved["data"]["description_text"]
    assert Action.objects.filter(kind="rollback").count() == 1  # a resolve never rolls back again
