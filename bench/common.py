"""What the benchmarks share: a private database and broker, and Gatekeeper's processes started for real."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(database: str, broker_db: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "x" * 50,
        "VERCEL_WEBHOOK_SECRET": "bench-vercel-secret",
        "SENTRY_WEBHOOK_SECRET": "bench-sentry-secret",
        "VERCEL_TOKEN": "bench-vercel-token",
        "SENTRY_AUTH_TOKEN": "bench-sentry-token",
        "SLACK_BOT_TOKEN": "xoxb-bench-token",
        "BENCH_PAGERDUTY_KEY": "bench0routing0key000000000000abc",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.update(extra)
    return env


def gunicorn_command(port: int, workers: int = 2, *, image_flags: bool = False) -> list[str]:
    """The web as docker-compose runs it; ``image_flags`` adds the rest of the Dockerfile's CMD
    (timeouts, the access log on stdout, the heartbeat in /dev/shm): what a request pays there."""
    command = [
        PYTHON, "-m", "gunicorn", "gatekeeper.wsgi:application",
        "--workers", str(workers), "--log-level", "warning", "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    if image_flags:
        command += [
            "--timeout", "30", "--graceful-timeout", "30", "--access-logfile", "-",
            "--worker-tmp-dir", "/dev/shm",  # noqa: S108 - the Dockerfile's own flag
        ]  # fmt: skip
    return command


def worker_command() -> list[str]:
    """One Celery worker, solo pool: the benchmarks measure one worker."""
    return [
        PYTHON, "-m", "celery", "-A", "gatekeeper", "worker", "--pool", "solo",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
    ]  # fmt: skip


def fresh_database(name: str) -> None:
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True, capture_output=True
        )


def flush_broker(broker_db: int) -> None:
    subprocess.run(["redis-cli", "-n", str(broker_db), "flushdb"], check=True, capture_output=True)


@contextmanager
def process(
    args: Sequence[str], env: dict[str, str], *, ready_url: str = "", first_line: bool = False, log: str = ""
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a process; wait until ``ready_url`` answers, or read its first stdout line."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        list(args), cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE if first_line else out, stderr=out
    )
    try:
        line = ""
        if first_line:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
        if ready_url:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(ready_url, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"{args[0]} did not start (see {log or 'its output'})") from None
                    time.sleep(0.2)
        yield proc, line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log:
            out.close()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values_ms: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values_ms, 50):7.2f} ms  p95 {percentile(values_ms, 95):7.2f} ms  "
        f"p99 {percentile(values_ms, 99):7.2f} ms  max {max(values_ms):7.2f} ms  "
        f"mean {statistics.fmean(values_ms):7.2f} ms"
    )
