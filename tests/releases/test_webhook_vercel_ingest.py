"""The Vercel webhook's one-statement gate start (vercel_events.record): the same rows as the
general path, repeats and races still write nothing twice (bench/ingest.py measures its speed)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections, connection, transaction
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone

from releases import gate_rows, vercel_events
from releases.models import Project, Release, ReleaseEvent, WebhookDelivery
from releases.polling import start_gate
from releases.states import ReleaseState
from tests.factories import deployment_event, make_project, signed

URL = "/webhooks/vercel/"
# Differ by deployment or by the moment they were written, not by what the gate start means.
VARYING = {"id", "deployment_id", "deployment_url", "inspector_url", "meta", "version"}
TIMES = {"created_at", "updated_at", "next_poll_at", "gating_started_at", "deployment_created_at"}


def post(client: Client, event: dict[str, Any]) -> Any:
    body, signature = signed(event)
    return client.post(URL, data=body, content_type="application/json", **signature)


@pytest.mark.django_db
def test_a_gate_started_in_one_statement_writes_what_start_gate_writes(client: Client) -> None:
    project = make_project()
    event = deployment_event(deployment_id="dpl_AtOnce000000000000000001", sha="a" * 40)
    response = post(client, event)
    assert response.status_code == 202, response.content
    fast = Release.objects.get(deployment_id="dpl_AtOnce000000000000000001")

    # The general path, as it ran before: get_or_create, then start_gate's transition.
    other = deployment_event(deployment_id="dpl_General0000000000000001", sha="b" * 40)
    deployment = vercel_events.read_deployment(other["payload"])
    with transaction.atomic():
        general, created = vercel_events._release_for(project, deployment, other["createdAt"])
        assert created and start_gate(general)
    general.refresh_from_db()

    def comparable(release: Release) -> dict[str, Any]:
        return {k: v for k, v in model_to_dict(release).items() if k not in VARYING | TIMES}

    assert comparable(fast) == comparable(general)
    assert fast.state == ReleaseState.GATING and fast.generation == 1
    now = timezone.now()
    for name in TIMES:
        assert abs(getattr(fast, name) - now) < timedelta(seconds=30), name
    assert fast.next_poll_at == fast.gating_started_at == fast.updated_at
    history = [
        {k: v for k, v in model_to_dict(e).items() if k not in {"id", "release", "created_at"}}
        for r in (fast, general)
        for e in ReleaseEvent.objects.filter(release=r)
    ]
    assert len(history) == 2 and history[0] == history[1]
    assert history[0]["from_state"] == ReleaseState.RECEIVED and history[0]["to_state"] == ReleaseState.GATING
    delivery = WebhookDelivery.objects.get(delivery_id=event["id"])
    assert (delivery.outcome, delivery.note) == ("accepted", "gate started")
    assert (delivery.project_id, delivery.release_id) == (project.pk, fast.pk)
    assert delivery.payload == event
    assert response.json() == {"status": "accepted", "detail": f"gating {'a' * 40}", "id": event["id"]}


@pytest.mark.django_db
def test_a_repeated_delivery_id_carrying_another_deployment_writes_nothing(client: Client) -> None:
    make_project()
    first = deployment_event(event_id="evt_same", deployment_id="dpl_First00000000000000001")
    assert post(client, first).status_code == 202
    counts = (WebhookDelivery.objects.count(), Release.objects.count(), ReleaseEvent.objects.count())
    again = deployment_event(event_id="evt_same", deployment_id="dpl_Second0000000000000001")
    response = post(client, again)
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    # The release the statement had created for the second deployment was rolled back with it.
    assert (WebhookDelivery.objects.count(), Release.objects.count(), ReleaseEvent.objects.count()) == counts
    assert not Release.objects.filter(deployment_id="dpl_Second0000000000000001").exists()


@pytest.mark.django_db
def test_a_new_delivery_for_a_known_deployment_is_recorded_against_its_release(client: Client) -> None:
    make_project()
    assert post(client, deployment_event(event_id="evt_one")).status_code == 202
    response = post(client, deployment_event(event_id="evt_two"))
    assert response.status_code == 200
    release = Release.objects.get()
    second = WebhookDelivery.objects.get(delivery_id="evt_two")
    assert (second.outcome, second.release_id, second.note) == (
        "ignored",
        release.pk,
        "release already known (gating)",
    )
    assert release.events.count() == 1


@pytest.mark.django_db
def test_a_canary_project_still_ramps_through_the_general_path(client: Client, no_broker: list[Any]) -> None:
    policy = {
        "router": "vercel",
        "stages": [{"percent": 5, "hold": 0}, {"percent": 100, "hold": 0}],
        "confirmations": 2,
        "confirmation_interval": 30.0,
        "abort_on_failure": True,
        "failures_to_abort": 1,
        "checks": [{"kind": "sentry_error_rate", "name": "errors", "max": 0.01, "window": 300.0}],
    }
    make_project(canary=policy, live_deployment_id="dpl_Previous000000000000001")
    response = post(client, deployment_event())
    assert response.status_code == 202
    assert Release.objects.get().state == ReleaseState.RAMPING


def _race(events: list[dict[str, Any]]) -> list[Any]:
    """Post each event from its own thread (own connection, own transaction), all at once."""
    barrier = threading.Barrier(len(events))
    answers: list[Any] = [None] * len(events)

    def send(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers[index] = post(Client(), events[index])
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_the_same_delivery_sent_twice_at_once_starts_one_gate(attempt: int) -> None:
    make_project()
    event = deployment_event(event_id=f"evt_race{attempt}")
    answers = _race([event, event, event])
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 202], [a.content for a in answers]
    assert all(a.json()["status"] == "duplicate" for a in answers if a.status_code == 200)
    assert (Release.objects.count(), WebhookDelivery.objects.count(), ReleaseEvent.objects.count()) == (
        1,
        1,
        1,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_two_deliveries_for_one_new_deployment_at_once_start_one_gate(attempt: int) -> None:
    make_project()
    events = [deployment_event(event_id=f"evt_a{attempt}"), deployment_event(event_id=f"evt_b{attempt}")]
    answers = _race(events)
    assert sorted(answer.status_code for answer in answers) == [200, 202], [a.content for a in answers]
    release = Release.objects.get()
    deliveries = WebhookDelivery.objects.order_by("outcome")
    assert [(d.outcome, d.release_id) for d in deliveries] == [
        ("accepted", release.pk),
        ("ignored", release.pk),
    ]
    assert release.events.count() == 1
    assert Project.objects.count() == 1


def _project_reads(queries: list[dict[str, Any]]) -> list[str]:
    table = Project._meta.db_table
    return [
        q["sql"] for q in queries if q["sql"].lstrip().startswith("SELECT") and f"FROM {table}" in q["sql"]
    ]


@pytest.mark.django_db
def test_a_project_held_in_memory_gates_without_reading_its_row_again(client: Client) -> None:
    from django.test.utils import CaptureQueriesContext

    make_project()
    assert (
        post(
            client, deployment_event(event_id="evt_first", deployment_id="dpl_Mem0000000000000000001")
        ).status_code
        == 202
    )
    with CaptureQueriesContext(connection) as seen:
        response = post(
            client, deployment_event(event_id="evt_second", deployment_id="dpl_Mem0000000000000000002")
        )
    assert response.status_code == 202
    assert _project_reads(seen.captured_queries) == []
    assert Release.objects.filter(state=ReleaseState.GATING).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["save", "update"])
def test_a_project_edited_since_it_was_read_gates_with_its_new_settings(client: Client, how: str) -> None:
    project = make_project(min_sessions=500)
    assert (
        post(
            client, deployment_event(event_id="evt_before", deployment_id="dpl_Edit0000000000000000001")
        ).status_code
        == 202
    )
    if how == "save":
        project.min_sessions = 1234
        project.save()
    else:  # a queryset update bypasses save(), auto_now and signals: the row version still moves
        Project.objects.filter(pk=project.pk).update(min_sessions=1234)
    response = post(
        client, deployment_event(event_id="evt_after", deployment_id="dpl_Edit0000000000000000002")
    )
    assert response.status_code == 202
    after = Release.objects.get(deployment_id="dpl_Edit0000000000000000002")
    assert "1234 sessions" in after.events.get().reason
    # The copy in memory is the new one now: a third delivery gates with it too.
    post(client, deployment_event(event_id="evt_third", deployment_id="dpl_Edit0000000000000000003"))
    assert (
        "1234 sessions"
        in Release.objects.get(deployment_id="dpl_Edit0000000000000000003").events.get().reason
    )


@pytest.mark.django_db
def test_a_project_removed_since_it_was_read_gates_nothing(client: Client) -> None:
    project = make_project()
    assert (
        post(
            client, deployment_event(event_id="evt_kept", deployment_id="dpl_Gone0000000000000000001")
        ).status_code
        == 202
    )
    Release.objects.all().delete()
    WebhookDelivery.objects.all().delete()
    project.delete()
    response = post(
        client, deployment_event(event_id="evt_gone", deployment_id="dpl_Gone0000000000000000002")
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert not Release.objects.exists()
    delivery = WebhookDelivery.objects.get(delivery_id="evt_gone")
    assert delivery.outcome == "ignored" and delivery.note.startswith("unknown project")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_repeated_id_with_another_deployment_writes_nothing() -> None:
    make_project()
    client = Client()
    assert (
        post(
            client, deployment_event(event_id="evt_twice", deployment_id="dpl_Auto0000000000000000001")
        ).status_code
        == 202
    )
    assert not connection.in_atomic_block
    response = post(
        client, deployment_event(event_id="evt_twice", deployment_id="dpl_Auto0000000000000000002")
    )
    assert response.status_code == 200 and response.json()["status"] == "duplicate"
    assert list(Release.objects.values_list("deployment_id", flat=True)) == ["dpl_Auto0000000000000000001"]
    assert (WebhookDelivery.objects.count(), ReleaseEvent.objects.count()) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["accepted", "ignored", "duplicate"])
def test_the_quick_path_answers_as_drf_does(
    client: Client, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from releases import webhooks

    make_project()

    def answer(n: int, quick: bool) -> Any:
        if not quick:
            monkeypatch.setattr(webhooks, "_quick", lambda request: None)
        event = deployment_event(event_id=f"evt_same_{n}", deployment_id=f"dpl_Same{n:021d}")
        if case == "ignored":
            event["payload"]["target"] = None  # a preview build
        first = post(client, event)
        response = post(client, event) if case == "duplicate" else first
        monkeypatch.undo()
        return response

    drf, quick = answer(1, quick=False), answer(2, quick=True)
    assert quick.status_code == drf.status_code == {"accepted": 202, "ignored": 200, "duplicate": 200}[case]
    assert quick.json() == {k: v.replace("_1", "_2") if k == "id" else v for k, v in drf.json().items()}
    assert quick.content == drf.content.replace(b"evt_same_1", b"evt_same_2")
    for header in ("Content-Type", "Allow", "Vary", "Content-Length"):
        assert quick.headers.get(header) == drf.headers.get(header), header


@pytest.mark.django_db
def test_a_refused_delivery_is_answered_by_drf_and_writes_nothing(client: Client) -> None:
    make_project()
    event = deployment_event(event_id="evt_refused")
    body, signature = signed(event)
    wrong = {key: "0" * 40 for key in signature}
    response = client.post(URL, data=body, content_type="application/json", **wrong)
    assert response.status_code == 401
    assert response.json() == {"detail": "signature missing or wrong"}
    assert response.headers["WWW-Authenticate"] == 'HMAC header="x-vercel-signature"'
    event["payload"]["deployment"]["id"] = 7
    response = post(client, event)
    assert response.status_code == 400 and "deployment.id" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists() and not Release.objects.exists()


@pytest.mark.django_db
def test_a_gate_from_memory_writes_the_rows_the_long_way_writes(client: Client) -> None:
    from django.test.utils import CaptureQueriesContext

    project = make_project()
    gate_rows.HELD.clear()
    long_way = deployment_event(
        event_id="evt_long", deployment_id="dpl_Long0000000000000000001", sha="c" * 40
    )
    assert post(client, long_way).status_code == 202  # nothing held: read the project, gate with models
    short_way = deployment_event(
        event_id="evt_short", deployment_id="dpl_Short000000000000000001", sha="d" * 40
    )
    with CaptureQueriesContext(connection) as seen:
        response = post(client, short_way)
    assert response.status_code == 202 and _project_reads(seen.captured_queries) == []
    assert response.json()["detail"] == f"gating {'d' * 40}"

    first = Release.objects.get(deployment_id="dpl_Long0000000000000000001")
    second = Release.objects.get(deployment_id="dpl_Short000000000000000001")

    def comparable(release: Release) -> dict[str, Any]:
        return {k: v for k, v in model_to_dict(release).items() if k not in VARYING | TIMES}

    assert comparable(first) == comparable(second)
    assert second.next_poll_at == second.gating_started_at == second.updated_at == second.created_at
    assert second.deployment_url == short_way["payload"]["deployment"]["url"]
    assert second.meta == short_way["payload"]["deployment"]["meta"]
    events = [
        {k: v for k, v in model_to_dict(e).items() if k not in {"id", "release", "created_at"}}
        for r in (first, second)
        for e in r.events.all()
    ]
    assert len(events) == 2 and events[0] == events[1]
    deliveries = [
        {
            k: v
            for k, v in model_to_dict(d).items()
            if k not in {"id", "release", "delivery_id", "payload", "received_at"}
        }
        for d in WebhookDelivery.objects.order_by("id")
    ]
    assert (
        deliveries[0]
        == deliveries[1]
        == {
            "source": "vercel",
            "event_type": "deployment.succeeded",
            "outcome": "accepted",
            "project": project.pk,
            "note": "gate started",
        }
        | {
            k: v
            for k, v in deliveries[0].items()
            if k not in {"source", "event_type", "outcome", "project", "note"}
        }
    )
    stored = WebhookDelivery.objects.get(delivery_id="evt_short")
    assert stored.release_id == second.pk and stored.payload == short_way
