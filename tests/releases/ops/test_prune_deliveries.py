"""`manage.py prune_deliveries`: old delivery rows go, everything they led to stays."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from releases.models import Release, WebhookDelivery
from tests.factories import make_project, make_release

pytestmark = pytest.mark.django_db


def delivery(delivery_id: str, age: timedelta, release: Release | None = None) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        source="vercel",
        delivery_id=delivery_id,
        event_type="deployment.succeeded",
        outcome="accepted",
        release=release,
        received_at=timezone.now() - age,
    )


def test_it_deletes_deliveries_older_than_asked_and_keeps_their_releases() -> None:
    release = make_release(make_project())
    delivery("old", timedelta(days=40), release)
    delivery("recent", timedelta(days=2), release)
    out = StringIO()
    call_command("prune_deliveries", "--older-than", "30d", "--dry-run", stdout=out)
    assert "would delete 1 deliveries" in out.getvalue() and WebhookDelivery.objects.count() == 2
    call_command("prune_deliveries", "--older-than", "30d", stdout=StringIO())
    assert list(WebhookDelivery.objects.values_list("delivery_id", flat=True)) == ["recent"]
    assert Release.objects.filter(pk=release.pk).exists()


@pytest.mark.parametrize(
    ("value", "message"), [("12h", "longer than the replay window"), ("soon", "--older-than")]
)
def test_it_refuses_an_age_a_replay_could_get_past(value: str, message: str) -> None:
    delivery("old", timedelta(days=40))
    with pytest.raises(CommandError, match=message):
        call_command("prune_deliveries", "--older-than", value, stdout=StringIO())
    assert WebhookDelivery.objects.count() == 1
