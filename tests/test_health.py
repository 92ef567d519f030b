"""GET /healthz: 200 when PostgreSQL and the broker answer, 503 naming what does not; and whether the
poll dispatcher runs, which changes the body, never the status code."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from gatekeeper.celery import app
from releases.scheduling import lease, liveness

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    """A local port nothing listens on: bind one, note it, let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker_down(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_url = url
    try:
        yield url
    finally:
        app.conf.broker_url = previous


def test_healthz_is_ok_with_postgres_and_redis_up(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert (body["database"], body["broker"]) == ("ok", "ok")
    assert isinstance(body["took_ms"], int)


def test_healthz_with_a_trailing_slash_answers_the_same(client: Client) -> None:
    assert client.get("/healthz/").json()["ok"] is True


def test_healthz_is_503_naming_the_broker_when_it_is_unreachable(client: Client, broker_down: str) -> None:
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["database"] == "ok"
    assert body["broker"].startswith("unreachable (")
    assert broker_down not in response.content.decode()  # says what is down, not where it lives


def test_healthz_reports_when_the_dispatcher_last_ran_and_which_beat_leads(
    client: Client, settings: Any
) -> None:
    settings.BEAT_LEASE_NAME = "healthz-test"
    lease.hold("healthz-test", "beat-1:7:abc123", 10)
    liveness.mark_dispatch(timezone.now() - timedelta(seconds=0.8))

    body = client.get("/healthz").json()

    assert re.fullmatch(r"ok \([01]\.\d s ago\)", body["dispatch"]), body["dispatch"]
    assert body["dispatch_stalled"] is False
    assert body["beat_leader"] == "beat-1:7:abc123"


def test_a_stalled_dispatcher_is_reported_in_the_body_and_still_answers_200(
    client: Client, settings: Any
) -> None:
    settings.BEAT_LEASE_NAME = "healthz-test-nobody"
    settings.DISPATCH_STALL_SECONDS = 60
    liveness.mark_dispatch(timezone.now() - timedelta(seconds=75))

    response = client.get("/healthz")

    # Web still takes webhooks: out of rotation it would lose them (gatekeeper/health.py).
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["dispatch"] == "stalled: last ran 75 s ago"
    assert body["dispatch_stalled"] is True and body["dispatch_age_s"] >= 75
    assert body["beat_leader"] is None
