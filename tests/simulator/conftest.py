"""Fixtures: the simulator as a real subprocess on a free port, and a fake Gatekeeper.

The simulator is started once per session and reset before every test, which keeps the run
fast while each test still sees a clean simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simulator.helpers import ALIAS_DELAY, SENTRY_SECRET, VERCEL_SECRET, wait_until

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Simulator:
    url: str
    process: subprocess.Popen[str]

    def client(self, **kwargs: Any) -> httpx.Client:
        # trust_env=False: a proxy from the environment must not sit between test and simulator.
        return httpx.Client(base_url=self.url, trust_env=False, timeout=10.0, **kwargs)


def start_simulator(*args: str, env: dict[str, str] | None = None) -> Simulator:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    prefix = "simulator listening on "
    if not first.startswith(prefix):
        process.kill()
        raise RuntimeError(f"simulator did not start: {first!r}")
    return Simulator(first.removeprefix(prefix), process)


def stop_simulator(sim: Simulator) -> None:
    sim.process.terminate()
    try:
        sim.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        sim.process.kill()
        sim.process.wait()


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[Simulator]:
    sim = start_simulator(
        "--alias-delay",
        str(ALIAS_DELAY),
        "--vercel-webhook-secret",
        VERCEL_SECRET,
        "--sentry-webhook-secret",
        SENTRY_SECRET,
    )
    yield sim
    stop_simulator(sim)


@pytest.fixture
def control(simulator_process: Simulator) -> Iterator[httpx.Client]:
    """A client on the simulator, reset and with default settings."""
    with simulator_process.client() as client:
        assert client.post("/_sim/reset").status_code == 200
        client.post("/_sim/config", json={"gatekeeper_url": None, "alias_delay": ALIAS_DELAY})
        yield client


@pytest.fixture
def vercel(simulator_process: Simulator) -> Iterator[httpx.Client]:
    with simulator_process.client(headers={"Authorization": "Bearer vercel-token"}) as client:
        yield client


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeGatekeeper:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        def enough() -> list[Received] | None:
            with self.lock:
                return list(self.received) if len(self.received) >= count else None

        return wait_until(enough, timeout)


@pytest.fixture
def gatekeeper(control: httpx.Client) -> Iterator[FakeGatekeeper]:
    """A stdlib HTTP server standing in for Gatekeeper's webhook endpoints; records raw bodies."""
    fake = FakeGatekeeper(url="")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            with fake.lock:
                fake.received.append(Received(self.path, headers, body))
            payload = b'{"ok":true}'
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    control.post("/_sim/config", json={"gatekeeper_url": fake.url})
    yield fake
    server.shutdown()
    server.server_close()
