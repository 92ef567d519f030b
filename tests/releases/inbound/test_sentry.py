"""POST /webhooks/sentry/: metric alerts roll the live release back, page and tell Slack; every
bad input is refused and changes nothing (docs/vendor-apis.md §3.5)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Project, Release, ReleaseEvent, WebhookDelivery
from tests.factories import SENTRY_SECRET, make_analysis, make_project, make_release

URL = "/webhooks/sentry/"
PAYLOADS = Path(__file__).resolve().parents[2] / "payloads" / "sentry"
PD_KEY = "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73"  # a 32-character Events API v2 routing key
LIVE_FOR = timedelta(minutes=30)

pytestmark = pytest.mark.django_db
S = ReleaseState


def load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(
    name: str = "metric_alert_critical.json",
    *,
    started: timedelta = timedelta(minutes=5),
    incident: str | None = None,
    **rule: Any,
) -> dict[str, Any]:
    """A captured payload whose incident started ``started`` ago (after the live release went live)."""
    payload = load(name)
    metric_alert = payload["data"]["metric_alert"]
    metric_alert["date_started"] = iso(timezone.now() - started)
    if incident is not None:
        metric_alert["id"] = metric_alert["identifier"] = incident
    metric_alert["alert_rule"].update(rule)
    return payload


def compact(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signature(body: bytes, secret: str = SENTRY_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(
    client: Client, payload: dict[str, Any] | bytes, *, resource: str = "metric_alert", **overrides: Any
) -> Any:
    """Deliver as Sentry does; a header overridden with None is left out."""
    body = payload if isinstance(payload, bytes) else compact(payload)
    headers: dict[str, Any] = {
        "HTTP_SENTRY_HOOK_RESOURCE": resource,
        "HTTP_SENTRY_HOOK_TIMESTAMP": str(int(time.time())),
        "HTTP_SENTRY_HOOK_SIGNATURE": signature(body),
        "HTTP_REQUEST_ID": secrets.token_hex(16),
        **overrides,
    }
    headers = {name: value for name, value in headers.items() if value is not None}
    return client.post(URL, data=body, content_type="application/json", **headers)


def row_counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (WebhookDelivery, Incident, Action, ReleaseEvent))


def dispatched(no_broker: list[Any]) -> list[int]:
    return [args[0] for name, args, _ in no_broker if name == "releases.run_action"]


@dataclass
class Scene:
    project: Project
    good: Release
    live: Release


@pytest.fixture
def scene(monkeypatch: pytest.MonkeyPatch) -> Scene:
    monkeypatch.setenv("PD_KEY", PD_KEY)
    project = make_project(sentry_project="shop-web", pagerduty_routing_key_env="PD_KEY")
    now = timezone.now()
    good = make_release(
        project,
        deployment_id="dpl_good",
        version="web@1.4.1",
        state=S.SUPERSEDED,
        promoted_at=now - timedelta(days=2),
    )
    live = make_release(
        project,
        deployment_id="dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q",
        version="web@1.4.2",
        state=S.PROMOTED,
        promoted_at=now - LIVE_FOR,
        sessions=4000,
        crashed=32,
        crash_free_rate=0.992,
    )
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id=live.deployment_id, live_since=now - LIVE_FOR
    )
    project.refresh_from_db()
    return Scene(project, good, live)


# --- critical: roll back, page, tell ----------------------------------------------------------


def test_critical_for_the_live_release_rolls_back_to_the_known_good_then_pages_and_tells_slack(
    client: Client, scene: Scene, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, alert())
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    live = Release.objects.get(pk=scene.live.pk)
    assert live.state == S.ROLLING_BACK
    assert live.rollback_target == scene.good.deployment_id

    actions = list(Action.objects.order_by("id"))
    assert [a.kind for a in actions] == ["rollback", "pagerduty", "slack"]
    rollback, page, slack = actions
    assert rollback.payload["deployment_id"] == scene.good.deployment_id
    assert rollback.payload["from_deployment_id"] == live.deployment_id
    assert rollback.payload["cause"].startswith("Sentry critical alert")
    assert page.payload["event_action"] == "trigger"
    assert page.payload["severity"] == "critical"
    assert page.payload["dedup_key"] == f"gatekeeper/shop-web/{live.deployment_id}"
    assert page.payload["routing_key_env"] == "PD_KEY"
    assert page.payload["rollback_action_key"] == rollback.key
    details = page.payload["custom_details"]
    assert details["release"] == "web@1.4.2"
    assert details["crash_free_rate"] == 0.992
    assert details["threshold"] == 0.995
    assert details["rollback_target"] == scene.good.deployment_id
    assert "https://acme.sentry.io/alerts/rules/details/341/" in json.dumps(page.payload["links"])
    assert scene.good.deployment_id in slack.payload["text"]
    for action in actions:
        assert PD_KEY not in json.dumps(action.payload)

    # Published alone, so nothing competes with it; the page and the message follow its request.
    assert dispatched(no_broker) == [rollback.pk]
    assert no_broker[-1][2]["kwargs"] == {"then": [page.pk, slack.pk]}
    incident = Incident.objects.get()
    assert incident.status == Incident.Status.OPEN
    assert incident.severity == "critical"
    assert incident.paged and incident.dedup_key == page.payload["dedup_key"]
    assert incident.release_id == live.pk
    assert incident.sentry_id == "812"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.release_id, delivery.event_type) == (
        "accepted",
        live.pk,
        "metric_alert.critical",
    )


def test_the_same_critical_delivered_again_is_a_duplicate_and_changes_nothing(
    client: Client, scene: Scene, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    payload = alert()
    assert post(client, payload).status_code == 202
    before = row_counts()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(client, payload)
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert row_counts() == before
    assert callbacks == [] and no_broker == []


def test_ten_deliveries_of_one_critical_incident_roll_back_once(client: Client, scene: Scene) -> None:
    payload = alert()
    codes = [post(client, payload).status_code for _ in range(10)]
    assert codes == [202] + [200] * 9
    assert Action.objects.filter(kind="rollback").count() == 1
    assert Action.objects.filter(kind="pagerduty").count() == 1
    assert Incident.objects.count() == 1


def test_a_second_incident_for_a_release_already_rolling_back_does_not_roll_back_again(
    client: Client, scene: Scene
) -> None:
    assert post(client, alert(incident="812")).status_code == 202
    before = Action.objects.count()
    response = post(client, alert(incident="900"))
    assert response.status_code == 202
    assert "rolling_back: nothing more to do" in response.json()["detail"]
    assert Action.objects.count() == before
    assert Action.objects.filter(kind="rollback").count() == 1
    assert Incident.objects.get(sentry_id="900").release_id == scene.live.pk


# --- warning: as the project's on_warning says ------------------------------------------------


def test_a_warning_by_default_only_tells_slack(client: Client, scene: Scene) -> None:
    response = post(client, alert("metric_alert_warning.json"))
    assert response.status_code == 202
    assert list(Action.objects.values_list("kind", flat=True)) == ["slack"]
    assert "Sentry warning" in Action.objects.get().payload["text"]
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED
    incident = Incident.objects.get()
    assert (incident.severity, incident.paged) == ("warning", False)


def test_a_warning_pages_at_warning_severity_when_the_project_says_page(client: Client, scene: Scene) -> None:
    Project.objects.filter(pk=scene.project.pk).update(on_warning="page")
    response = post(client, alert("metric_alert_warning.json"))
    assert response.status_code == 202
    assert sorted(Action.objects.values_list("kind", flat=True)) == ["pagerduty", "slack"]
    page = Action.objects.get(kind="pagerduty").payload
    assert page["severity"] == "warning" and page["event_action"] == "trigger"
    assert page["dedup_key"] == f"gatekeeper/shop-web/{scene.live.deployment_id}"
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED
    assert Incident.objects.get().paged


def test_a_warning_does_nothing_when_the_project_ignores_warnings(client: Client, scene: Scene) -> None:
    Project.objects.filter(pk=scene.project.pk).update(on_warning="ignore")
    response = post(client, alert("metric_alert_warning.json"))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert not Action.objects.exists()
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED


def test_a_warning_rolls_back_like_a_critical_when_the_project_says_rollback(
    client: Client, scene: Scene
) -> None:
    Project.objects.filter(pk=scene.project.pk).update(on_warning="rollback")
    response = post(client, alert("metric_alert_warning.json"))
    assert response.status_code == 202
    live = Release.objects.get(pk=scene.live.pk)
    assert live.state == S.ROLLING_BACK and live.rollback_target == scene.good.deployment_id
    assert list(Action.objects.order_by("id").values_list("kind", flat=True)) == [
        "rollback",
        "pagerduty",
        "slack",
    ]
    assert Action.objects.get(kind="pagerduty").payload["severity"] == "critical"


# --- resolved ---------------------------------------------------------------------------------


def test_resolved_after_a_paged_critical_resolves_the_page_and_tells_slack(
    client: Client, scene: Scene
) -> None:
    assert post(client, alert()).status_code == 202
    trigger = Action.objects.get(kind="pagerduty")
    slack_before = Action.objects.filter(kind="slack").count()
    response = post(client, alert("metric_alert_resolved.json"))
    assert response.status_code == 202
    assert "PagerDuty resolve sent" in response.json()["detail"]
    resolve = Action.objects.filter(kind="pagerduty").exclude(pk=trigger.pk).get()
    assert resolve.payload == {
        "event_action": "resolve",
        "routing_key_env": "PD_KEY",
        "dedup_key": trigger.payload["dedup_key"],
    }
    assert Action.objects.filter(kind="slack").count() == slack_before + 1
    assert "Sentry resolved" in Action.objects.filter(kind="slack").last().payload["text"]
    assert Incident.objects.get().status == Incident.Status.RESOLVED
    assert Action.objects.filter(kind="rollback").count() == 1


def test_resolved_for_an_incident_never_seen_is_ignored(client: Client, scene: Scene) -> None:
    response = post(client, alert("metric_alert_resolved.json"))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert not Action.objects.exists()
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED


# --- stale: about some other release ----------------------------------------------------------


def test_an_incident_that_started_before_the_live_release_went_live_is_stale(
    client: Client, scene: Scene
) -> None:
    response = post(client, alert(started=LIVE_FOR + timedelta(minutes=10)))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert not Action.objects.exists()
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED
    incident = Incident.objects.get()
    assert incident.status == Incident.Status.STALE
    assert "before web@1.4.2 went live" in incident.reason
    note = ReleaseEvent.objects.get(release=scene.live, kind=ReleaseEvent.Kind.NOTE)
    assert note.reason.startswith("stale alert ignored") and note.actor == "sentry"


def test_an_alert_rule_about_another_release_is_stale(client: Client, scene: Scene) -> None:
    response = post(client, alert(query='release:"web@1.3.9"'))
    assert response.status_code == 200
    assert not Action.objects.exists()
    incident = Incident.objects.get()
    assert incident.status == Incident.Status.STALE
    assert "web@1.3.9" in incident.reason
    assert ReleaseEvent.objects.filter(release=scene.live, kind="note").exists()


def test_an_alert_rule_naming_the_live_release_is_acted_on(client: Client, scene: Scene) -> None:
    response = post(client, alert(query='release:"web@1.4.2"'))
    assert response.status_code == 202
    assert Action.objects.filter(kind="rollback").count() == 1


# --- nothing to roll back to ------------------------------------------------------------------


def test_with_no_known_good_deployment_it_pages_and_says_not_rolled_back(
    client: Client, scene: Scene
) -> None:
    Release.objects.filter(pk=scene.good.pk).update(rolled_back_at=timezone.now())  # never a target
    response = post(client, alert())
    assert response.status_code == 202
    assert "no known-good target" in response.json()["detail"]
    assert sorted(Action.objects.values_list("kind", flat=True)) == ["pagerduty", "slack"]
    page = Action.objects.get(kind="pagerduty").payload
    assert "NOT rolled back" in page["summary"]
    assert page["custom_details"]["rollback_target"] is None
    assert "NOT rolled back" in Action.objects.get(kind="slack").payload["text"]
    live = Release.objects.get(pk=scene.live.pk)
    assert live.state == S.PROMOTED and live.rollback_target == ""
    assert Incident.objects.get().paged


# --- live before its verdict ------------------------------------------------------------------


def test_a_critical_for_a_live_release_still_gating_fails_it_and_rolls_back(
    client: Client, scene: Scene
) -> None:
    Release.objects.filter(pk=scene.live.pk).update(
        state=S.GATING, gating_started_at=timezone.now() - LIVE_FOR
    )
    scene.live.refresh_from_db()
    make_analysis(scene.live)
    response = post(client, alert())
    assert response.status_code == 202
    live = Release.objects.get(pk=scene.live.pk)
    assert live.state == S.ROLLING_BACK
    gate = live.analyses.get()
    assert (live.verdict, live.verdict_rule) == ("fail", "alert")
    assert (gate.phase, gate.next_check_at) == ("stopped", None)
    assert list(live.events.filter(kind="transition").values_list("from_state", "to_state")) == [
        ("gating", "failed"),
        ("failed", "rolling_back"),
    ]
    assert Action.objects.get(kind="rollback").payload["deployment_id"] == scene.good.deployment_id


# --- which project, which release -------------------------------------------------------------


def test_an_alert_for_no_known_sentry_project_is_recorded_and_ignored(client: Client) -> None:
    make_project(sentry_project="another-app")
    response = post(client, alert())
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.project_id) == ("ignored", None)
    assert "shop-web" in delivery.note
    assert not Incident.objects.exists() and not Action.objects.exists()


def test_an_alert_for_another_environment_is_ignored(client: Client, scene: Scene) -> None:
    response = post(client, alert(environment="staging"))
    assert response.status_code == 200
    assert "in staging" in response.json()["detail"]
    assert not Incident.objects.exists() and not Action.objects.exists()
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED


def test_two_projects_with_one_sentry_slug_are_told_apart_by_the_org_in_the_link(
    client: Client, scene: Scene
) -> None:
    other = make_project(name="shop-web-globex", vercel_project_id="prj_globex", sentry_org="globex")
    other_live = make_release(other, state=S.PROMOTED, promoted_at=timezone.now() - LIVE_FOR)
    Project.objects.filter(pk=other.pk).update(
        live_deployment_id=other_live.deployment_id, live_since=timezone.now() - LIVE_FOR
    )
    response = post(client, alert())  # web_url https://acme.sentry.io/...
    assert response.status_code == 202
    assert Incident.objects.get().project_id == scene.project.pk
    assert Release.objects.get(pk=scene.live.pk).state == S.ROLLING_BACK
    assert Release.objects.get(pk=other_live.pk).state == S.PROMOTED

    payload = alert(incident="913")
    payload["data"]["web_url"] = "https://sentry.io/organizations/globex/alerts/rules/details/77/"
    assert post(client, payload).status_code == 202
    assert Incident.objects.get(sentry_id="913").project_id == other.pk
    assert Release.objects.get(pk=other_live.pk).state == S.PROMOTED  # nothing to roll back to
    assert Action.objects.filter(release=other_live, kind="slack").exists()


def test_an_alert_when_no_live_release_is_known_is_ignored_and_unmatched(client: Client) -> None:
    make_project()
    response = post(client, alert())
    assert response.status_code == 200
    assert "no live release" in response.json()["detail"]
    incident = Incident.objects.get()
    assert (incident.status, incident.release_id) == (Incident.Status.UNMATCHED, None)
    assert not Action.objects.exists()


# --- refused, and nothing changes -------------------------------------------------------------


def test_a_bad_signature_is_401_and_changes_nothing(client: Client, scene: Scene) -> None:
    body = compact(alert())
    before = row_counts()
    response = post(client, body, HTTP_SENTRY_HOOK_SIGNATURE=signature(body, "not-the-secret"))
    assert response.status_code == 401
    assert row_counts() == before
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED


def test_a_signature_over_other_bytes_is_401(client: Client, scene: Scene) -> None:
    body = compact(alert())
    before = row_counts()
    tampered = body.replace(b'"critical"', b'"warning"', 1)
    response = post(client, tampered, HTTP_SENTRY_HOOK_SIGNATURE=signature(body))
    assert response.status_code == 401
    assert row_counts() == before


def test_a_missing_signature_is_401_and_changes_nothing(client: Client, scene: Scene) -> None:
    before = row_counts()
    response = post(client, alert(), HTTP_SENTRY_HOOK_SIGNATURE=None)
    assert response.status_code == 401
    assert row_counts() == before


def test_no_secret_configured_refuses_every_delivery(client: Client, scene: Scene, settings: Any) -> None:
    settings.SENTRY_WEBHOOK_SECRET = ""
    body = compact(alert())
    before = row_counts()
    response = post(client, body, HTTP_SENTRY_HOOK_SIGNATURE=signature(body, ""))
    assert response.status_code == 401
    assert "no sentry webhook secret" in response.json()["detail"]
    assert row_counts() == before


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(lambda: str(int(time.time()) - 301), id="301s-old"),
        pytest.param(lambda: str(int(time.time()) + 301), id="301s-ahead"),
        pytest.param(lambda: None, id="missing"),
        pytest.param(lambda: "yesterday", id="not-a-number"),
        pytest.param(lambda: "nan", id="nan"),
    ],
)
def test_a_timestamp_missing_or_outside_five_minutes_is_401_and_changes_nothing(
    client: Client, scene: Scene, timestamp: Any
) -> None:
    before = row_counts()
    response = post(client, alert(), HTTP_SENTRY_HOOK_TIMESTAMP=timestamp())
    assert response.status_code == 401
    assert row_counts() == before


def test_a_timestamp_within_five_minutes_is_accepted(client: Client, scene: Scene) -> None:
    response = post(client, alert(), HTTP_SENTRY_HOOK_TIMESTAMP=str(int(time.time()) - 290))
    assert response.status_code == 202


def _with_junk(raw: bytes) -> bytes:
    """The critical alert with one more field whose value is ``raw``, signed as it is."""
    return compact(alert()).replace(b'"description_text":', b'"junk":' + raw + b',"description_text":')


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(lambda: b'{"action":"critical","data":', "not JSON", id="truncated"),
        pytest.param(lambda: _with_junk(b"NaN"), "not JSON", id="nan"),
        pytest.param(lambda: _with_junk(b"-Infinity"), "not JSON", id="infinity"),
        pytest.param(lambda: _with_junk(b"[" * 50_000 + b"]" * 50_000), "not JSON", id="deep-nesting"),
        pytest.param(lambda: _with_junk(b'"a\\u0000b"'), "NUL", id="nul-character"),
    ],
)
def test_malformed_json_is_400_and_changes_nothing(
    client: Client, scene: Scene, body: Any, detail: str
) -> None:
    before = row_counts()
    response = post(client, body())
    assert response.status_code == 400, response.content
    assert detail in response.json()["detail"]
    assert row_counts() == before


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(client: Client, scene: Scene) -> None:
    response = post(client, _with_junk(b'"C:\\\\u0000"'))  # the text C:\u0000
    assert response.status_code == 202, response.content


def _set(path: str, value: Any) -> Any:
    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = payload
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _drop(path: str) -> Any:
    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = payload
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(_set("action", "bogus"), "action", id="action-bogus"),
        pytest.param(_set("data.metric_alert", "812"), "data.metric_alert", id="metric-alert-not-object"),
        pytest.param(_set("data.metric_alert.projects", "shop-web"), "projects", id="projects-not-list"),
        pytest.param(
            _set("data.metric_alert.date_started", "last tuesday"), "date_started", id="date-not-iso"
        ),
        pytest.param(
            _set("data.metric_alert.date_started", "2026-13-01T10:52:00Z"), "date_started", id="date-month-13"
        ),
        pytest.param(
            _set("data.metric_alert.date_started", "2026-01-01T10:52:00"), "date_started", id="date-no-zone"
        ),
        pytest.param(
            _set("data.metric_alert.alert_rule.environment", 7), "environment", id="environment-number"
        ),
        pytest.param(_drop("data.metric_alert.id"), "data.metric_alert.id", id="id-missing"),
        pytest.param(_set("data.metric_alert.alert_rule", []), "alert_rule", id="alert-rule-not-object"),
        pytest.param(_set("data.web_url", "javascript:alert(1)"), "web_url", id="web-url-not-url"),
    ],
)
def test_wrong_types_are_400_naming_the_field_and_change_nothing(
    client: Client, scene: Scene, mutate: Any, field: str
) -> None:
    payload = alert()
    mutate(payload)
    before = row_counts()
    response = post(client, payload)
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert row_counts() == before
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED


def test_json_that_is_not_an_object_is_400(client: Client, scene: Scene) -> None:
    response = post(client, b"[1,2,3]")
    assert response.status_code == 400
    assert row_counts() == (0, 0, 0, 0)


@pytest.mark.parametrize("resource", ["metric_alerts", "deployment", "autofix_run"])
def test_a_resource_gatekeeper_does_not_know_is_acknowledged_once_and_acts_on_nothing(
    client: Client, scene: Scene, resource: str
) -> None:
    payload = alert()
    response = post(client, payload, resource=resource)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ignored"
    delivery = WebhookDelivery.objects.get(event_type=resource)
    assert delivery.outcome == "ignored" and "does not know" in delivery.note
    assert post(client, payload, resource=resource).json()["status"] == "duplicate"  # the same bytes again
    assert Release.objects.get(pk=scene.live.pk).state == S.PROMOTED
    assert not Action.objects.exists()


def test_a_missing_resource_header_is_400_and_changes_nothing(client: Client, scene: Scene) -> None:
    before = row_counts()
    response = post(client, alert(), resource="")
    assert response.status_code == 400
    assert "Sentry-Hook-Resource" in response.json()["detail"]
    assert row_counts() == before


def test_a_body_over_one_megabyte_is_413_and_changes_nothing(client: Client, scene: Scene) -> None:
    payload = alert()
    payload["data"]["padding"] = "x" * (1024 * 1024)
    before = row_counts()
    response = post(client, payload)
    assert response.status_code == 413
    assert row_counts() == before


# --- resources Gatekeeper does not use --------------------------------------------------------


def test_an_installation_webhook_is_recorded_once_and_ignored(client: Client, scene: Scene) -> None:
    payload = load("installation.json")
    response = post(
        client, payload, resource="installation", HTTP_REQUEST_ID="3f6c1a0e9b2d4c8fa7e51d2b6c9a0f13"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.source, delivery.event_type, delivery.outcome) == ("sentry", "installation", "ignored")
    assert delivery.payload == payload

    again = post(client, payload, resource="installation", HTTP_REQUEST_ID="3f6c1a0e9b2d4c8fa7e51d2b6c9a0f13")
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    assert not Incident.objects.exists() and not Action.objects.exists()


def test_an_installation_webhook_still_needs_a_valid_signature(client: Client, scene: Scene) -> None:
    response = post(
        client, load("installation.json"), resource="installation", HTTP_SENTRY_HOOK_SIGNATURE="0" * 64
    )
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("query", ["!release:web@1.3.9", "release:latest", "event.type:error"])
def test_an_alert_rule_that_names_no_other_release_is_acted_on(
    client: Client, scene: Scene, query: str
) -> None:
    # Excluding a release (!release:x) or Sentry's `latest` alias does not make the alert about another one.
    response = post(client, alert(query=query))
    assert response.status_code == 202
    assert Action.objects.filter(kind="rollback").count() == 1


def test_resolving_an_ignored_warning_tells_nobody(client: Client, scene: Scene) -> None:
    Project.objects.filter(pk=scene.project.pk).update(on_warning="ignore")
    post(client, alert("metric_alert_warning.json", incident="77"))
    response = post(client, alert("metric_alert_resolved.json", incident="77"))
    assert response.status_code == 200
    assert not Action.objects.exists()
