"""Property: no delivery to either webhook is ever a 5xx, and no refused or failed one changes a row.

Rows written by accepted deliveries stay between examples, so later ones meet gates, live
releases, incidents and duplicates in every state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import given

from releases.domain.lifecycle import ReleaseState
from releases.models import Project
from tests.factories import make_project, make_release
from tests.fuzz.deliveries import Delivery, sentry_delivery, vercel_delivery
from tests.fuzz.support import TALLY, changed_tables, fuzz_settings, table_digest

pytestmark = pytest.mark.django_db
S = ReleaseState
PD_KEY = "fuzz0routing0key0000000000000abc"


@pytest.fixture(scope="module", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    TALLY.write()


@pytest.fixture
def web(monkeypatch: pytest.MonkeyPatch, no_broker: list[Any]) -> Client:
    """Two projects, one with a live release and a known-good one; a client that shows 500s as 500s."""
    monkeypatch.setenv("FUZZ_PD_KEY", PD_KEY)
    now = timezone.now()
    shop = make_project(sentry_project="shop-web", pagerduty_routing_key_env="FUZZ_PD_KEY")
    make_project(
        name="canary-web",
        vercel_project_id="prj_fuzzCanary0000000000000",
        sentry_project="canary-web",
        canary={
            "router": "vercel",
            "stages": [{"percent": 5, "hold": 60.0}, {"percent": 100, "hold": 0}],
            "confirmations": 2,
            "confirmation_interval": 30.0,
            "abort_on_failure": True,
            "failures_to_abort": 1,
            "checks": [{"kind": "sentry_error_rate", "name": "errors", "max": 0.01, "window": 300.0}],
        },
    )
    make_release(shop, deployment_id="dpl_fuzzGood000000000000000", state=S.SUPERSEDED, promoted_at=now)
    live = make_release(
        shop,
        deployment_id="dpl_fuzzLive000000000000000",
        version="web@1.4.2",
        state=S.PROMOTED,
        promoted_at=now,
    )
    Project.objects.filter(pk=shop.pk).update(
        live_deployment_id=live.deployment_id, live_since=now - timedelta(minutes=30)
    )
    return Client(raise_request_exception=False)


def send(client: Client, url: str, delivery: Delivery) -> Any:
    return client.generic(
        delivery.method, url, data=delivery.body, content_type=delivery.content_type, **delivery.headers
    )


def check(client: Client, url: str, target: str, delivery: Delivery) -> None:
    if delivery.prime is not None:
        first = send(client, url, delivery.prime)
        TALLY.record(target, first.status_code)
        assert first.status_code < 500, first.content[:300]
    before = table_digest()
    response = send(client, url, delivery)
    changed = changed_tables(before, table_digest())
    refused = delivery.refused or response.status_code >= 400
    TALLY.record(target, response.status_code, refused_changed=refused and bool(changed))
    assert response.status_code < 500, (delivery.kind, response.content[:300])
    if delivery.refused:
        # A replay is answered "duplicate"; OPTIONS describes the endpoint. Neither writes.
        allowed = (200,) if delivery.kind == "replay" or delivery.method == "OPTIONS" else ()
        assert 400 <= response.status_code < 500 or response.status_code in allowed, (
            delivery.kind,
            response.status_code,
            response.content[:300],
        )
    assert not (refused and changed), f"{delivery.kind} answered {response.status_code} and changed {changed}"


@fuzz_settings()
@given(delivery=vercel_delivery())
def test_vercel_webhook_never_fails_and_refusals_change_nothing(web: Client, delivery: Delivery) -> None:
    check(web, "/webhooks/vercel/", "POST /webhooks/vercel/", delivery)


@fuzz_settings()
@given(delivery=sentry_delivery())
def test_sentry_webhook_never_fails_and_refusals_change_nothing(web: Client, delivery: Delivery) -> None:
    check(web, "/webhooks/sentry/", "POST /webhooks/sentry/", delivery)
