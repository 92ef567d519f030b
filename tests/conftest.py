"""Fixtures for real services: PostgreSQL (pytest-django), Redis, the simulator, a Celery worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from tests.factories import SENTRY_SECRET, VERCEL_SECRET
from tests.processes import started_with

ROOT = Path(__file__).resolve().parent.parent
# Every process a test starts (workers, simulators, scripts/run.sh and its children) inherits
# this, so the end of the session can tell whether any is still running.
SESSION_MARKER = f"GATEKEEPER_TEST_SESSION={os.getpid()}"
os.environ["GATEKEEPER_TEST_SESSION"] = str(os.getpid())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """`make test` leaves no process running: a leftover fails the session, and is stopped."""
    deadline = time.monotonic() + 5  # a process told to stop by a fixture may still be exiting
    while (left := started_with(SESSION_MARKER)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not left:
        return
    commands = []
    for pid in left:
        with contextlib.suppress(OSError):
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode())
            os.kill(pid, signal.SIGKILL)
    session.config.get_terminal_writer().line(f"\nprocesses left running by the tests (killed): {commands}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


PD_KEY_ENV = "E2E_PAGERDUTY_ROUTING_KEY"
PD_KEY = "e2e0routing0key00000000000000abc"  # 32 characters, as PagerDuty requires


@pytest.fixture(autouse=True)
def _secrets(settings: Any) -> None:
    settings.VERCEL_WEBHOOK_SECRET = VERCEL_SECRET
    settings.SENTRY_WEBHOOK_SECRET = SENTRY_SECRET
    settings.VERCEL_TOKEN = "test-vercel-token"
    settings.SENTRY_AUTH_TOKEN = "test-sentry-token"
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"


@pytest.fixture(autouse=True)
def _own_spool(settings: Any, tmp_path: Path) -> None:
    """A webhook kept while the database is unreachable lands in the test's own directory, never
    in the checkout's var/spool (which a worker started by another test would replay)."""
    settings.SPOOL_DIR = tmp_path / "spool"


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """What one test kept (an /api/slo/ measurement, a throttle's count) is not another's."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Record what would be sent to Celery instead of sending it (for in-process tests)."""
    sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    from releases import tasks

    for task in (tasks.poll_release, tasks.poll_batch, tasks.run_action):

        def fake(args: tuple[Any, ...] = (), *, _name: str = task.name, **kwargs: Any) -> None:
            sent.append((_name, tuple(args), kwargs))

        monkeypatch.setattr(task, "apply_async", fake)
    return sent


class Simulator:
    """A running `python -m simulator` process and a client for its control API."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=40)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/_sim{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def requests(self, service: str = "", path_contains: str = "", method: str = "") -> list[dict[str, Any]]:
        params = {
            k: v
            for k, v in {"service": service, "path_contains": path_contains, "method": method}.items()
            if v
        }
        return self.control("GET", "/requests", params=params)["requests"]

    def provider_env(self) -> dict[str, str]:
        return {
            "VERCEL_API_URL": f"{self.url}/vercel",
            "SENTRY_API_URL": f"{self.url}/sentry/api/0",
            "SLACK_API_URL": f"{self.url}/slack/api",
            "PAGERDUTY_EVENTS_URL": f"{self.url}/pagerduty",
            "DATADOG_API_URL": f"{self.url}/datadog",
            "POSTHOG_API_URL": f"{self.url}/posthog",
        }


def start_simulator(gatekeeper_url: str = "") -> Simulator:
    env = {
        **os.environ,
        "VERCEL_WEBHOOK_SECRET": VERCEL_SECRET,
        "SENTRY_WEBHOOK_SECRET": SENTRY_SECRET,
        "SIM_ALIAS_DELAY": "0.3",
    }
    args = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0"]
    if gatekeeper_url:
        args += ["--gatekeeper-url", gatekeeper_url]
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return Simulator(process, line.strip().rsplit(" ", 1)[-1])


@pytest.fixture(scope="module")
def module_simulator() -> Iterator[Simulator]:
    """A simulator of the module's own, without a Gatekeeper to send webhooks to: for tests that
    only ask the vendors (sync_config, doctor). Reset it before use."""
    simulator = start_simulator()
    yield simulator
    stop(simulator.process)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Worker:
    """A real Celery worker process against the test database and a test Redis database."""

    def __init__(self, env: dict[str, str], *, beat: bool = True, args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.beat = beat
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Beat inside the worker: it runs dispatch_due, which sends every poll.
        schedule = os.path.join(tempfile.gettempdir(), f"gatekeeper-test-beat-{os.getpid()}")
        beat = ["--beat", "--schedule", schedule]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "gatekeeper",
                "worker",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                *(beat if self.beat else []),
                *self.args,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=None,
            # Its own process group: the embedded beat is a child process, which a kill of the
            # worker alone would leave running, sending the dispatcher into the test broker.
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: the worker and its beat."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        stop(self.process)
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.process.pid, signal.SIGKILL)


def worker_env(simulator: Simulator, database_name: str, **extra: str) -> dict[str, str]:
    db = django_settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database_name}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "VERCEL_WEBHOOK_SECRET": VERCEL_SECRET,
        "SENTRY_WEBHOOK_SECRET": SENTRY_SECRET,
        "VERCEL_TOKEN": "test-vercel-token",
        "SENTRY_AUTH_TOKEN": "test-sentry-token",
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        PD_KEY_ENV: PD_KEY,
        "DEBUG": "1",
        "GATEKEEPER_DISPATCH_INTERVAL": "0.5",
        # The suite empties the tables between tests, heartbeat included: a worker watching for a
        # stalled dispatcher would page about that. The tests that watch ask for it.
        "GATEKEEPER_DISPATCH_STALL_CHECK": "0",
        # A worker killed with its beat leaves the lease held: its restart leads again this soon.
        "GATEKEEPER_BEAT_LEASE": "3",
        **simulator.provider_env(),
        **extra,
    }


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def flush_broker() -> Iterator[None]:
    import redis

    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_a_deadlock() -> Iterator[None]:
    """Retry the flush between transactional tests when PostgreSQL picks it as a deadlock victim.

    A real worker (session-scoped, with beat) may be mid-transaction when the flush truncates the
    tables it holds, and TRUNCATE then deadlocks with it (the flush fails, and the next test
    would find the last one's project). The worker's transaction ends within moments; a second
    flush finds the tables free.
    """
    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                original(self)
                return
            except CommandError as exc:
                cause = exc.__cause__
                if attempt == 4 or not (isinstance(cause, OperationalError) and "deadlock" in str(cause)):
                    raise
                time.sleep(0.2 * (attempt + 1))

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]
    yield
    TransactionTestCase._fixture_teardown = original  # type: ignore[method-assign]
