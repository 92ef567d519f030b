"""50 copies of one signed delivery at once, through gunicorn as production runs it (two processes
of 25 threads, so all 50 are in flight together) on the real PostgreSQL test database: one gate,
one rollback intent, never a 5xx.

Not Django's live server: its listen backlog of 10 resets most of 50 simultaneous connections
before Gatekeeper sees them, which tests the test server rather than Gatekeeper.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Project, Release, ReleaseEvent, WebhookDelivery
from tests.conftest import ROOT, stop, wait_for
from tests.factories import SENTRY_SECRET, VERCEL_SECRET, deployment_event, make_project, make_release, signed
from tests.releases.inbound.test_sentry import alert, compact, signature

S = ReleaseState
COPIES = 50
PD_KEY = "race0routing0key00000000000000ab"

pytestmark = pytest.mark.usefixtures("transactional_db", "flush_broker")


@pytest.fixture(scope="module")
def web(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    with django_db_blocker.unblock():
        db = connection.settings_dict
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}",
        # Nothing is published where a worker of the suite could take it and change what is
        # counted below (a refused publish is logged; the watchdog would re-drive it).
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "DEBUG": "0",
        "SECRET_KEY": "race-" + secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "VERCEL_WEBHOOK_SECRET": VERCEL_SECRET,
        "SENTRY_WEBHOOK_SECRET": SENTRY_SECRET,
        "RACE_PD_KEY": PD_KEY,
        "LOG_LEVEL": "WARNING",
    }
    # fmt: off
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "gatekeeper.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "25", "--worker-class", "gthread", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    # fmt: on
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/webhooks/vercel/", timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30, what="gunicorn")
    yield url
    stop(process)


def all_at_once(send: Callable[[httpx.Client, int], httpx.Response]) -> list[int]:
    """Every request waits at a barrier, so all 50 reach the server together."""
    barrier = threading.Barrier(COPIES)
    codes: list[int] = [0] * COPIES

    def one(index: int) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            codes[index] = send(client, index).status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(COPIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return codes


def test_fifty_identical_vercel_deliveries_start_one_gate(web: str) -> None:
    make_project()
    body, headers = signed(deployment_event(event_id="evt_race", deployment_id="dpl_race0000000000000000001"))
    url = f"{web}/webhooks/vercel/"

    codes = all_at_once(
        lambda client, _: client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Vercel-Signature": headers["HTTP_X_VERCEL_SIGNATURE"],
            },
        )
    )

    assert Counter(codes) == {202: 1, 200: COPIES - 1}, Counter(codes)
    release = Release.objects.get()
    assert release.state == S.GATING and release.analyses.get().next_check_at is not None
    assert WebhookDelivery.objects.count() == 1
    assert ReleaseEvent.objects.filter(to_state=S.GATING).count() == 1


def test_fifty_events_for_one_deployment_with_distinct_ids_start_one_gate(web: str) -> None:
    """Vercel's own retries carry one id; a second event for the same deployment races get_or_create."""
    make_project()
    url = f"{web}/webhooks/vercel/"
    bodies = [
        signed(deployment_event(event_id=f"evt_race_{i}", deployment_id="dpl_race2")) for i in range(COPIES)
    ]

    codes = all_at_once(
        lambda client, i: client.post(
            url,
            content=bodies[i][0],
            headers={
                "Content-Type": "application/json",
                "X-Vercel-Signature": bodies[i][1]["HTTP_X_VERCEL_SIGNATURE"],
            },
        )
    )

    assert max(codes) < 500 and codes.count(202) == 1, Counter(codes)
    assert Release.objects.count() == 1
    assert ReleaseEvent.objects.filter(to_state=S.GATING).count() == 1


def test_fifty_identical_sentry_alerts_write_one_rollback_intent(
    web: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RACE_PD_KEY", PD_KEY)
    now = timezone.now()
    project = make_project(sentry_project="shop-web", pagerduty_routing_key_env="RACE_PD_KEY")
    make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=now - timedelta(days=1))
    live = make_release(
        project, deployment_id="dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q", state=S.PROMOTED, promoted_at=now
    )
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id=live.deployment_id, live_since=now - timedelta(minutes=30)
    )
    body = compact(alert())
    url = f"{web}/webhooks/sentry/"

    codes = all_at_once(
        lambda client, _: client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Sentry-Hook-Resource": "metric_alert",
                "Sentry-Hook-Timestamp": str(int(time.time())),
                "Sentry-Hook-Signature": signature(body),
                "Request-ID": secrets.token_hex(16),  # Sentry's retries each carry a fresh one
            },
        )
    )

    assert Counter(codes) == {202: 1, 200: COPIES - 1}, Counter(codes)
    assert Action.objects.filter(kind="rollback").count() == 1
    assert Action.objects.filter(kind="pagerduty").count() == 1
    assert Incident.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1
    assert Release.objects.get(pk=live.pk).state != S.PROMOTED
    assert ReleaseEvent.objects.filter(release=live, to_state=S.ROLLING_BACK).count() == 1
