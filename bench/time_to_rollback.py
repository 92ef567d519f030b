"""Time from a Sentry critical alert leaving the sender to the rollback request reaching Vercel.

    .venv/bin/python bench/time_to_rollback.py [--alerts 200]

Starts, on a private database and Redis database: the simulator, Gatekeeper's web under gunicorn
with one Celery worker (the queued path), and a second web whose tasks run inline in the request
(GATEKEEPER_INLINE_TASKS=1: the floor, no queue). For each alert a fresh release goes live in the
simulator and in Gatekeeper; the signed alert is sent straight to /webhooks/sentry/; latency is
the simulator's arrival time of the rollback POST minus the moment the alert was sent (one
clock: everything runs on this machine). Alerts go one at a time, each after the previous one's
actions (rollback, page, Slack) have finished, so each figure is one alert on an idle system.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (
    PYTHON,
    bench_env,
    flush_broker,
    free_port,
    fresh_database,
    gunicorn_command,
    percentile,
    process,
    summary,
    worker_command,
)

DATABASE = "gatekeeper_bench_rollback"
BROKER_DB = 6
PROJECT = "prj_benchShopWeb0000000000000"
BASELINE = "dpl_benchBaseline000000000001"
# What a user can see: the rollback request well under a second after the alert, and the queue
# adding no more than a few times the inline path's own cost.
TARGET_P99_MS, TARGET_RATIO = 250.0, 3.0


def alert_body(incident: int, started: datetime) -> bytes:
    body = {
        "action": "critical",
        "installation": {"uuid": "7a1c9e52-3b4d-4f60-9a18-2c5e7d0b4f31"},
        "data": {
            "metric_alert": {
                "id": str(incident),
                "identifier": str(incident),
                "organization_id": "1203",
                "projects": ["shop-web"],
                "title": "Crash-free sessions below 99.5%",
                "status": 20,
                "status_method": 3,
                "type": 2,
                "date_started": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "date_detected": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "alert_rule": {
                    "id": "341",
                    "name": "Crash-free sessions below 99.5%",
                    "query": "",
                    "environment": "production",
                    "projects": ["shop-web"],
                    "time_window": 5,
                },
            },
            "description_text": "3% crashed sessions in the last 5 minutes",
            "description_title": "Critical: Crash-free sessions below 99.5%",
            "web_url": "https://acme.sentry.io/alerts/rules/details/341/",
        },
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
    }
    return json.dumps(body, separators=(",", ":")).encode()


class Bench:
    def __init__(self, sim_url: str, alerts: int) -> None:
        self.sim = httpx.Client(base_url=sim_url, timeout=30)
        self.alerts = alerts
        self.incident = 1000
        self.last_seq = 0
        self.http = httpx.Client(timeout=30)

    def setup(self) -> Any:
        from releases.models import Project, Release

        self.sim.post(
            "/_sim/vercel/projects", json={"id": PROJECT, "name": "shop-web", "domains": ["shop.example.com"]}
        ).raise_for_status()
        self.sim.post(
            "/_sim/vercel/deployments",
            json={"project_id": PROJECT, "id": BASELINE, "live": True, "webhooks": []},
        ).raise_for_status()
        project = Project.objects.create(
            name="shop-web",
            vercel_project_id=PROJECT,
            production_domains=["shop.example.com"],
            sentry_org="acme",
            sentry_project="shop-web",
            sentry_environment="production",
            slack_channel="#releases",
            pagerduty_routing_key_env="BENCH_PAGERDUTY_KEY",
            watch_after_promotion=timedelta(0),
        )
        Release.objects.create(
            project=project,
            deployment_id=BASELINE,
            version="baseline",
            state="promoted",
            promoted_at=datetime.now(UTC) - timedelta(days=1),
        )
        return project

    def one(self, project: Any, web_url: str, n: int) -> tuple[float, int, float]:
        """One alert for a fresh live release: (latency ms, Vercel calls before the rollback, ms from
        the alert to the first of them)."""
        from releases.models import Action, Project, Release

        deployment = f"dpl_bench{n:020d}"
        self.sim.post(
            "/_sim/vercel/deployments",
            json={"project_id": PROJECT, "id": deployment, "live": True, "webhooks": []},
        ).raise_for_status()
        live_since = datetime.now(UTC) - timedelta(seconds=30)
        release = Release.objects.create(
            project=project,
            deployment_id=deployment,
            version=f"v{n}",
            state="promoted",
            promoted_at=live_since,
        )
        Project.objects.filter(pk=project.pk).update(live_deployment_id=deployment, live_since=live_since)
        since = self.last_seq
        self.incident += 1
        body = alert_body(self.incident, datetime.now(UTC) - timedelta(seconds=1))
        headers = {
            "Content-Type": "application/json",
            "Sentry-Hook-Resource": "metric_alert",
            "Sentry-Hook-Timestamp": str(int(time.time())),
            "Request-ID": os.urandom(16).hex(),
            "Sentry-Hook-Signature": hmac.new(b"bench-sentry-secret", body, hashlib.sha256).hexdigest(),
        }
        sent = time.time()
        answer = self.http.post(f"{web_url}/webhooks/sentry/", content=body, headers=headers)
        if answer.status_code != 202:
            raise RuntimeError(f"alert answered {answer.status_code}: {answer.text[:300]}")
        deadline = time.monotonic() + 20
        while True:
            log = self.sim.get("/_sim/requests", params={"service": "vercel", "since_seq": since}).json()
            rollback = [r for r in log["requests"] if r["method"] == "POST" and "/rollback/" in r["path"]]
            if rollback:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no rollback reached the simulator for {deployment}")
            # Arrival times are the simulator's own, so polling slowly costs no accuracy, and keeps
            # the benchmark from competing with what it measures for the two cores.
            time.sleep(0.05)
        before = [r for r in log["requests"] if r["seq"] < rollback[0]["seq"]]
        while Action.objects.filter(release=release, finished_at__isnull=True).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"actions for {deployment} did not finish")
            time.sleep(0.05)
        everything = self.sim.get("/_sim/requests", params={"since_seq": since}).json()["requests"]
        self.last_seq = everything[-1]["seq"] if everything else since
        first = (before[0] if before else rollback[0])["at"]
        return (rollback[0]["at"] - sent) * 1000, len(before), (first - sent) * 1000

    def run(self, project: Any, web_url: str, label: str, warmup: int = 5) -> list[float]:
        latencies, calls, firsts = [], [], []
        for n in range(warmup + self.alerts):
            latency, before, first = self.one(project, web_url, n + (0 if label == "queued" else 100000))
            if n >= warmup:
                latencies.append(latency)
                calls.append(before)
                firsts.append(first)
        print(f"{label:<7} {summary(latencies)}  (n={len(latencies)})")
        print(
            f"        of which alert -> first Vercel call p50 {percentile(firsts, 50):.2f} ms; "
            f"{max(set(calls), key=calls.count)} Vercel call(s) before the rollback POST"
        )
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    fresh_database(DATABASE)
    flush_broker(BROKER_DB)
    sim_port, queued_port, inline_port = free_port(), free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = bench_env(
        DATABASE,
        BROKER_DB,
        VERCEL_API_URL=f"{sim_url}/vercel",
        SENTRY_API_URL=f"{sim_url}/sentry/api/0",
        SLACK_API_URL=f"{sim_url}/slack/api",
        PAGERDUTY_EVENTS_URL=f"{sim_url}/pagerduty",
    )
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "gatekeeper.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    with (
        process(
            [PYTHON, "-m", "simulator", "--port", str(sim_port), "--alias-delay", "0.05"],
            env,
            ready_url=f"{sim_url}/_sim/health",
        ),
        process(
            gunicorn_command(queued_port),
            env,
            ready_url=f"http://127.0.0.1:{queued_port}/healthz",
        ),
        process(
            gunicorn_command(inline_port),
            {**env, "GATEKEEPER_INLINE_TASKS": "1"},
            ready_url=f"http://127.0.0.1:{inline_port}/healthz",
        ),
        process(worker_command(), env),
    ):
        time.sleep(1.0)  # the worker connects to the broker
        bench = Bench(sim_url, args.alerts)
        project = bench.setup()
        print(f"time to rollback: {args.alerts} critical alerts, one at a time, on {os.cpu_count()} cores")
        queued = bench.run(project, f"http://127.0.0.1:{queued_port}", "queued")
        inline = bench.run(project, f"http://127.0.0.1:{inline_port}", "inline")
    p50, p99, floor = percentile(queued, 50), percentile(queued, 99), percentile(inline, 50)
    print(f"queued  p50 {p50:.1f} ms, p99 {p99:.1f} ms; inline p50 {floor:.1f} ms")
    ratio = p50 / floor
    print(f"ratio   queued p50 / inline p50 = {ratio:.2f}x")
    print(
        f"targets p99 <= {TARGET_P99_MS:g} ms: {'met' if p99 <= TARGET_P99_MS else 'MISSED'}; "
        f"p50 within {TARGET_RATIO:g}x of inline: {'met' if ratio <= TARGET_RATIO else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
