"""bench/decision_quality.py's simulation against the exact calculation it is checked by."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.decision_quality import POLICIES, simulate
from releases.domain.operating import characteristics, decisions, session_limit


@pytest.mark.parametrize(("method", "rate", "per_poll"), [("sequential", 0.992, 25), ("fixed", 0.995, 200)])
def test_simulated_streams_agree_with_the_exact_binomial_calculation(
    method: str, rate: float, per_poll: int
) -> None:
    policy = POLICIES[method]
    table = decisions(policy, session_limit(policy, per_poll, None))
    streams = 8000
    simulated = simulate(table, rate, per_poll, streams=streams, rng=np.random.default_rng(7), polls=None)
    exact = characteristics(table, rate, per_poll)
    error = math.sqrt(exact.promote * (1 - exact.promote) / streams)
    assert abs(simulated.promote - exact.promote) <= 4 * error
    assert simulated.held == 0.0 and exact.held < 1e-12  # without a deadline, the cap decides all
    assert exact.mean_sessions is not None and simulated.mean_sessions is not None
    assert simulated.mean_sessions == pytest.approx(exact.mean_sessions, rel=0.05)


def test_a_deadline_holds_what_the_traffic_cannot_decide_in_time() -> None:
    policy = POLICIES["sequential"]
    table = decisions(policy, session_limit(policy, 1, None))
    # One session a minute for two hours: 120 sessions, never enough to promote (432 at least).
    held = characteristics(table, 0.999, 1, polls=120)
    assert held.promote == 0.0 and held.held > 0.95
