"""Ingest: how many signed Vercel deliveries the web takes per second, against a bare one-INSERT view.

    .venv/bin/python bench/ingest.py [--quick] [--step 5] [--steady 15] [--levels 1,2,4,8,16,32,64]

Starts the web as the image runs it (gunicorn, 4 sync workers, the Dockerfile's flags, DEBUG=0,
LOG_LEVEL=INFO as docker-compose defaults) on a private database, with the settings of
bench/ingest_settings.py: production's, plus one route, ``/bench/bare/``, a view doing one
INSERT of the raw body (same middleware, same database connection settings, CSRF-exempt like
the webhooks). In that one server and run:

1. Saturation, closed loop at rising concurrency (1, 2, 4, ...), the webhook and the bare view
   in turn at each step: requests/s with no error; each endpoint's saturation is its best.
2. Latency at 70% of each one's own saturation, open loop (a fixed arrival rate): p50/p99
   counted from when each request was due.
3. Every accepted delivery must have started exactly one gate: Release rows in ``gating``, each
   with one history row, and accepted WebhookDelivery rows, against the 202s the generator saw.

Each phase also prints the CPU time gunicorn and its PostgreSQL backends spent per request (from
/proc): on a machine shared with other work, throughput moves with that work, CPU per request
much less, so it is the figure to compare changes with.

Every webhook request is a distinct delivery (its own id, deployment and commit) for a
production ``deployment.succeeded`` of the configured project, HMAC-SHA1-signed over the body,
built and signed before the timed phases. The generator (bench/loadgen.py) reports its own CPU
time, so the run shows it was not the bottleneck. Targets: the webhook takes >= 300 requests/s
(more than any team's Vercel sends) with p99 <= 100 ms at 70% of its saturation. The ratio to
the bare view is printed for comparison between changes; it is no target.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (
    PYTHON,
    ROOT,
    bench_env,
    flush_broker,
    free_port,
    fresh_database,
    gunicorn_command,
    percentile,
    process,
)
from bench.loadgen import Mode, Result, run_phase

DATABASE = "gk_ingest"
BROKER_DB = 13
WORKERS = 4  # docker-compose's WEB_CONCURRENCY default
SECRET = "bench-vercel-secret"  # noqa: S105 - bench_env's VERCEL_WEBHOOK_SECRET
PROJECT_ID = "prj_benchIngest0000000000000"
TEAM_ID = "team_benchIngest000000000000"
BARE_TABLE = "bench_ingest_bare"  # bench/ingest_urls.py inserts into it
TARGET_RATE, TARGET_P99_MS, LOAD = 300.0, 100.0, 0.70
MAX_RATE = 3000  # requests/s no run here comes near: sizes the pre-built pools

CONFIG = f"""\
projects:
  - name: ingest
    vercel:
      project_id: {PROJECT_ID}
      team_id: {TEAM_ID}
      production_domains: [ingest.example.com]
      start_on: deployment.succeeded
    sentry:
      org: acme
      project: ingest
      environment: production
      release: "{{meta[githubCommitSha]}}"
    slack:
      channel: "#releases"
    gate:
      min_sessions: 500
      crash_free_threshold: 0.995
      poll_interval: 60s
      max_wait: 2h
