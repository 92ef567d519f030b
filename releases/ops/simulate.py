"""``gate_simulate``: what a gate policy will do before it is turned on, computed exactly.

For a policy and a traffic level it prints, at several true crash-free rates, the chance to
promote, roll back or hold, and the sessions and time a decision takes. The figures come from
releases/domain/operating.py, which asks ``evaluate`` itself and is what bench/decision_quality.py
checks against simulated releases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from releases.domain.gate_policy import Method, Policy
from releases.domain.operating import Characteristics, characteristics, decisions, session_limit


@dataclass(frozen=True)
class Plan:
    policy: Policy
    sessions_per_minute: float
    poll_interval: float  # seconds

    @property
    def per_poll(self) -> int:
        # The exact calculation needs whole sessions per poll; traffic below one a poll is one.
        return max(1, round(self.sessions_per_minute * self.poll_interval / 60))

    @property
    def polls(self) -> int:
        """The poll at which max_wait has passed: a release undecided there is held (or rolled back)."""
        return max(1, math.ceil(self.policy.max_wait / self.poll_interval))


def default_rates(policy: Policy) -> list[float]:
    """Rates a team recognises: well below, at the bad rate, the threshold, the good rate, above."""
    t = policy.crash_free_threshold
    width = policy.tolerance if policy.method == Method.SEQUENTIAL else max(0.001, (1 - t) / 2)
    rates = {
        t - 8 * width,
        t - 3 * width,
        t - width,
        t,
        t + width,
        min(0.99999, t + width + (1 - t - width) / 2),
    }
    return sorted(round(rate, 6) for rate in rates if 0 < rate < 1)


def run(plan: Plan, rates: list[float]) -> list[Characteristics]:
    limit = session_limit(plan.policy, plan.per_poll, plan.polls)
    table = decisions(plan.policy, limit)
    return [characteristics(table, rate, plan.per_poll, plan.polls) for rate in rates]


def describe(plan: Plan) -> list[str]:
    policy = plan.policy
    lines = []
    if policy.method == Method.SEQUENTIAL:
        design = policy.design()
        lines.append(
            f"policy: sequential, crash-free {1 - design.good:.2%} (good) against "
            f"{1 - design.bad:.2%} (bad), false_promote {policy.false_promote:g}, "
            f"false_rollback {policy.false_rollback:g}, min_sessions {design.floor:,}, "
            f"max_sessions {design.cap:,}"
        )
    else:
        lines.append(
            f"policy: fixed, {policy.sample:,} sessions at {policy.crash_free_threshold:.2%} crash-free"
        )
    lines.append(
        f"traffic: {plan.sessions_per_minute:g} sessions a minute, a poll every {plan.poll_interval:g} s "
        f"({plan.per_poll:,} sessions a poll), max_wait {policy.max_wait / 60:g} min, "
        f"on timeout: {policy.on_timeout}"
    )
    return lines


def table(plan: Plan, rates: list[float]) -> list[str]:
    header = (
        f"{'crash-free':>10}  {'P(promote)':>10}  {'P(rollback)':>11}  {'P(timeout)':>10}  "
        f"{'mean sessions':>13}  {'p95 sessions':>12}  {'mean time':>9}"
    )
    lines = [header]
    for result in run(plan, rates):
        mean = result.mean_sessions
        minutes = None if mean is None else mean / plan.per_poll * plan.poll_interval / 60
        lines.append(
            f"{result.crash_free:>10.2%}  {result.promote:>10.3f}  {result.rollback:>11.3f}  "
            f"{result.held:>10.3f}  "
            f"{'-' if mean is None else f'{mean:,.0f}':>13}  "
            f"{'-' if result.p95_sessions is None else f'{result.p95_sessions:,}':>12}  "
            f"{'-' if minutes is None else f'{minutes:,.1f} min':>9}"
        )
    return lines
