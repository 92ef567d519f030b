"""The secrets audit on real flows: a gate that promotes and an alert that rolls back, pages and
tells Slack, with a distinctive value for every credential. None of them may appear in the web's
or the worker's log (at DEBUG), in a Slack message or PagerDuty event the simulator received, in
the admin or in the API.

Its own simulator (demanding exactly these tokens, so the flows provably used them) and its own
worker (its output kept in a file): the shared e2e ones run with the suite's fixed values, so the
shared worker is stopped meanwhile (the `e2e` fixture starts it again for the next test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from releases.domain.lifecycle import ReleaseState
from releases.models import Release
from tests.conftest import ROOT, Simulator, Worker, stop, wait_for, worker_env
from tests.factories import make_project
from tests.fuzz.leaks import admin_pages, captured_logs, distinctive, leaks, stored_text

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db", "flush_broker")]
S = ReleaseState
PROJECT = "prj_auditShopWeb00000000000000"
BASELINE, GOOD, BAD = "dpl_auditBaseline", "dpl_auditGood", "dpl_auditBad"
VALUES = distinctive()
SENTRY = {"org": "acme", "project": "shop-web", "project_id": 4507, "environment": "production"}
TRAFFIC = {**SENTRY, "sessions_per_minute": 12000}


@pytest.fixture(scope="module")
def audit_simulator(live_server: Any) -> Iterator[Simulator]:
    env = {
        **os.environ,
        "VERCEL_WEBHOOK_SECRET": VALUES["VERCEL_WEBHOOK_SECRET"],
        "SENTRY_WEBHOOK_SECRET": VALUES["SENTRY_WEBHOOK_SECRET"],
        "SIM_ALIAS_DELAY": "0.3",
        "SIM_REQUIRE_TOKENS": ",".join(
            f"{service}={VALUES[name]}"
            for service, name in (
                ("vercel", "VERCEL_TOKEN"),
                ("sentry", "SENTRY_AUTH_TOKEN"),
                ("slack", "SLACK_BOT_TOKEN"),
            )
        ),
    }
    # fmt: off
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0",
         "--gatekeeper-url", live_server.url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    # fmt: on
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening on" in line, line
    sim = Simulator(process, line.strip().rsplit(" ", 1)[-1])
    yield sim
    stop(process)


@pytest.fixture
def worker_log(
    audit_simulator: Simulator, worker: Worker, flush_broker: None, tmp_path: Path
) -> Iterator[Path]:
    # The shared worker would take these polls and actions with the suite's tokens and simulator.
    worker.stop()
    database = connection.settings_dict["NAME"]
    env = worker_env(
        audit_simulator,
        database,
        **VALUES,
        LOG_LEVEL="DEBUG",
        DEBUG="0",
        SECRET_KEY=VALUES["SLO_AUTH_TOKEN"] * 2,
    )
    log, schedule = tmp_path / "worker.log", tmp_path / "beat-schedule"
    # fmt: off
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "gatekeeper", "worker", "--pool", "solo", "--beat",
             "--schedule", str(schedule), "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "DEBUG"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    # fmt: on
    yield log
    stop(process)


def deploy(sim: Simulator, deployment_id: str, *, live: bool, crash_rate: float, webhooks: list[str]) -> None:
    sim.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": PROJECT,
            "id": deployment_id,
            "live": live,
            "target": "production",
            "traffic": {**TRAFFIC, "crash_rate": crash_rate},
            "webhooks": webhooks,
        },
    )


def reaches(deployment_id: str, state: str) -> Release:
    return wait_for(
        lambda: Release.objects.filter(deployment_id=deployment_id, state=state).first(),
        timeout=60,
        what=f"{deployment_id} {state}",
    )


def test_no_secret_in_logs_messages_pages_or_the_admin_after_a_promotion_and_an_alert_rollback(
    audit_simulator: Simulator, worker_log: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator = audit_simulator
    simulator.control("POST", "/reset")
    for name, value in {**VALUES, **simulator.provider_env()}.items():
        setattr(settings, name, value)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", VALUES["PAGERDUTY_ROUTING_KEY"])
    make_project(
        vercel_project_id=PROJECT,
        min_sessions=300,
        poll_interval=timedelta(seconds=1),
        max_wait=timedelta(minutes=5),
        pagerduty_routing_key_env="PAGERDUTY_ROUTING_KEY",
    )
    simulator.control(
        "POST",
        "/vercel/projects",
        json={"id": PROJECT, "name": "shop-web", "domains": ["shop.example.com"], "sentry": SENTRY},
    )

    with captured_logs() as web_log:
        deploy(simulator, BASELINE, live=True, crash_rate=0.0, webhooks=["deployment.promoted"])
        reaches(BASELINE, S.PROMOTED)
        # The gate: staged, judged on Sentry's sessions, promoted through Vercel, told in Slack.
        deploy(simulator, GOOD, live=False, crash_rate=0.001, webhooks=["deployment.succeeded"])
        reaches(GOOD, S.PROMOTED)
        # The alert: a bad build goes live, Sentry's critical alert rolls it back, pages, tells.
        deploy(simulator, BAD, live=True, crash_rate=0.0, webhooks=["deployment.promoted"])
        reaches(BAD, S.PROMOTED)
        deliveries = simulator.control(
            "POST",
            "/sentry/webhooks",
            json={**SENTRY, "action": "critical", "date_started": time.time(), "incident_id": "4711"},
        )["deliveries"]
        assert [d["status"] for d in deliveries] == [202], deliveries
        reaches(BAD, S.ROLLED_BACK)
        incidents = wait_for(
            lambda: simulator.control("GET", "/pagerduty/incidents")["incidents"], what="page"
        )
        messages = wait_for(
            lambda: [
                m
                for m in simulator.control("GET", "/slack/messages")["messages"]
                if "rolling back" in m["text"]
            ],
            what="the rollback's Slack message",
        )

    assert messages and incidents
    events = [
        {key: value for key, value in event.items() if key != "routing_key"}  # where the key belongs
        for incident in incidents
        for event in incident.get("events", [])
    ]
    requests = [r for r in simulator.requests() if r["service"] in ("slack", "pagerduty")]
    client = Client()
    texts = {
        "web log": web_log.getvalue(),
        "worker log": worker_log.read_text(),
        "slack messages": json.dumps(simulator.control("GET", "/slack/messages")),
        "pagerduty events": json.dumps(events),
        "slack and pagerduty request bodies": json.dumps([r["body"] for r in requests]),
        **stored_text(),
        **admin_pages(client),
        "api": client.get("/api/releases/").content.decode(),
    }
    assert "DEBUG" in texts["worker log"], "the worker did not log at DEBUG"
    assert "webhook.received" in texts["web log"], "the web's log was not captured"
    assert leaks(VALUES, texts) == []
