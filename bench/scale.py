"""10,000 releases gating at once, one worker: poll lag, Sentry requests, decisions, memory.

    .venv/bin/python bench/scale.py [--releases 10000] [--projects 10] [--minutes 3] [--interval 60]

Starts, on a private database and Redis database, the simulator, one Celery worker (solo pool,
as the issue asks: one worker on this machine), beat (the dispatcher every second) and the web
under gunicorn (idle here, measured for memory). It creates the releases already gating, each
first due at a random moment of the first interval (as if their webhooks had arrived over a
minute), a tenth of them with Sentry traffic that reaches a verdict during the run (dry-run
projects: decided and recorded, nothing sent), and lets the system run for one interval of
warm-up and ``--minutes`` measured. Then the same again with one Sentry request per release
(GATEKEEPER_POLL_BATCH=1), and prints both with the ratio.

Figures:
- poll lag: how late each poll ran (from when it was due to its check being recorded);
- Sentry sessions requests per interval, counted at the simulator;
- decisions per second (verdicts recorded);
- worker and web RSS (the largest seen; the web's is its gunicorn processes together).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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
    worker_command,
)

DATABASE = "gatekeeper_bench_scale"
BROKER_DB = 7
TARGET_LAG_P99_S, TARGET_RSS_MB, TARGET_RATIO = 5.0, 300.0, 100.0


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and all their children, in MB."""
    seen: set[int] = set()
    todo = list(pids)
    total = 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                todo.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return total / 1024


@dataclass
class Figures:
    label: str
    lags: list[float] = field(default_factory=list)
    sentry_requests: int = 0
    decisions: int = 0
    seconds: float = 0.0
    worker_rss: float = 0.0
    web_rss: float = 0.0
    polls: int = 0


class Run:
    def __init__(self, args: argparse.Namespace, sim_url: str, env: dict[str, str]) -> None:
        self.args = args
        self.sim = httpx.Client(base_url=sim_url, timeout=60)
        self.env = env

    def setup(self) -> None:
        """Projects, and releases gating, first due over the first interval."""
        from releases.models import Analysis, GateCheck, Project, Release, ReleaseEvent

        GateCheck.objects.all().delete()
        Analysis.objects.all().delete()
        ReleaseEvent.objects.all().delete()
        Release.objects.all().delete()
        self.sim.post("/_sim/reset").raise_for_status()
        now = datetime.now(UTC)
        interval = timedelta(seconds=self.args.interval)
        projects = []
        for n in range(self.args.projects):
            project, _ = Project.objects.update_or_create(
                name=f"scale-{n}",
                defaults={
                    "vercel_project_id": f"prj_scale{n:022d}",
                    "sentry_org": "acme",
                    "sentry_project": f"scale-{n}",
                    "sentry_environment": "production",
                    "slack_channel": "",
                    "min_sessions": 1000,
                    "crash_free_threshold": 0.99,
                    "poll_interval": interval,
                    "max_wait": timedelta(hours=6),
                    "dry_run": True,  # decided and recorded; nothing sent to Vercel
                    "watch_after_promotion": timedelta(0),
                },
            )
            projects.append(project)
            # Each project exists in Sentry, which answers for no other (a slug it does not know
            # is a 404); the first poll resolves the slug to this id.
            self.sim.post(
                "/_sim/sentry/projects",
                json={"org": "acme", "slug": f"scale-{n}", "id": 5000 + n, "environments": ["production"]},
            ).raise_for_status()
        rows = []
        rng = random.Random(7)
        for i in range(self.args.releases):
            rows.append(
                Release(
                    project=projects[i % len(projects)],
                    deployment_id=f"dpl_scale{i:020d}",
                    version=f"scale@{i}",
                    state="gating",
                    target="production",
                    gating_started_at=now,
                    deployment_created_at=now - timedelta(minutes=5),
                )
            )
        Release.objects.bulk_create(rows, batch_size=2000)
        Analysis.objects.bulk_create(
            [
                Analysis(
                    release=release,
                    kind="gate",
                    policy=release.project.policy().to_json(),
                    generation=1,
                    started_at=now,
                    next_check_at=now + timedelta(seconds=rng.uniform(0, self.args.interval)),
                )
                for release in rows
            ],
            batch_size=2000,
        )
        # A tenth get traffic that reaches min_sessions at some point of the run: decisions.
        span = self.args.interval * (self.args.minutes * 60 / self.args.interval + 1)
        for i in range(0, self.args.releases, 10):
            minutes_to_sample = rng.uniform(0.5, span / 60)
            self.sim.post(
                "/_sim/sentry/traffic",
                json={
                    "org": "acme",
                    "project": f"scale-{i % len(projects)}",
                    "environment": "production",
                    "release": f"scale@{i}",
                    "sessions_per_minute": 1000 / minutes_to_sample,
                    "crash_rate": 0.001 if i % 20 else 0.05,
                },
            ).raise_for_status()

    def measure(self, label: str, batch: int) -> Figures:
        from releases.models import GateCheck, Release

        figures = Figures(label)
        env = {**self.env, "GATEKEEPER_POLL_BATCH": str(batch)}
        web_port = free_port()
        schedule = os.path.join(tempfile.gettempdir(), f"gatekeeper-bench-beat-{os.getpid()}")
        beat = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "gatekeeper",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            schedule,
        ]
        web = gunicorn_command(web_port)
        worker = worker_command()
        self.setup()
        with (
            process(worker, env) as (worker_proc, _),
            process(beat, env),
            process(web, env, ready_url=f"http://127.0.0.1:{web_port}/healthz") as (web_proc, _),
        ):
            warm_until = time.monotonic() + self.args.interval
            last_seq = 0
            while time.monotonic() < warm_until:  # warm-up: the counts so far are not kept
                time.sleep(2)
                _, last_seq = self._sessions_requests(last_seq)
            start = datetime.now(UTC)
            _, last_seq = self._sessions_requests(last_seq)
            end_at = time.monotonic() + self.args.minutes * 60
            while time.monotonic() < end_at:
                time.sleep(5)
                figures.worker_rss = max(figures.worker_rss, rss_mb([worker_proc.pid]))
                figures.web_rss = max(figures.web_rss, rss_mb([web_proc.pid]))
                count, last_seq = self._sessions_requests(last_seq)
                figures.sentry_requests += count
            end = datetime.now(UTC)
            count, last_seq = self._sessions_requests(last_seq)
            figures.sentry_requests += count
        figures.seconds = (end - start).total_seconds()
        checks = GateCheck.objects.filter(checked_at__gte=start, checked_at__lt=end)
        figures.lags = [lag / 1000 for lag in checks.exclude(lag_ms=None).values_list("lag_ms", flat=True)]
        figures.polls = checks.count()
        figures.decisions = Release.objects.filter(decided_at__gte=start, decided_at__lt=end).count()
        return figures

    def _sessions_requests(self, since: int) -> tuple[int, int]:
        log = self.sim.get(
            "/_sim/requests", params={"service": "sentry", "path_contains": "/sessions/", "since_seq": since}
        ).json()["requests"]
        if not log:
            return 0, since
        return len(log), max(entry["seq"] for entry in log)


