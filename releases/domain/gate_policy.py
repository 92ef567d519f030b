"""The gate's policy: what a release is judged by, its defaults, and what is wrong with one.

Pure: no Django, no I/O. ``releases/domain/verdict.py`` judges by it; the Project model builds it
(``Project.policy()``) and an analysis stores it as its snapshot (``to_json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import lru_cache
from typing import Any

from releases.domain import sequential
from releases.domain.policy import GATE
from releases.domain.rates import exact


class Method(StrEnum):
    SEQUENTIAL = "sequential"
    FIXED = "fixed"
    # The bake watch's test (sequential.Watch): set by the watch on its own snapshot, never a
    # gate.method a project chooses.
    WATCH = "watch"


GATE_METHODS = (Method.SEQUENTIAL, Method.FIXED)


class OnTimeout(StrEnum):
    HOLD = "hold"  # keep the build staged and ask a human
    ROLLBACK = "rollback"


class OnNoTraffic(StrEnum):
    HOLD = "hold"
    ROLLBACK = "rollback"
    # Hold, run the project's gate checks against the staged deployment, and promote if they
    # pass: the one way to promote without session evidence, and only when written explicitly.
    PROMOTE_AFTER_CHECKS = "promote_after_checks"


DEFAULT_ON_TIMEOUT = OnTimeout(GATE.on_timeout)
DEFAULT_METHOD = Method(GATE.method)
DEFAULT_NO_TRAFFIC_AFTER = GATE.no_traffic_after.total_seconds()
DEFAULT_ON_NO_TRAFFIC = OnNoTraffic(GATE.on_no_traffic)


@dataclass(frozen=True)
class Policy:
    crash_free_threshold: float  # fraction, 0 < t <= 1
    max_wait: float  # seconds since gating started
    # fixed: the sample the rule waits for; sequential: the floor below which nothing is promoted.
    # None: GATE.fixed_min_sessions for fixed, derived from the bad rate for sequential.
    min_sessions: int | None = None
    method: Method = DEFAULT_METHOD
    tolerance: float = GATE.tolerance  # sequential: good = threshold + tolerance, bad = threshold - tolerance
    false_promote: float = GATE.false_promote
    false_rollback: float = GATE.false_rollback
    max_sessions: int = GATE.max_sessions  # sequential: the likelihood ratio's sign decides here
    false_alarm: float = GATE.watch_false_alarm  # watch: at most this share of good releases alarmed
    # Seconds into the gate after which too little traffic to decide by max_wait is said, once,
    # and on_no_traffic applies; None: never (the bake watch, which ends by time).
    no_traffic_after: float | None = DEFAULT_NO_TRAFFIC_AFTER
    on_no_traffic: OnNoTraffic = DEFAULT_ON_NO_TRAFFIC
    max_consecutive_errors: int = GATE.max_consecutive_errors
    on_timeout: OnTimeout = DEFAULT_ON_TIMEOUT
    fail_fast: bool = GATE.fail_fast
    early_fail_confidence: float | None = None  # e.g. 0.99: Wilson upper bound test; None = off
    early_fail_min_sessions: int = GATE.early_fail_min_sessions  # floor before the statistical test may fail

    def to_json(self) -> dict[str, object]:
        """The policy as an analysis stores it: what it was judged by, whatever the config says later."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        known = {field.name for field in fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        if "on_timeout" in values:
            values["on_timeout"] = OnTimeout(values["on_timeout"])
        if "on_no_traffic" in values:
            values["on_no_traffic"] = OnNoTraffic(values["on_no_traffic"])
        # Nor did it watch for traffic: a snapshot without the key never calls it too little.
        values.setdefault("no_traffic_after", None)
        # A snapshot taken before there was a choice of method was judged by the fixed rule.
        values["method"] = Method(values.get("method", Method.FIXED))
        return cls(**values)

    @property
    def sample(self) -> int:
        """min_sessions as the rule uses it: the fixed rule's sample, or the sequential floor."""
        if self.min_sessions is not None:
            return self.min_sessions
        if self.method == Method.FIXED:
            return GATE.fixed_min_sessions
        _, bad = crash_rates(self.crash_free_threshold, self.tolerance)
        return derived_floor(bad, self.false_promote)

    def watch(self) -> sequential.Watch:
        good, bad = crash_rates(self.crash_free_threshold, self.tolerance)
        return sequential.Watch(good=good, bad=bad, false_alarm=self.false_alarm)

    def design(self) -> sequential.Design:
        good, bad = crash_rates(self.crash_free_threshold, self.tolerance)
        return sequential.Design(
            good=good,
            bad=bad,
            false_promote=self.false_promote,
            false_rollback=self.false_rollback,
            floor=self.sample,
            cap=self.max_sessions,
        )


@lru_cache(maxsize=256)
def crash_rates(threshold: float, tolerance: float) -> tuple[float, float]:
    """The good and bad crash rates around a crash-free threshold.

    Through the exact decimals, so 1 - (0.995 + 0.003) is 0.002, not 0.0020000000000000018; cached,
    since every poll asks it of the same few policies.
    """
    return float(1 - exact(threshold) - exact(tolerance)), float(1 - exact(threshold) + exact(tolerance))