"""


class Pool:
    """Request bytes for one endpoint, built and signed ahead; each is sent once, in order."""

    def __init__(self, label: str, path: str, port: int, ok_status: int) -> None:
        self.label, self.path, self.port, self.ok_status = label, path, port, ok_status
        self.requests: list[bytes] = []
        self.next = 0
        self.answered: Counter[int] = Counter()
        self.measured: list[Result] = []

    def ensure(self, count: int) -> None:
        while len(self.requests) - self.next < count:
            self.requests.append(self._build(len(self.requests)))

    def _build(self, n: int) -> bytes:
        sha = hashlib.sha1(f"ingest-{n}".encode(), usedforsecurity=False).hexdigest()  # a commit id
        deployment = f"dpl_ingest{n:018d}"
        event = {
            "id": f"evt_ingest{n:018d}",
            "type": "deployment.succeeded",
            "createdAt": int(time.time() * 1000),
            "region": None,
            "payload": {
                "team": {"id": TEAM_ID},
                "user": {"id": "usr_benchIngest0001"},
                "deployment": {
                    "id": deployment,
                    "name": "ingest",
                    "url": f"ingest-{n}-acme.vercel.app",
                    "inspectorUrl": f"https://vercel.com/acme/ingest/{deployment[4:]}",
                    "meta": {"githubCommitSha": sha, "githubCommitRef": "main"},
                },
                "links": {
                    "deployment": f"https://vercel.com/acme/ingest/{deployment[4:]}",
                    "project": "https://vercel.com/acme/ingest",
                },
                "name": "ingest",
                "plan": "pro",
                "project": {"id": PROJECT_ID},
                "regions": ["iad1"],
                "target": "production",
                "type": "LAMBDAS",
                "url": f"ingest-{n}-acme.vercel.app",
            },
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        # The bare view gets the same bytes (headers included): the two differ only in the work.
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"x-vercel-signature: {signature}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body

    def run(
        self, mode: Mode, level: float, seconds: float, warmup: float, server_pid: int, *, keep: bool = True
    ) -> Result:
        """One phase (bench/loadgen.py); ``keep`` counts it among the measured ones."""
        rate = level if mode == "open" else MAX_RATE
        self.ensure(int(rate * (seconds + warmup) * 1.2) + 100)
        result = run_phase(
            self.requests,
            self.next,
            ("127.0.0.1", self.port),
            mode=mode,
            level=level,
            seconds=seconds,
            warmup=warmup,
            ok_status=self.ok_status,
            server_pid=server_pid,
            database=DATABASE,
        )
        self.next += result.used
        self.answered.update(result.statuses)
        if keep:
            self.measured.append(result)
        if result.pool_exhausted:
            raise RuntimeError(f"{self.label}: ran out of pre-built requests; raise MAX_RATE")
        return result


def psql(sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DATABASE, "-tAq", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def setup(env: dict[str, str], workdir: str) -> None:
    """Schema, the project (through sync_config, as a deployment would) and the bare view's table."""
    fresh_database(DATABASE)
    flush_broker(BROKER_DB)
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    config = Path(workdir) / "gatekeeper.yaml"
    config.write_text(CONFIG)
    subprocess.run([*manage, "sync_config", str(config)], env=env, cwd=ROOT, check=True, capture_output=True)
    psql(f"CREATE TABLE {BARE_TABLE} (id bigserial PRIMARY KEY, body bytea NOT NULL)")


def row(label: str, level: str, result: Result, cores: int) -> str:
    lat = result.latencies_ms
    p50 = f"{percentile(lat, 50):7.1f}" if lat else "    n/a"
    p99 = f"{percentile(lat, 99):7.1f}" if lat else "    n/a"
    seconds, done = result.seconds or float("nan"), result.done_in_window or float("nan")
    gen, busy = result.gen_cpu_s / seconds, result.machine_busy_s / (seconds * cores)
    return (
        f"{label:<8}{level:>10} {result.rate:8.1f} {p50} {p99} {result.error_count:6d} "
        f"{gen * 100:8.1f}% {gen / cores * 100:7.1f}% {busy * 100:6.1f}% "
        f"{result.server_cpu_s / done * 1000:8.2f} {result.database_cpu_s / done * 1000:6.2f}"
    )


HEADER = (
    f"{'endpoint':<8}{'load':>10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
    f"{'gen/core':>9} {'gen/all':>8} {'busy':>7} {'web ms/req':>8} {'pg ms/req':>6}"
)
LEGEND = (
    "gen/core: the generator's CPU time / wall time; gen/all: the same as a share of all cores; "
    "busy: all cores' busy share;\nweb, pg ms/req: CPU time of gunicorn (master + workers) and of "
    "its PostgreSQL backends per answered request"
)