def line(figures: Figures, interval: float) -> str:
    per_interval = figures.sentry_requests / (figures.seconds / interval)
    lag = (
        f"lag p50 {percentile(figures.lags, 50):6.2f} s  p99 {percentile(figures.lags, 99):6.2f} s"
        if figures.lags
        else "lag n/a"
    )
    return (
        f"{figures.label:<16} {lag}  Sentry requests/interval {per_interval:8.1f}  "
        f"polls {figures.polls / figures.seconds:6.1f}/s  "
        f"decisions {figures.decisions / figures.seconds:5.2f}/s  "
        f"worker RSS {figures.worker_rss:6.1f} MB  web RSS {figures.web_rss:6.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--interval", type=float, default=60)
    parser.add_argument("--only-batched", action="store_true", help="skip the one-request-per-release run")
    args = parser.parse_args()
    fresh_database(DATABASE)
    flush_broker(BROKER_DB)
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = bench_env(
        DATABASE,
        BROKER_DB,
        VERCEL_API_URL=f"{sim_url}/vercel",
        SENTRY_API_URL=f"{sim_url}/sentry/api/0",
        SLACK_API_URL=f"{sim_url}/slack/api",
        PAGERDUTY_EVENTS_URL=f"{sim_url}/pagerduty",
        GATEKEEPER_DISPATCH_INTERVAL="1",
    )
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "gatekeeper.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    print(
        f"scale: {args.releases} releases gating in {args.projects} projects, "
        f"poll interval {args.interval:g} s, one worker, {os.cpu_count()} cores; "
        f"{args.minutes:g} min measured after one interval of warm-up"
    )
    with process(
        [PYTHON, "-m", "simulator", "--port", str(sim_port)], env, ready_url=f"{sim_url}/_sim/health"
    ):
        run = Run(args, sim_url, env)
        batched = run.measure("batched", 100)
        print(line(batched, args.interval), flush=True)
        single = None
        if not args.only_batched:
            single = run.measure("one per release", 1)
            print(line(single, args.interval), flush=True)
    per_interval = batched.sentry_requests / (batched.seconds / args.interval)
    p99 = percentile(batched.lags, 99) if batched.lags else float("nan")
    verdicts = [
        f"poll lag p99 <= {TARGET_LAG_P99_S:g} s: {'met' if p99 <= TARGET_LAG_P99_S else 'MISSED'}",
        f"worker RSS <= {TARGET_RSS_MB:g} MB: {'met' if batched.worker_rss <= TARGET_RSS_MB else 'MISSED'}",
    ]
    # One request per release is, by definition, one per release per interval: the ratio is
    # against that (and, when it ran, against what the per-release run actually sent).
    ratio = args.releases / per_interval if per_interval else float("inf")
    verdicts.append(
        f">= {TARGET_RATIO:g}x fewer Sentry requests: {'met' if ratio >= TARGET_RATIO else 'MISSED'}"
    )
    print(f"ratio   one request per release / batched = {ratio:.1f}x per interval", end="")
    if batched.sentry_requests:
        # Releases decided during the run stop being polled, so fewer than --releases are polled
        # in later intervals: per poll, a request carries at most MAX_RELEASES_PER_QUERY (100).
        print(f"; {batched.polls / batched.sentry_requests:.1f} releases per request (at most 100)", end="")
    if single is not None and per_interval:
        measured = (single.sentry_requests / (single.seconds / args.interval)) / per_interval
        print(f" (the per-release run sent {measured:.1f}x as many)", end="")
    print()
    print("targets " + "; ".join(verdicts))
    lags = batched.lags
    if lags:
        print(f"        batched lag mean {statistics.fmean(lags):.2f} s over {len(lags)} polls")


if __name__ == "__main__":
    main()