def derived_floor(bad_crash_rate: float, false_promote: float) -> int:
    """The fewest sessions in which zero crashes rule out ``bad_crash_rate`` at ``false_promote``.

    (1 - p)**n <= alpha  <=>  n >= ln(1 / alpha) / -ln(1 - p): about 3 / p at 5%, the rule of three.
    """
    return max(1, math.ceil(math.log(1 / false_promote) / -math.log1p(-bad_crash_rate)))


def validate_policy(policy: Policy) -> list[str]:
    """Everything wrong with a policy, as sentences for a human; empty when it can be used."""
    problems: list[str] = []
    if policy.min_sessions is not None and (not _is_count(policy.min_sessions) or policy.min_sessions < 1):
        problems.append(
            f"min_sessions must be a whole number of at least 1, or unset, got {policy.min_sessions!r}"
        )
    if policy.method not in set(Method):
        choices = " or ".join(Method)
        problems.append(f"method must be {choices}, got {policy.method!r}")
    if not _is_number(policy.crash_free_threshold) or not 0 < policy.crash_free_threshold <= 1:
        problems.append(
            f"crash_free_threshold must be a fraction above 0 and at most 1 (0.995 means 99.5%), "
            f"got {policy.crash_free_threshold!r}"
        )
    if not _is_number(policy.max_wait) or not 0 < policy.max_wait < math.inf:
        problems.append(f"max_wait must be a positive number of seconds, got {policy.max_wait!r}")
    if not _is_count(policy.max_consecutive_errors) or policy.max_consecutive_errors < 1:
        problems.append(
            f"max_consecutive_errors must be a whole number of at least 1, "
            f"got {policy.max_consecutive_errors!r}"
        )
    if policy.on_timeout not in set(OnTimeout):
        choices = " or ".join(OnTimeout)
        problems.append(f"on_timeout must be {choices}, got {policy.on_timeout!r}")
    if policy.on_no_traffic not in set(OnNoTraffic):
        choices = ", ".join(OnNoTraffic)
        problems.append(f"on_no_traffic must be {choices}, got {policy.on_no_traffic!r}")
    after = policy.no_traffic_after
    if after is not None and (not _is_number(after) or not 0 < after < math.inf):
        problems.append(f"no_traffic_after must be a positive number of seconds, or unset, got {after!r}")
    confidence = policy.early_fail_confidence
    if confidence is not None and (not _is_number(confidence) or not 0 < confidence < 1):
        problems.append(
            f"early_fail_confidence must be above 0 and below 1 (e.g. 0.99), or unset, got {confidence!r}"
        )
    if not _is_count(policy.early_fail_min_sessions) or policy.early_fail_min_sessions < 1:
        problems.append(
            f"early_fail_min_sessions must be a whole number of at least 1, "
            f"got {policy.early_fail_min_sessions!r}"
        )
    if policy.method == Method.SEQUENTIAL and not problems:
        problems.extend(_sequential_problems(policy))
    if policy.method == Method.WATCH and not problems:
        problems.extend(_tolerance_problems(policy) or policy.watch().problems())
    return problems


def _tolerance_problems(policy: Policy) -> list[str]:
    tolerance, threshold = policy.tolerance, policy.crash_free_threshold
    if not _is_number(tolerance) or not 0 < tolerance < 1:
        return [f"tolerance must be a fraction above 0 (e.g. 0.003 for 0.3 points), got {tolerance!r}"]
    if not exact(threshold) - exact(tolerance) > 0 or not exact(threshold) + exact(tolerance) < 1:
        return [
            f"tolerance {tolerance!r} around crash_free_threshold {threshold!r} must leave the good rate "
            f"(threshold + tolerance) below 100% and the bad rate (threshold - tolerance) above 0%"
        ]
    return []


def _sequential_problems(policy: Policy) -> list[str]:
    problems: list[str] = []
    if policy.early_fail_confidence is not None:
        problems.append(
            "early_fail_confidence applies to method fixed only: the sequential test fails early on "
            "its own, with the error rates false_promote and false_rollback"
        )
    problems.extend(_tolerance_problems(policy))
    if problems and not _is_number(policy.tolerance):
        return problems
    for name in ("false_promote", "false_rollback"):
        value = getattr(policy, name)
        if not _is_number(value) or not 0 < value < 0.5:
            problems.append(f"{name} must be a probability above 0 and below 0.5 (e.g. 0.05), got {value!r}")
    cap = policy.max_sessions
    if not _is_count(cap) or cap < 1:
        problems.append(f"max_sessions must be a whole number of at least 1, got {cap!r}")
    if problems:
        return problems
    floor = policy.sample
    if not floor <= cap <= sequential.MAX_CAP:
        problems.append(
            f"max_sessions must be at least min_sessions ({floor:,}) and at most "
            f"{sequential.MAX_CAP:,}, got {cap!r}"
        )
        return problems
    problem = sequential.cap_problem(policy.design())
    if problem:
        problems.append(problem)
    return problems


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    # NaN compares false with everything, so the range checks above reject it on their own.
    return isinstance(value, int | float) and not isinstance(value, bool)
