"""POST /webhooks/vercel/: one test per captured payload shape, and every bad input refused."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Project, Release, ReleaseEvent, WebhookDelivery
from tests.factories import deployment_event, make_project, make_release, signed, vercel_signature

URL = "/webhooks/vercel/"
PAYLOADS = Path(__file__).resolve().parents[2] / "payloads" / "vercel"

pytestmark = pytest.mark.django_db


def load(name: str) -> dict[str, Any]:
    """A captured delivery, as it arrives now (an old createdAt is a replay, refused)."""
    event = json.loads((PAYLOADS / name).read_text())
    event["createdAt"] = int(time.time() * 1000)
    return event


def post(client: Client, event: dict[str, Any] | bytes, **headers: str) -> Any:
    body, signature = signed(event)
    return client.post(URL, data=body, content_type="application/json", **{**signature, **headers})


def row_counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (WebhookDelivery, Release, ReleaseEvent, Action, Project))


@pytest.fixture
def project() -> Project:
    return make_project()


def test_succeeded_for_production_starts_a_gate_due_for_its_first_poll(
    client: Client, project: Project, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, load("deployment_succeeded.json"))
    assert response.status_code == 202, response.content
    release = Release.objects.get()
    assert release.state == ReleaseState.GATING
    assert release.version == "4e1b9c07d2a35f68e0b7c1d9a2f3e4b5c6d7e8f9"
    assert release.deployment_url == "shop-web-k3x9p2a7-acme.vercel.app"
    assert release.inspector_url.startswith("https://vercel.com/acme/shop-web/")
    gate = release.analyses.get()
    assert (gate.kind, gate.phase, gate.generation) == ("gate", "running", 1)
    assert gate.started_at == release.gating_started_at is not None
    assert release.deployment_created_at is not None
    # Due now, and nothing published from the request: the next dispatch sends the first poll.
    assert gate.next_check_at is not None and gate.next_check_at <= timezone.now()
    # Judged by the policy as it was when the gate started.
    assert gate.policy["min_sessions"] == project.min_sessions
    # No poll is published from the request; the project has no live release on record, so the
    # one action asks Vercel what serves production (the rollback target, should the gate fail).
    (learn,) = Action.objects.filter(release=release)
    assert (learn.kind, learn.payload) == ("learn", {"then": "record"})
    assert [(name, args) for name, args, _ in no_broker] == [("releases.run_action", (learn.pk,))]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.release_id) == ("accepted", release.pk)
    assert list(release.events.values_list("to_state", flat=True)) == ["gating"]


def test_ready_is_ignored_when_the_project_starts_on_succeeded(client: Client, project: Project) -> None:
    response = post(client, load("deployment_ready.json"))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert not Release.objects.exists()


def test_ready_starts_the_gate_when_the_project_says_so(client: Client, no_broker: list[Any]) -> None:
    make_project(start_on="deployment.ready")
    response = post(client, load("deployment_ready.json"))
    assert response.status_code == 202
    assert Release.objects.get().state == ReleaseState.GATING


def test_personal_scope_payload_without_inspector_url_is_accepted(
    client: Client, project: Project, no_broker: list[Any]
) -> None:
    response = post(client, load("deployment_succeeded_personal_scope.json"))
    assert response.status_code == 202
    assert Release.objects.get().inspector_url.startswith("https://vercel.com/")


def test_created_is_acknowledged_and_ignored(client: Client, project: Project) -> None:
    response = post(client, load("deployment_created.json"))
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().outcome == "ignored"
    assert not Release.objects.exists()


def test_rolling_release_event_is_acknowledged_and_ignored(client: Client, project: Project) -> None:
    response = post(client, load("project_rolling_release_started.json"))
    assert response.status_code == 200
    assert not Release.objects.exists()


def test_promoted_records_what_serves_production_and_supersedes_the_previous(
    client: Client, project: Project
) -> None:
    old = make_release(project, state=ReleaseState.PROMOTED, deployment_id="dpl_old")
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_old")
    response = post(client, load("deployment_promoted.json"))
    assert response.status_code == 202
    project.refresh_from_db()
    assert project.live_deployment_id == "dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q"
    live = Release.objects.get(deployment_id="dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q")
    assert live.state == ReleaseState.PROMOTED and live.promoted_at is not None
    old.refresh_from_db()
    assert old.state == ReleaseState.SUPERSEDED


@pytest.mark.parametrize(
    ("promoted_ago", "moves", "confirmed"),
    [
        (timedelta(hours=3), False, False),  # late or replayed: older than what went live an hour ago
        (timedelta(minutes=62), False, False),  # two minutes before it: past the minute clocks may differ by
        # Within a minute of it, either side: clocks may disagree. It moves live; Vercel is asked.
        (timedelta(minutes=60, seconds=30), True, True),
        (timedelta(minutes=59, seconds=30), True, True),
        (timedelta(minutes=5), True, False),  # newer: a promote made in Vercel since
    ],
)
def test_a_promoted_event_older_than_what_is_live_is_recorded_and_does_not_move_live(
    client: Client, project: Project, promoted_ago: timedelta, moves: bool, confirmed: bool
) -> None:
    make_release(project, state=ReleaseState.PROMOTED, deployment_id="dpl_live")
    live_since = timezone.now() - timedelta(hours=1)
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_live", live_since=live_since)
    event = load("deployment_promoted.json")
    event["createdAt"] = int((timezone.now() - promoted_ago).timestamp() * 1000)
    response = post(client, event)
    project.refresh_from_db()
    delivery = WebhookDelivery.objects.get()
    confirms = list(Action.objects.filter(key__startswith="confirm-live:").values_list("payload", flat=True))
    assert [c["then"] for c in confirms] == (["confirm"] if confirmed else [])
    if moves:
        assert response.status_code == 202
        assert project.live_deployment_id == "dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q"
        return
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert (project.live_deployment_id, project.live_since) == ("dpl_live", live_since)
    assert "late deployment.promoted" in delivery.note and "dpl_live" in delivery.note
    assert Release.objects.get(deployment_id="dpl_live").state == ReleaseState.PROMOTED
    late = Release.objects.get(deployment_id="dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q")
    assert late.promoted_at is None and late.events.filter(reason__contains="arrived late").exists()


@pytest.mark.parametrize("age", [timedelta(hours=25), timedelta(days=30)])
def test_a_delivery_older_than_the_replay_window_is_refused_and_changes_nothing(
    client: Client, project: Project, age: timedelta
) -> None:
    event = load("deployment_succeeded.json")
    event["createdAt"] = int((timezone.now() - age).timestamp() * 1000)
    before = row_counts()
    response = post(client, event)
    assert response.status_code == 400
    assert "replay window" in response.json()["detail"]
    assert row_counts() == before


def test_a_gating_release_that_goes_live_on_its_own_keeps_being_judged(
    client: Client, project: Project, no_broker: list[Any]
) -> None:
    post(client, load("deployment_succeeded.json"))
    response = post(client, load("deployment_promoted.json"))
    assert response.status_code == 202
    release = Release.objects.get()
    assert release.state == ReleaseState.GATING
    assert release.promoted_at is not None
    project.refresh_from_db()
    assert project.live_deployment_id == release.deployment_id
    assert release.events.filter(kind="note", reason__contains="gate continues").exists()


@pytest.mark.parametrize("name", ["deployment_error.json", "deployment_canceled.json"])
def test_error_or_cancel_cancels_the_gate(
    client: Client, project: Project, no_broker: list[Any], name: str
) -> None:
    post(client, load("deployment_succeeded.json"))
    response = post(client, load(name))
    assert response.status_code == 202
    assert Release.objects.get().state == ReleaseState.CANCELLED


def test_repeat_delivery_answers_200_and_changes_nothing(
    client: Client, project: Project, no_broker: list[Any]
) -> None:
    event = load("deployment_succeeded.json")
    assert post(client, event).status_code == 202
    before = row_counts()
    response = post(client, event)
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert row_counts() == before


def test_a_second_event_for_the_same_deployment_does_not_start_a_second_gate(
    client: Client, project: Project, no_broker: list[Any]
) -> None:
    assert post(client, deployment_event(event_id="evt_a")).status_code == 202
    response = post(client, deployment_event(event_id="evt_b"))
    assert response.status_code == 200
    assert Release.objects.count() == 1


def test_unknown_project_is_recorded_and_ignored(client: Client) -> None:
    response = post(client, load("deployment_succeeded.json"))
    assert response.status_code == 200
    assert "unknown project" in response.json()["detail"]
    assert WebhookDelivery.objects.get().outcome == "ignored"
    assert not Release.objects.exists()


def test_project_of_another_team_is_treated_as_unknown(client: Client) -> None:
    make_project(vercel_team_id="team_someone_else")
    response = post(client, load("deployment_succeeded.json"))
    assert response.status_code == 200
    assert not Release.objects.exists()


def test_preview_target_is_recorded_and_ignored(client: Client, project: Project) -> None:
    response = post(client, load("deployment_succeeded_preview.json"))
    assert response.status_code == 200
    assert "preview" in response.json()["detail"]
    assert not Release.objects.exists()


def test_missing_release_name_holds_the_release_for_a_human(client: Client, no_broker: list[Any]) -> None:
    make_project(release_template="web@{meta[appVersion]}")
    response = post(client, load("deployment_succeeded.json"))
    assert response.status_code == 202
    release = Release.objects.get()
    assert release.state == ReleaseState.HELD
    assert "cannot name the Sentry release" in release.events.get().reason
    assert no_broker == []


# --- refused, and nothing changes -------------------------------------------------------------


def test_bad_signature_is_401_and_changes_nothing(client: Client, project: Project) -> None:
    body, _ = signed(load("deployment_succeeded.json"))
    before = row_counts()
    response = client.post(
        URL,
        data=body,
        content_type="application/json",
        HTTP_X_VERCEL_SIGNATURE=vercel_signature(body, "not-the-secret"),
    )
    assert response.status_code == 401
    assert row_counts() == before


def test_missing_signature_is_401(client: Client, project: Project) -> None:
    body, _ = signed(load("deployment_succeeded.json"))
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_signature_over_other_bytes_is_401(client: Client, project: Project) -> None:
    body, headers = signed(load("deployment_succeeded.json"))
    tampered = body.replace(b"production", b"production ")
    response = client.post(URL, data=tampered, content_type="application/json", **headers)
    assert response.status_code == 401


def test_no_secret_configured_refuses_every_delivery(client: Client, project: Project, settings: Any) -> None:
    settings.VERCEL_WEBHOOK_SECRET = ""
    body, _ = signed(load("deployment_succeeded.json"), secret="")
    response = client.post(
        URL, data=body, content_type="application/json", HTTP_X_VERCEL_SIGNATURE=vercel_signature(body, "")
    )
    assert response.status_code == 401
    assert "no vercel webhook secret" in response.json()["detail"]
    assert row_counts() == (0, 0, 0, 0, 1)


def test_malformed_json_is_400(client: Client, project: Project) -> None:
    response = post(client, b'{"id": "evt_1", "type": ')
    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.update(id=42), "id"),
        (lambda e: e.update(type=["deployment.succeeded"]), "type"),
        (lambda e: e.update(payload="nope"), "payload"),
        (lambda e: e.update(createdAt="yesterday"), "createdAt"),
        (lambda e: e["payload"]["deployment"].update(id=None), "payload.deployment.id"),
        (lambda e: e["payload"].update(project={"id": 7}), "payload.project.id"),
        (
            lambda e: e["payload"]["deployment"].update(meta={"githubCommitSha": 12}),
            "payload.deployment.meta",
        ),
        (lambda e: e["payload"].update(target=1), "payload.target"),
        (lambda e: e["payload"].update(deployment=[]), "payload.deployment.id"),
    ],
)
def test_wrong_types_are_400_naming_the_field(
    client: Client, project: Project, mutate: Any, field: str
) -> None:
    event = load("deployment_succeeded.json")
    mutate(event)
    before = row_counts()
    response = post(client, event)
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert row_counts() == before


def test_json_that_is_not_an_object_is_400(client: Client) -> None:
    response = post(client, b"[1, 2, 3]")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("event_type", "note"),
    [
        (
            "deployment.teleported",
            "an event type Gatekeeper does not know; acknowledged",
        ),  # one Vercel adds later
        ("domain.certificate-add", "not used by Gatekeeper"),  # both of Vercel's spellings are known
        ("domain.certificate.add", "not used by Gatekeeper"),
        ("project.domain-created", "not used by Gatekeeper"),
    ],
)
def test_an_event_type_gatekeeper_does_not_use_is_acknowledged_and_recorded(
    client: Client, project: Project, event_type: str, note: str
) -> None:
    event = load("deployment_succeeded.json")
    event["type"] = event_type
    response = post(client, event)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ignored"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event_type, delivery.outcome) == (event_type, "ignored")
    assert note in delivery.note
    assert not Release.objects.exists()
    assert post(client, event).json()["status"] == "duplicate"  # a retry is still one row


def test_body_over_one_megabyte_is_413_without_reading_it(client: Client, project: Project) -> None:
    event = load("deployment_succeeded.json")
    event["payload"]["padding"] = "x" * (1024 * 1024)
    response = post(client, event)
    assert response.status_code == 413
    assert row_counts() == (0, 0, 0, 0, 1)


def test_get_is_not_allowed(client: Client) -> None:
    assert client.get(URL).status_code in (401, 405)


@pytest.mark.parametrize("created", [1e20, -5, 0])
def test_an_impossible_created_at_is_400_not_a_crash(
    client: Client, project: Project, created: float
) -> None:
    event = load("deployment_succeeded.json")
    event["createdAt"] = created
    response = post(client, event)
    assert response.status_code == 400
    assert "createdAt" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()
