"""GET /healthz: 200 when PostgreSQL and the broker answer, 503 naming what does not."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from gatekeeper.celery import app

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
