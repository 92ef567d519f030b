from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from releases.core.errors import ProviderError
from releases.integrations import call_counts
from releases.integrations.http import HttpClient
from releases.models import Action, GateCheck, WebhookDelivery
from releases.ops.metrics import GatekeeperCollector
from releases.scheduling.liveness import mark_dispatch
from tests.factories import make_analysis, make_project, make_release

pytestmark = pytest.mark.django_db
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class VendorClient(HttpClient):
    provider = "vendortest"


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    call_counts.reset()
    yield
    call_counts.reset()


def scrape(client: Client, **headers: Any) -> Samples:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_it_counts_releases_by_state_and_project(client: Client) -> None:
    shop, blog = make_project(), make_project(name="blog", vercel_project_id="prj_blog")
    make_release(shop, state="gating")
    make_release(shop, state="gating")
    make_release(blog, state="promoted")
    samples = scrape(client)
    assert value(samples, "gatekeeper_releases", project="shop-web", state="gating") == 2
    assert value(samples, "gatekeeper_releases", project="blog", state="promoted") == 1
    assert value(samples, "gatekeeper_releases", project="blog", state="gating") is None
    assert value(samples, "gatekeeper_up") == 1


def test_it_counts_decisions_and_buckets_the_time_to_decide(client: Client) -> None:
    project, now = make_project(), timezone.now()
    started = now - timedelta(seconds=400)
    make_release(
        project,
        state="passed",
        gating_started_at=started,
        decided_at=started + timedelta(seconds=240),
        verdict="pass",
        verdict_rule="crash_free_rate",
    )
    make_release(
        project,
        state="failed",
        gating_started_at=started,
        decided_at=started + timedelta(seconds=30),
        verdict="fail",
        verdict_rule="fail_fast",
    )
    make_release(project, state="gating", gating_started_at=started)  # not decided: not counted
    samples = scrape(client)
    assert value(samples, "gatekeeper_decisions_total", outcome="pass", rule="crash_free_rate") == 1
    assert value(samples, "gatekeeper_decisions_total", outcome="fail", rule="fail_fast") == 1
    assert value(samples, "gatekeeper_decision_seconds_bucket", le="60.0") == 1
    assert value(samples, "gatekeeper_decision_seconds_bucket", le="300.0") == 2
    assert value(samples, "gatekeeper_decision_seconds_bucket", le="+Inf") == 2
    assert value(samples, "gatekeeper_decision_seconds_count") == 2
    assert value(samples, "gatekeeper_decision_seconds_sum") == pytest.approx(270)


def test_poll_lag_counts_only_the_last_hours_checks(client: Client) -> None:
    release = make_release(make_project(), state="gating", gating_started_at=timezone.now())
    analysis = make_analysis(release)
    check = {"release": release, "analysis": analysis, "generation": 1, "outcome": "wait", "rule": "x"}
    GateCheck.objects.create(**check, lag_ms=1500)
    GateCheck.objects.create(**check, lag_ms=40_000)
    GateCheck.objects.create(**check, lag_ms=100, checked_at=timezone.now() - timedelta(hours=2))
    samples = scrape(client)
    assert value(samples, "gatekeeper_poll_lag_seconds_bucket", le="1.0") == 0
    assert value(samples, "gatekeeper_poll_lag_seconds_bucket", le="2.0") == 1
    assert value(samples, "gatekeeper_poll_lag_seconds_bucket", le="60.0") == 2
    assert value(samples, "gatekeeper_poll_lag_seconds_gcount") == 2
    assert value(samples, "gatekeeper_poll_lag_seconds_gsum") == pytest.approx(41.5)


def test_it_counts_action_attempts_and_failures_by_kind(client: Client) -> None:
    release = make_release(make_project())
    Action.objects.create(release=release, kind="rollback", key="r1", attempts=3, status="failed")
    Action.objects.create(release=release, kind="rollback", key="r2", attempts=1, status="succeeded")
    Action.objects.create(release=release, kind="slack", key="s1", attempts=2, status="succeeded")
    samples = scrape(client)
    assert value(samples, "gatekeeper_action_attempts_total", kind="rollback") == 4
    assert value(samples, "gatekeeper_action_failures_total", kind="rollback") == 1
    assert value(samples, "gatekeeper_action_attempts_total", kind="slack") == 2
    assert value(samples, "gatekeeper_action_failures_total", kind="slack") == 0


def test_it_counts_webhook_deliveries_by_source_and_outcome(client: Client) -> None:
    for n, (source, outcome) in enumerate(
        [("vercel", "accepted"), ("vercel", "accepted"), ("sentry", "ignored")]
    ):
        WebhookDelivery.objects.create(source=source, delivery_id=str(n), event_type="e", outcome=outcome)
    samples = scrape(client)
    assert value(samples, "gatekeeper_webhook_deliveries_total", source="vercel", outcome="accepted") == 2
    assert value(samples, "gatekeeper_webhook_deliveries_total", source="sentry", outcome="ignored") == 1


def test_it_reports_seconds_since_the_last_dispatch(client: Client) -> None:
    mark_dispatch(timezone.now() - timedelta(seconds=42))
    samples = scrape(client)
    age = value(samples, "gatekeeper_dispatch_age_seconds")
    assert age is not None and 42 <= age < 52
    assert value(samples, "gatekeeper_dispatch_stalled") == 0


def test_it_counts_provider_calls_made_by_any_client(client: Client) -> None:
    statuses = iter([200, 200, 503, 404])
    vendor = VendorClient(
        "https://vendor.test", transport=httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
    )
    for _ in range(4):
        with contextlib.suppress(ProviderError):
            vendor.request("GET", "/x")
    samples = scrape(client)
    assert value(samples, "gatekeeper_provider_calls_total", vendor="vendortest", result="ok") == 2
    assert value(samples, "gatekeeper_provider_calls_total", vendor="vendortest", result="server_error") == 1
    assert value(samples, "gatekeeper_provider_calls_total", vendor="vendortest", result="client_error") == 1
    assert value(samples, "gatekeeper_provider_calls_readable") == 1


def test_a_provider_call_is_not_held_up_when_redis_is_unreachable(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    vendor = VendorClient("https://vendor.test", transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    started = time.monotonic()
    statuses = [vendor.request("GET", "/x").status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert time.monotonic() - started < 1.0


def test_it_still_answers_when_redis_is_unreachable(client: Client, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    samples = scrape(client)
    assert value(samples, "gatekeeper_provider_calls_readable") == 0
    assert value(samples, "gatekeeper_up") == 1


def test_a_database_failure_answers_503_in_plain_text(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(self: GatekeeperCollector) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(GatekeeperCollector, "_releases", down)
    response = client.get("/metrics")
    assert response.status_code == 503
    assert response.content == b"metrics: database unavailable (OperationalError)\n"


def test_a_set_token_is_required(client: Client, settings: Any) -> None:
    settings.METRICS_AUTH_TOKEN = "scrape-token-123"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123").status_code == 200


def test_without_a_token_metrics_are_open(client: Client, settings: Any) -> None:
    settings.METRICS_AUTH_TOKEN = ""
    assert client.get("/metrics").status_code == 200


def test_metrics_are_not_redirected_to_https(client: Client, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/releases/").status_code == 301
