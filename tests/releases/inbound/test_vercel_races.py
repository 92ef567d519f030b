"""The Vercel webhook under repeats and races: a gate starts once, a repeated delivery id writes nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.test import Client

from releases.domain.lifecycle import ReleaseState
from releases.models import Project, Release, ReleaseEvent, WebhookDelivery
from tests.factories import deployment_event, make_project, signed

URL = "/webhooks/vercel/"


def post(client: Client, event: dict[str, Any]) -> Any:
    body, signature = signed(event)
    return client.post(URL, data=body, content_type="application/json", **signature)


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
def test_a_production_deployment_starts_its_gate_with_one_history_row(client: Client) -> None:
    project = make_project()
    event = deployment_event(deployment_id="dpl_Gated00000000000000001", sha="a" * 40)
    response = post(client, event)
    assert response.status_code == 202, response.content
    assert response.json() == {"status": "accepted", "detail": f"gating {'a' * 40}", "id": event["id"]}
    release = Release.objects.get(deployment_id="dpl_Gated00000000000000001")
    assert release.state == ReleaseState.GATING and release.analyses.get().next_check_at is not None
    history = list(release.events.values_list("from_state", "to_state"))
    assert history == [(ReleaseState.RECEIVED, ReleaseState.GATING)]
    delivery = WebhookDelivery.objects.get(delivery_id=event["id"])
    assert (delivery.outcome, delivery.note) == ("accepted", "gate started")
    assert (delivery.project_id, delivery.release_id) == (project.pk, release.pk)
    assert delivery.payload == event


@pytest.mark.django_db
def test_a_canary_project_ramps_instead_of_gating(client: Client, no_broker: list[Any]) -> None:
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