def saturate(pools: list[Pool], args: argparse.Namespace, server_pid: int, cores: int) -> dict[str, Result]:
    """Closed loop at rising concurrency, endpoints in turn at each step (so a change in the
    machine's other load hits both alike); each one's best error-free step is its saturation."""
    best: dict[str, Result] = {}
    print("saturation (closed loop; latency from each request's start):")
    print(HEADER)
    for level in args.levels:
        improved = False
        for pool in pools:
            result = pool.run("closed", level, args.step, args.warmup, server_pid)
            print(row(pool.label, f"c={level}", result, cores), flush=True)
            if result.errors:
                print(f"        errors: {dict(result.errors)}")
                continue
            previous = best.get(pool.label)
            if previous is None or result.rate > previous.rate * 1.03:
                improved = True
            if previous is None or result.rate > previous.rate:
                best[pool.label] = result
        if not improved and level >= 2 * WORKERS:
            break  # neither endpoint gains any more: past saturation
    print(LEGEND)
    missing = [pool.label for pool in pools if pool.label not in best]
    if missing:
        sys.exit(f"no error-free step for {', '.join(missing)}: see the errors above")
    return best


def cpu_per_request(result: Result) -> float:
    """ms of CPU, gunicorn and its PostgreSQL backends together, per answered request."""
    return (result.server_cpu_s + result.database_cpu_s) / result.done_in_window * 1000


def report_generator(best: dict[str, Result], measured: list[Result], cores: int) -> None:
    for label, result in best.items():
        share = result.gen_cpu_s / result.seconds
        print(
            f"generator at {label} saturation: {share:.1%} of one core, {share / cores:.1%} of the machine's "
            f"{cores} cores; the machine was {result.machine_busy_s / (result.seconds * cores):.0%} busy"
        )
    cpu = sum(r.gen_cpu_s for r in measured)
    wall = sum(r.seconds for r in measured)
    busy = sum(r.machine_busy_s for r in measured)
    print(
        f"generator over all {len(measured)} measured phases: {cpu:.1f} CPU-s in {wall:.0f} s = "
        f"{cpu / wall:.1%} of one core, {cpu / (wall * cores):.1%} of the machine's CPU, "
        f"{cpu / busy:.1%} of the CPU used"
    )


def verify(webhook: Pool, bare: Pool) -> tuple[bool, str]:
    accepted = webhook.answered[202]
    releases = int(psql("SELECT count(*) FROM releases_release"))
    gates = int(
        psql(
            "SELECT count(*) FROM releases_release r WHERE r.state = 'gating' AND EXISTS (SELECT 1"
            "  FROM releases_analysis a WHERE a.release_id = r.id AND a.phase = 'running'"
            "  AND a.next_check_at IS NOT NULL)"
            " AND (SELECT count(*) FROM releases_releaseevent e"
            "      WHERE e.release_id = r.id AND e.to_state = 'gating') = 1"
        )
    )
    deliveries = int(psql("SELECT count(*) FROM releases_webhookdelivery WHERE outcome = 'accepted'"))
    stored = int(psql(f"SELECT count(*) FROM {BARE_TABLE}"))  # noqa: S608 - our constant
    ok = accepted == releases == gates == deliveries and bare.answered[bare.ok_status] == stored
    return ok, (
        f"webhook 202s {accepted}, Release rows {releases}, gating with one history row {gates}, "
        f"accepted deliveries {deliveries}; bare 202s {bare.answered[bare.ok_status]}, rows {stored}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, for development")
    parser.add_argument("--step", type=float, default=5.0, help="measured seconds per saturation step")
    parser.add_argument("--steady", type=float, default=15.0, help="measured seconds at 70%% load")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16, 32, 64]
    )
    parser.add_argument("--log-level", default="INFO", help="the web's LOG_LEVEL (compose's default: INFO)")
    args = parser.parse_args()
    if args.quick:
        args.step, args.steady, args.warmup, args.levels = 2.0, 4.0, 0.5, [2, 4, 8, 16]
    cores = os.cpu_count() or 1
    port = free_port()
    env = bench_env(DATABASE, BROKER_DB, LOG_LEVEL=args.log_level)
    env["DJANGO_SETTINGS_MODULE"] = "bench.ingest_settings"
    with tempfile.TemporaryDirectory(prefix="gk-ingest-") as workdir:
        setup(env, workdir)
        log = os.path.join(tempfile.gettempdir(), f"gk-ingest-gunicorn-{os.getpid()}.log")
        print(
            f"ingest: gunicorn {WORKERS} sync workers (the image's flags, access log on), DEBUG=0, "
            f"LOG_LEVEL={args.log_level}, {cores} cores; generator: 1 process, raw sockets, "
            f"one connection per request; the web's log (removed after a clean run) {log}"
        )
        webhook = Pool("webhook", "/webhooks/vercel/", port, 202)
        bare = Pool("bare", "/bench/bare/", port, 202)
        command = gunicorn_command(port, WORKERS, image_flags=True)
        with process(command, env, ready_url=f"http://127.0.0.1:{port}/healthz", log=log) as (server, _):
            for pool in (webhook, bare):  # every worker imports and connects before anything is timed
                pool.run("closed", 2 * WORKERS, 1.0, 0.0, server.pid, keep=False)
            best = saturate([webhook, bare], args, server.pid, cores)
            print(f"at {LOAD:.0%} of each one's saturation (open loop; latency from when each was due):")
            print(HEADER)
            steady: dict[str, Result] = {}
            for pool in (webhook, bare):
                rate = LOAD * best[pool.label].rate
                result = pool.run("open", rate, args.steady, args.warmup, server.pid)
                steady[pool.label] = result
                print(row(pool.label, f"{rate:.0f}/s", result, cores), flush=True)
                if result.errors:
                    print(f"        errors: {dict(result.errors)}")
                print(f"        generator started requests at most {result.max_lag_ms:.1f} ms late")
            stop(server)
        ok, counts = verify(webhook, bare)
    summarize(best, steady, webhook.measured + bare.measured, cores)
    print(f"gates   {'every' if ok else 'NOT every'} accepted delivery started exactly one gate: {counts}")
    if not ok:
        sys.exit(f"some accepted delivery did not start exactly one gate; the web's log: {log}")
    os.remove(log)  # the access log of every request: kept only when something went wrong


