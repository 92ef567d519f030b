"""Outages under a real web server (gunicorn, the whole middleware stack): PostgreSQL unreachable,
then Redis hung. A signed webhook is never lost and never held for long.

PostgreSQL is reached through a proxy the test cuts and restores; the hung Redis is a server that
accepts and never answers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from bench.common import free_port, gunicorn_command
from releases.domain.lifecycle import ReleaseState
from releases.inbound import replay
from releases.models import Action, Incident, Project, Release, WebhookDelivery
from tests.conftest import ROOT, stop
from tests.factories import SENTRY_SECRET, VERCEL_SECRET, deployment_event, make_project, make_release, signed
from tests.releases.inbound.test_sentry import alert, compact, signature
from tests.sockets import CuttableProxy, HungServer

pytestmark = pytest.mark.e2e
S = ReleaseState


@contextmanager
def web(**env: str) -> Iterator[httpx.Client]:
    """gunicorn on the test database (unless told otherwise), as docker-compose runs it."""
    db = connection.settings_dict
    port = free_port()
    environ = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "SENTRY_WEBHOOK_SECRET": SENTRY_SECRET,
        "VERCEL_WEBHOOK_SECRET": VERCEL_SECRET,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    process = subprocess.Popen(gunicorn_command(port, workers=1), cwd=ROOT, env=environ)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # Any answer: it serves. Not /healthz, which waits on the database and the broker.
                client.get("/webhooks/sentry/", timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield client
    finally:
        client.close()
        stop(process)


def post_alert(client: httpx.Client, payload: dict[str, Any], **headers: str) -> httpx.Response:
    body = compact(payload)
    return client.post(
        "/webhooks/sentry/",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Sentry-Hook-Resource": "metric_alert",
            "Sentry-Hook-Timestamp": str(int(time.time())),
            "Sentry-Hook-Signature": signature(body),
            "Request-ID": secrets.token_hex(16),
            **headers,
        },
    )


def post_vercel(client: httpx.Client, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed(event)
    return client.post(
        "/webhooks/vercel/",
        content=body,
        headers={
            "Content-Type": "application/json",
            "x-vercel-signature": headers["HTTP_X_VERCEL_SIGNATURE"],
        },
    )


@pytest.fixture
def live(transactional_db: None) -> Release:
    """Committed, so the server process sees it: a live release and a known-good one before it."""
    project = make_project(sentry_project="shop-web")
    now = timezone.now()
    make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=now - timedelta(days=2))
    release = make_release(
        project, deployment_id="dpl_live", state=S.PROMOTED, promoted_at=now - timedelta(hours=1)
    )
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id="dpl_live", live_since=now - timedelta(hours=1)
    )
    return release


def test_webhooks_sent_while_postgres_is_unreachable_are_kept_and_replayed_exactly_once(
    live: Release, settings: Any, no_broker: list[Any]
) -> None:
    spool_dir = Path(settings.SPOOL_DIR)
    proxy = CuttableProxy(int(connection.settings_dict["PORT"] or 5432))
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
    deploy = deployment_event(deployment_id="dpl_new", project_id=live.project.vercel_project_id)
    try:
        with web(DATABASE_URL=url, SPOOL_DIR=str(spool_dir)) as client:
            assert client.get("/healthz").json()["database"] == "ok"  # holds a pooled connection now
            proxy.cut()

            # A session cookie and a token header too: nothing before the view may ask the database.
            kept_alert = post_alert(
                client, alert(), Cookie=f"sessionid={secrets.token_hex(16)}", Authorization="Token abc"
            )
            kept_deploy = post_vercel(client, deploy)
            health = client.get("/healthz")

            for response in (kept_alert, kept_deploy):
                assert response.status_code == 503, response.text[:300]
                assert response.headers["Content-Type"] == "application/json"
                assert response.json()["status"] == "spooled"
            assert health.status_code == 503 and health.json()["database"].startswith("unreachable")
            assert health.json()["spool"] == {"waiting": 2, "failed": 0}
            assert not WebhookDelivery.objects.exists()

            proxy.restore()
            kept = {p.name: p.read_bytes() for p in spool_dir.iterdir() if p.is_file()}
            assert replay.replay() == {"accepted": 2, "left": 0}
            rows = [Incident.objects.count(), Action.objects.filter(kind="rollback").count()]
            assert rows == [1, 1]
            assert Action.objects.get(kind="rollback").payload["deployment_id"] == "dpl_good"
            assert Release.objects.get(deployment_id="dpl_new").state == S.GATING

            # The same records again, as after a crash before the spool let go of them.
            for name, content in kept.items():
                (spool_dir / name).write_bytes(content)
            before = (WebhookDelivery.objects.count(), Incident.objects.count(), Action.objects.count())
            assert replay.replay() == {"duplicate": 2, "left": 0}
            assert (
                WebhookDelivery.objects.count(),
                Incident.objects.count(),
                Action.objects.count(),
            ) == before

            retried = post_vercel(client, deploy)  # Vercel retries the delivery it got a 503 for
            assert (retried.status_code, retried.json()["status"]) == (200, "duplicate")
            assert Release.objects.filter(deployment_id="dpl_new").count() == 1
    finally:
        proxy.close()


def test_a_hung_redis_costs_a_webhook_and_healthz_about_a_second_and_loses_nothing(live: Release) -> None:
    hung = HungServer()
    try:
        with web(CELERY_BROKER_URL=f"redis://127.0.0.1:{hung.port}/0") as client:
            started = time.monotonic()
            response = post_alert(client, alert())
            alert_took = time.monotonic() - started
            started = time.monotonic()
            health = client.get("/healthz")
            health_took = time.monotonic() - started
    finally:
        hung.close()

    # Generous bounds: a correctness check that nothing waits on Redis for long, not a benchmark.
    assert response.status_code == 202, response.text[:300]
    assert alert_took < 5, alert_took
    rollback = Action.objects.get(kind="rollback")
    assert rollback.status == Action.Status.PENDING  # never sent: the watchdog sends it again
    assert Release.objects.get(pk=live.pk).state == S.ROLLING_BACK
    assert health_took < 5, health_took
    assert health.status_code == 503
    body = health.json()
    assert body["database"] == "ok" and body["broker"].startswith("unreachable")
    print(f"hung Redis: alert answered in {alert_took:.2f} s, /healthz in {health_took:.2f} s")
