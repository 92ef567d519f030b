"""The simulator for the official-client tests: its own process, tokens required, alias jobs
instant, so each client is checked against the credentials it actually sends."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.simulator.conftest import Simulator, start_simulator, stop_simulator

VERCEL_TOKEN = "vercel-sdk-token"
SLACK_TOKEN = "xoxb-0000000000-official-client"
DD_API_KEY = "dd0api0key0official0client00000a"
DD_APP_KEY = "dd0app0key0official0client0000000000000b"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    started = start_simulator(
        "--alias-delay",
        "0",
        "--require-token",
        f"vercel={VERCEL_TOKEN}",
        f"slack={SLACK_TOKEN}",
        f"datadog={DD_API_KEY}:{DD_APP_KEY}",
    )
    yield started
    stop_simulator(started)


@pytest.fixture
def control(sim: Simulator) -> Iterator[httpx.Client]:
    with sim.client() as client:
        assert client.post("/_sim/reset").status_code == 200
        yield client