def stop(server: subprocess.Popen[str]) -> None:
    """Gunicorn's quick shutdown, then any worker still there killed by its pid: after an overload
    a sync worker can sit in recv() on a connection whose client is gone (only the master's
    timeout would end it), where a graceful stop would wait and then orphan it."""
    workers = []
    with contextlib.suppress(OSError), open(f"/proc/{server.pid}/task/{server.pid}/children") as children:
        workers = [int(pid) for pid in children.read().split()]
    server.send_signal(signal.SIGQUIT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    ours = "\0".join(server.args).encode()  # a worker's command line is its master's
    for pid in workers:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if cmdline.read().rstrip(b"\0") == ours:
                os.kill(pid, signal.SIGKILL)


def summarize(best: dict[str, Result], steady: dict[str, Result], measured: list[Result], cores: int) -> None:
    ratio = best["webhook"].rate / best["bare"].rate
    print(
        f"saturation webhook {best['webhook'].rate:.0f} req/s, bare {best['bare'].rate:.0f} req/s: "
        f"ratio {ratio:.0%}"
    )
    for label, result in steady.items():
        lat = result.latencies_ms
        print(
            f"at {LOAD:.0%} load {label:<8} {result.rate:6.1f} req/s  p50 {percentile(lat, 50):6.1f} ms  "
            f"p99 {percentile(lat, 99):6.1f} ms  errors {result.error_count}"
        )
    webhook_cpu, bare_cpu = cpu_per_request(best["webhook"]), cpu_per_request(best["bare"])
    print(
        f"CPU per request at saturation (gunicorn + its PostgreSQL backends): webhook {webhook_cpu:.2f} ms, "
        f"bare {bare_cpu:.2f} ms: the webhook costs {webhook_cpu / bare_cpu:.2f}x (a CPU-bound capacity "
        f"ratio of {bare_cpu / webhook_cpu:.0%}, less sensitive to other load on the machine)"
    )
    report_generator(best, measured, cores)
    p99 = percentile(steady["webhook"].latencies_ms, 99)
    rate_met, p99_met = best["webhook"].rate >= TARGET_RATE, p99 <= TARGET_P99_MS
    print(
        f"targets webhook >= {TARGET_RATE:g} req/s: {'met' if rate_met else 'MISSED'}; "
        f"webhook p99 <= {TARGET_P99_MS:g} ms at {LOAD:.0%} load: {'met' if p99_met else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
