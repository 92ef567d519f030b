"""Replaying the spool: each kept delivery is taken once, by the live webhook's own handling, and
whatever cannot be taken is set aside without holding up the rest."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from releases import tasks
from releases.domain.lifecycle import ReleaseState
from releases.inbound import replay, spool
from releases.inbound.spool import Inbound
from releases.models import Action, Incident, Project, Release, WebhookDelivery
from tests.factories import SENTRY_SECRET, deployment_event, make_project, make_release, signed
from tests.releases.inbound.test_sentry import alert, compact, signature

pytestmark = pytest.mark.django_db
S = ReleaseState


def sentry_record(
    payload: dict[str, Any],
    *,
    resource: str = "metric_alert",
    received_at: datetime | None = None,
    secret: str = SENTRY_SECRET,
) -> Inbound:
    """What the Sentry webhook keeps when the database is down: body and headers as Sentry sent them."""
    body = compact(payload)
    arrived = received_at or datetime.now(UTC)
    headers = {
        "sentry-hook-resource": resource,
        "sentry-hook-signature": signature(body, secret),
        "sentry-hook-timestamp": str(int(arrived.timestamp())),
        "request-id": uuid.uuid4().hex,
    }
    return Inbound(source="sentry", body=body, headers=headers, received_at=arrived)


def ignored(n: int = 0, **overrides: Any) -> Inbound:
    return sentry_record({"installation": {"uuid": f"inst-{n}"}}, resource="installation", **overrides)


def vercel_record(event: dict[str, Any], received_at: datetime) -> Inbound:
    body, headers = signed(event)
    return Inbound("vercel", body, {"x-vercel-signature": headers["HTTP_X_VERCEL_SIGNATURE"]}, received_at)


def failed_files(settings: Any) -> list[Path]:
    folder = Path(settings.SPOOL_DIR) / "failed"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.fixture
def live(no_broker: list[Any]) -> Release:
    """A live release with a known-good one before it, as an alert about production finds them."""
    project = make_project(sentry_project="shop-web")
    now = timezone.now()
    make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=now - timedelta(days=2))
    release = make_release(
        project, deployment_id="dpl_live", state=S.PROMOTED, promoted_at=now - timedelta(hours=3)
    )
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id="dpl_live", live_since=now - timedelta(hours=3)
    )
    return release


def test_an_alert_kept_an_hour_ago_rolls_back_once_however_often_it_is_replayed(
    live: Release, django_capture_on_commit_callbacks: Any
) -> None:
    # Sentry's timestamp window is five minutes; the record is old by design.
    record = sentry_record(
        alert(started=timedelta(hours=1)), received_at=datetime.now(UTC) - timedelta(hours=1)
    )
    spool.keep(record)

    with django_capture_on_commit_callbacks(execute=True):
        assert replay.replay() == {"accepted": 1, "left": 0}
    assert Release.objects.get(pk=live.pk).state == S.ROLLING_BACK
    assert Action.objects.filter(kind="rollback").count() == 1

    spool.keep(record)  # as after a crash between handling it and removing it from the spool
    rows = (WebhookDelivery.objects.count(), Incident.objects.count(), Action.objects.count())
    assert replay.replay() == {"duplicate": 1, "left": 0}
    assert (WebhookDelivery.objects.count(), Incident.objects.count(), Action.objects.count()) == rows
    assert spool.waiting() == {"waiting": 0, "failed": 0}


def test_a_vercel_delivery_kept_through_a_long_outage_is_judged_by_when_it_arrived(
    client: Client, no_broker: list[Any]
) -> None:
    make_project()
    arrived = datetime.now(UTC) - timedelta(hours=30)  # past the 24 h replay window by now
    event = deployment_event()
    event["createdAt"] = int((arrived - timedelta(seconds=2)).timestamp() * 1000)
    spool.keep(vercel_record(event, arrived))

    assert replay.replay() == {"accepted": 1, "left": 0}
    assert Release.objects.get().state == S.GATING


def test_a_vercel_retry_after_the_replay_is_a_duplicate(client: Client, no_broker: list[Any]) -> None:
    make_project()
    event = deployment_event()
    spool.keep(vercel_record(event, datetime.now(UTC) - timedelta(minutes=1)))
    assert replay.replay() == {"accepted": 1, "left": 0}

    body, headers = signed(event)
    response = client.post("/webhooks/vercel/", data=body, content_type="application/json", **headers)

    assert (response.status_code, response.json()["status"]) == (200, "duplicate")
    assert Release.objects.count() == 1 and WebhookDelivery.objects.count() == 1


def test_records_are_replayed_in_the_order_they_arrived_across_files(settings: Any) -> None:
    first, second = ignored(1), ignored(2, received_at=datetime.now(UTC) + timedelta(seconds=1))
    folder = Path(settings.SPOOL_DIR)
    folder.mkdir(parents=True)
    for name, record in (("web-a-1.jsonl", second), ("web-b-2.jsonl", first)):
        (folder / name).write_text(json.dumps(record.to_json()) + "\n")

    assert replay.replay() == {"ignored": 2, "left": 0}
    assert list(WebhookDelivery.objects.order_by("id").values_list("payload", flat=True)) == [
        {"installation": {"uuid": "inst-1"}},
        {"installation": {"uuid": "inst-2"}},
    ]


def test_a_record_that_cannot_be_taken_goes_to_failed_with_why_and_the_others_are_replayed(
    settings: Any,
) -> None:
    forged = ignored(1, secret="not-the-secret")
    headers = {"sentry-hook-resource": "installation", "sentry-hook-signature": signature(b"not json")}
    malformed = Inbound("sentry", b"not json", headers)
    good = ignored(2)
    for record in (forged, malformed, good):
        spool.keep(record)

    assert replay.replay() == {"failed": 2, "ignored": 1, "left": 0}

    errors = {
        json.loads(p.read_text())["record"]["id"]: json.loads(p.read_text())["error"]
        for p in failed_files(settings)
    }
    assert errors[forged.id].startswith("sentry-hook-signature: does not match")
    assert errors[malformed.id].startswith("400: body is not JSON")
    assert spool.waiting() == {"waiting": 0, "failed": 2}


def test_torn_lines_are_set_aside_in_failed_and_the_file_still_replays(settings: Any) -> None:
    path = spool.keep(ignored(1))
    with path.open("ab") as file:
        file.write(b'{"id": "cut short')

    assert replay.replay() == {"torn": 1, "ignored": 1, "left": 0}
    (torn,) = failed_files(settings)
    assert torn.read_text() == '{"id": "cut short'
    assert [p for p in Path(settings.SPOOL_DIR).iterdir() if p.is_file() and not p.name.startswith(".")] == []


def test_while_the_database_is_still_down_the_replay_stops_and_keeps_what_it_did_not_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC)
    taken, stuck, after = (ignored(n, received_at=now + timedelta(seconds=n)) for n in range(3))
    for record in (taken, stuck, after):
        spool.keep(record)
    real_take = replay.SOURCES["sentry"][1]

    def take(record: Inbound) -> Any:
        if record.id != taken.id:
            raise OperationalError("server closed the connection unexpectedly")
        return real_take(record)

    monkeypatch.setitem(replay.SOURCES, "sentry", (replay.SOURCES["sentry"][0], take))
    monkeypatch.setattr(replay, "_database_answers", lambda: False)

    assert replay.replay() == {"ignored": 1, "database_down": 1, "left": 2}

    monkeypatch.undo()
    with spool.claimed() as files:
        assert [r.id for f in files for r in f.records] == [stuck.id, after.id]


def test_a_record_that_keeps_failing_while_the_database_answers_goes_to_failed(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    spool.keep(ignored(1))

    def take(record: Inbound) -> Any:
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setitem(replay.SOURCES, "sentry", (replay.SOURCES["sentry"][0], take))

    assert replay.replay() == {"failed": 1, "left": 0}
    assert "statement timeout" in json.loads(failed_files(settings)[0].read_text())["error"]


def test_the_scheduled_replay_of_an_empty_spool_asks_the_database_nothing(
    django_assert_num_queries: Any,
) -> None:
    with django_assert_num_queries(0):
        assert tasks.replay_spool() == {}


def test_a_replay_that_took_records_asks_sentry_at_once_for_alerts_missed_in_the_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(tasks.reconcile_alerts_run, "apply_async", lambda *a, **k: sent.append("reconcile"))
    assert tasks.replay_spool() == {} and sent == []  # nothing kept: no outage to catch up on
    spool.keep(ignored(1))
    assert tasks.replay_spool() == {"ignored": 1, "left": 0}
    assert sent == ["reconcile"]


def test_replay_spool_prints_what_became_of_the_records(capsys: pytest.CaptureFixture[str]) -> None:
    spool.keep(ignored(1))
    spool.fail(ignored(2), "sentry-hook-signature: does not match")

    call_command("replay_spool", "--retry-failed")

    out = capsys.readouterr().out
    assert "put back from failed/: 1" in out
    assert "ignored 2, left 0" in out


def test_replay_spool_fails_while_the_database_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    spool.keep(ignored(1))
    monkeypatch.setattr(replay, "replay", lambda: {"database_down": 1, "left": 1})

    with pytest.raises(CommandError, match="still unreachable"):
        call_command("replay_spool")
    assert spool.waiting()["waiting"] == 1
