"""The gate's verdict: a pure function from a policy and one poll's evidence to a decision.

Two methods. ``sequential`` (the default) runs the test in ``releases/domain/sequential.py``:
promote or roll back as soon as the cumulative counts say so with the error rates the policy
states. ``fixed`` is the seed rule: wait for ``min_sessions``, then compare the rate with the
threshold.

No Django, no I/O, no clock. The poll task gathers the evidence (the release's session totals, how
many provider errors came in a row, the seconds since gating started) and this module only decides,
so every rule can be tested exhaustively and with hypothesis.

Decisions use exact arithmetic. A threshold written ``0.995`` in the config means exactly 995/1000
and counts are integers, so "exactly at the threshold passes" holds at every sample size. Comparing
floats would let the binary approximation of the threshold decide a release at the boundary: in
floats, ``10 * (1 - 0.9)`` is 0.999..., which would allow no crash at all in ten sessions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from statistics import NormalDist
from typing import Any

from releases.domain import sequential
from releases.domain.policy import GATE


class Method(StrEnum):
    SEQUENTIAL = "sequential"
    FIXED = "fixed"
    # The bake watch's test (sequential.Watch): set by the watch on its own snapshot, never a
    # gate.method a project chooses.
    WATCH = "watch"


GATE_METHODS = (Method.SEQUENTIAL, Method.FIXED)


class Outcome(StrEnum):
    # S105 mistakes "pass" for a hardcoded password.
    WAIT = "wait"
    PASS = "pass"  # noqa: S105
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class OnTimeout(StrEnum):
    HOLD = "hold"  # keep the build staged and ask a human
    ROLLBACK = "rollback"


class OnNoTraffic(StrEnum):
    HOLD = "hold"
    ROLLBACK = "rollback"
    # Hold, run the project's gate checks against the staged deployment, and promote if they
    # pass: the one way to promote without session evidence, and only when written explicitly.
    PROMOTE_AFTER_CHECKS = "promote_after_checks"


class Rule(StrEnum):
    """Which rule decided: stored with each check, and what notifications switch on."""

    SEED_PASS = "seed_pass"  # noqa: S105
    SEED_FAIL = "seed_fail"
    SEQUENTIAL_PASS = "sequential_pass"  # noqa: S105
    SEQUENTIAL_FAIL = "sequential_fail"
    CAP_PASS = "cap_pass"  # noqa: S105
    CAP_FAIL = "cap_fail"
    WATCH_ALARM = "watch_alarm"
    FAIL_FAST = "fail_fast"
    EARLY_FAIL = "early_fail"
    WAITING = "waiting"
    NO_DATA = "no_data"
    ERRORS_EXHAUSTED = "errors_exhausted"
    TIMEOUT = "timeout"
    INVALID_EVIDENCE = "invalid_evidence"
    NO_TRAFFIC = "no_traffic"


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
        bad = float(1 - _exact(self.crash_free_threshold) + _exact(self.tolerance))
        return derived_floor(bad, self.false_promote)

    def watch(self) -> sequential.Watch:
        return sequential.Watch(
            good=float(1 - _exact(self.crash_free_threshold) - _exact(self.tolerance)),
            bad=float(1 - _exact(self.crash_free_threshold) + _exact(self.tolerance)),
            false_alarm=self.false_alarm,
        )

    def design(self) -> sequential.Design:
        return sequential.Design(
            # Through the exact decimals, so 1 - (0.995 + 0.003) is 0.002, not 0.0020000000000000018.
            good=float(1 - _exact(self.crash_free_threshold) - _exact(self.tolerance)),
            bad=float(1 - _exact(self.crash_free_threshold) + _exact(self.tolerance)),
            false_promote=self.false_promote,
            false_rollback=self.false_rollback,
            floor=self.sample,
            cap=self.max_sessions,
        )


def derived_floor(bad_crash_rate: float, false_promote: float) -> int:
    """The fewest sessions in which zero crashes rule out ``bad_crash_rate`` at ``false_promote``.

    (1 - p)**n <= alpha  <=>  n >= ln(1 / alpha) / -ln(1 - p): about 3 / p at 5%, the rule of three.
    """
    return max(1, math.ceil(math.log(1 / false_promote) / -math.log1p(-bad_crash_rate)))


@dataclass(frozen=True)
class Evidence:
    sessions: int | None  # None = no data (provider error or nothing returned)
    crashed: int | None
    elapsed: float  # seconds since gating started
    consecutive_errors: int = 0  # provider errors in a row, including this poll's
    error: str | None = None  # this poll's provider error, if any


@dataclass(frozen=True)
class Figures:
    """The numbers behind a verdict, for Slack, PagerDuty, the admin and the stored check."""

    sessions: int | None
    crashed: int | None
    crash_free_rate: float | None  # None without sessions, or when the counts make no sense
    upper_bound: float | None  # Wilson upper bound of the crash-free rate, when the policy asks for it
    threshold: float
    min_sessions: int  # fixed: the sample; sequential: the floor
    allowed_crashes: int  # fixed: the most crashes that pass at min_sessions; sequential: at this sample
    elapsed: float
    max_wait: float
    method: str = Method.FIXED.value
    sessions_per_minute: float | None = None  # the release's traffic so far
    # The sequential test's figures (None for fixed). Statistics and levels are natural logs of
    # likelihood ratios: promote when promote_statistic >= promote_level, roll back likewise.
    max_sessions: int | None = None
    good_crash_rate: float | None = None
    bad_crash_rate: float | None = None
    promote_statistic: float | None = None
    promote_level: float | None = None
    rollback_statistic: float | None = None
    rollback_level: float | None = None
    promote_at_most: int | None = None  # crashes that would promote at this many sessions (-1: none)
    rollback_at_least: int | None = None  # crashes that would roll back at this many sessions
    clean_to_promote: int | None = None  # more crash-free sessions that would promote (None: none would)
    crashes_to_rollback: int | None = None  # more crashed sessions that would roll back

    def as_dict(self) -> dict[str, float | int | None]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    rule: Rule  # a StrEnum, so it compares equal to the plain string ("seed_pass", ...)
    reasons: tuple[str, ...]  # human sentences with the numbers, most important first
    figures: Figures
    on_inconclusive: OnTimeout | None = None  # what the caller should do, set only for INCONCLUSIVE
    # Too little traffic with on_no_traffic: promote_after_checks: hold, and promote if the
    # project's gate checks pass.
    after_checks: bool = False


def evaluate(policy: Policy, evidence: Evidence) -> Verdict:
    """Decide one poll. Raises ValueError for a policy that :func:`validate_policy` rejects."""
    problems = validate_policy(policy)
    if problems:
        # Deciding with an impossible threshold would be arbitrary; config sync refuses these first.
        raise ValueError("invalid gate policy: " + "; ".join(problems))
    counts = _counts(evidence)
    figures = _figures(policy, evidence, counts)

    if evidence.error is not None or evidence.sessions is None:
        return _without_evidence(policy, evidence, figures, Rule.NO_DATA, _no_data_reason(policy, evidence))
    if isinstance(counts, str):
        # The caller counts nonsense counts as a provider error, so they exhaust and time out alike.
        return _without_evidence(policy, evidence, figures, Rule.INVALID_EVIDENCE, counts)
    sessions, crashed = counts

    if policy.method == Method.FIXED:
        return _fixed(policy, evidence, figures, sessions, crashed)
    if policy.method == Method.WATCH:
        return _watch(policy, figures, sessions, crashed)
    return _sequential(policy, evidence, figures, sessions, crashed)


def _watch(policy: Policy, figures: Figures, sessions: int, crashed: int) -> Verdict:
    """The bake watch: fail on the alarm, else keep watching (the watch ends by time, not here)."""
    watch = policy.watch()
    good, bad = _percents(Fraction(1) - _exact(watch.good), Fraction(1) - _exact(watch.bad))
    counted = _counted(sessions, crashed)
    if watch.alarms(sessions, crashed):
        return _verdict(
            Outcome.FAIL,
            Rule.WATCH_ALARM,
            figures,
            f"{counted}: evidence {odds(watch.statistic(sessions, crashed))} that the crash-free rate "
            f"has fallen to {bad} or worse rather than staying at {good} (alarm at {odds(watch.level)}, "
            f"which at most {policy.false_alarm:.0%} of releases at {good} ever reach)",
        )
    more = watch.crashes_to_alarm(sessions, crashed)
    return _verdict(
        Outcome.WAIT, Rule.WAITING, figures, f"{counted} so far: {more:,} more crashed would alarm"
    )


def _fixed(policy: Policy, evidence: Evidence, figures: Figures, sessions: int, crashed: int) -> Verdict:
    """The seed rule: once ``min_sessions`` have come in, pass at or above the threshold."""
    threshold = _exact(policy.crash_free_threshold)
    if sessions >= policy.sample:
        # The seed rule decides even past max_wait: the sample is big enough, so there is nothing
        # left to be inconclusive about.
        allowed = allowed_crashes(sessions, policy.crash_free_threshold)
        rate, wanted = _percents(Fraction(sessions - crashed, sessions), threshold)
        if crashed <= allowed:
            return _verdict(
                Outcome.PASS,
                Rule.SEED_PASS,
                figures,
                f"crash-free {rate} >= {wanted} over {sessions:,} sessions "
                f"({crashed:,} crashed, {allowed:,} allowed)",
            )
        return _verdict(
            Outcome.FAIL,
            Rule.SEED_FAIL,
            figures,
            f"crash-free {rate} < {wanted} over {sessions:,} sessions "
            f"({crashed:,} crashed, at most {allowed:,} allowed)",
        )

    progress = f"{sessions:,} of {policy.sample:,} sessions so far"
    if policy.fail_fast and crashed > figures.allowed_crashes:
        # Crashes only grow, and these happened within the first min_sessions sessions, so the
        # rate over those sessions can no longer reach the threshold whatever comes next.
        (wanted,) = _percents(threshold)
        return _verdict(
            Outcome.FAIL,
            Rule.FAIL_FAST,
            figures,
            f"{crashed:,} crashed sessions already exceed the {figures.allowed_crashes:,} that {wanted} "
            f"crash-free allows in the first {policy.sample:,} sessions, "
            f"so those sessions can no longer reach {wanted}",
            progress,
        )

    confidence = policy.early_fail_confidence
    if (
        confidence is not None
        and sessions >= policy.early_fail_min_sessions
        and _upper_bound_below(sessions - crashed, sessions, confidence, threshold)
    ):
        assert figures.upper_bound is not None  # computed whenever a confidence is set and sessions > 0
        rate, bound, wanted = _percents(
            Fraction(sessions - crashed, sessions), Fraction(figures.upper_bound), threshold
        )
        return _verdict(
            Outcome.FAIL,
            Rule.EARLY_FAIL,
            figures,
            f"crash-free {rate} over {sessions:,} sessions ({crashed:,} crashed): "
            f"at {_confidence(confidence)} confidence the rate is at most {bound}, below {wanted}",
            progress,
        )

    too_little = _no_traffic(policy, evidence, sessions, policy.sample, figures)
    if too_little is not None:
        return too_little
    if evidence.elapsed >= policy.max_wait:
        return _verdict(
            Outcome.INCONCLUSIVE,
            Rule.TIMEOUT,
            figures,
            f"waited {_duration(evidence.elapsed)} (limit {_duration(policy.max_wait)}) "
            f"with only {sessions:,} of {policy.sample:,} sessions; on timeout: {policy.on_timeout}",
            on_inconclusive=OnTimeout(policy.on_timeout),
        )
    return _verdict(Outcome.WAIT, Rule.WAITING, figures, progress + _so_far(sessions, crashed, figures))


def _sequential(policy: Policy, evidence: Evidence, figures: Figures, sessions: int, crashed: int) -> Verdict:
    """The sequential test (releases/domain/sequential.py) on the cumulative counts."""
    test = sequential.boundaries(policy.design())
    cap = test.design.cap
    good, bad = _percents(Fraction(1) - _exact(test.design.good), Fraction(1) - _exact(test.design.bad))
    counted = _counted(sessions, crashed)
    if sessions >= cap:
        # The cap decides even past max_wait: there is a verdict to give, by the ratio's sign.
        ratio = odds(sequential.log_ratio(sessions, crashed, test.design.good, test.design.bad))
        if test.cap_promotes(sessions, crashed):
            return _verdict(
                Outcome.PASS,
                Rule.CAP_PASS,
                figures,
                f"{counted}: max_sessions ({cap:,}) reached, and the counts favour a crash-free rate of "
                f"{good} over {bad} ({ratio})",
            )
        return _verdict(
            Outcome.FAIL,
            Rule.CAP_FAIL,
            figures,
            f"{counted}: max_sessions ({cap:,}) reached, and the counts do not favour a crash-free rate "
            f"of {good} over {bad} ({ratio})",
        )
    if test.rolls_back(sessions, crashed):
        return _verdict(
            Outcome.FAIL,
            Rule.SEQUENTIAL_FAIL,
            figures,
            f"{counted}: evidence {odds(test.rollback_evidence(sessions, crashed))} that the crash-free "
            f"rate is {bad} or worse rather than {good} (rolls back at {odds(test.rollback_level)})",
        )
    most_allowed = allowed_crashes(cap, policy.crash_free_threshold)
    if policy.fail_fast and crashed > most_allowed:
        (wanted,) = _percents(_exact(policy.crash_free_threshold))
        return _verdict(
            Outcome.FAIL,
            Rule.FAIL_FAST,
            figures,
            f"{crashed:,} crashed sessions exceed the {most_allowed:,} that {wanted} crash-free allows in "
            f"max_sessions ({cap:,}): even if every session from now were crash-free, the release "
            f"could not reach {wanted}",
        )
    if test.promotes(sessions, crashed):
        return _verdict(
            Outcome.PASS,
            Rule.SEQUENTIAL_PASS,
            figures,
            f"{counted}: evidence {odds(test.promote_evidence(sessions, crashed))} that the crash-free "
            f"rate is {good} or better rather than {bad} (promotes at {odds(test.promote_level)})",
        )
    still = _still_needed(figures)
    needed = sessions + figures.clean_to_promote if figures.clean_to_promote is not None else cap
    too_little = _no_traffic(policy, evidence, sessions, needed, figures)
    if too_little is not None:
        return too_little
    if evidence.elapsed >= policy.max_wait:
        return _verdict(
            Outcome.INCONCLUSIVE,
            Rule.TIMEOUT,
            figures,
            f"waited {_duration(evidence.elapsed)} (limit {_duration(policy.max_wait)}) without a "
            f"verdict: {counted}, {still}; on timeout: {policy.on_timeout}",
            on_inconclusive=OnTimeout(policy.on_timeout),
        )
    return _verdict(Outcome.WAIT, Rule.WAITING, figures, f"{counted} so far: {still}")


def _no_traffic(
    policy: Policy, evidence: Evidence, sessions: int, needed: int, figures: Figures
) -> Verdict | None:
    """Too little traffic to decide by max_wait, said once no_traffic_after into the gate.

    A staged build gets only the traffic that reaches its own deployment URL, often none; waiting
    out max_wait in silence would hold it with no word on why.
    """
    after, elapsed = policy.no_traffic_after, evidence.elapsed
    if after is None or not after <= elapsed < policy.max_wait:
        return None
    expected = sessions / elapsed * policy.max_wait if elapsed > 0 else 0.0
    if expected >= needed:
        return None
    per_minute = sessions / elapsed * 60 if elapsed > 0 else 0.0
    after_checks = policy.on_no_traffic == OnNoTraffic.PROMOTE_AFTER_CHECKS
    return _verdict(
        Outcome.INCONCLUSIVE,
        Rule.NO_TRAFFIC,
        figures,
        f"too little traffic to judge: {sessions:,} sessions in {_duration(elapsed)} "
        f"({per_minute:,.1f} a minute); at that rate {_duration(policy.max_wait)} brings about "
        f"{expected:,.0f}, and a verdict needs {needed:,}",
        "a staged build gets only the traffic that reaches its own deployment URL: send traffic to "
        "it, or gate this project as a canary (canary: in gatekeeper.yaml), which Vercel's Rolling "
        f"Releases give a share of production; on no traffic: {policy.on_no_traffic}",
        on_inconclusive=OnTimeout.HOLD if after_checks else OnTimeout(policy.on_no_traffic),
        after_checks=after_checks,
    )


def _counted(sessions: int, crashed: int) -> str:
    if sessions == 0:
        return "no sessions"
    (rate,) = _percents(Fraction(sessions - crashed, sessions))
    return f"{sessions:,} sessions, {crashed:,} crashed (crash-free {rate})"


def _still_needed(figures: Figures) -> str:
    clean, crashes = figures.clean_to_promote, figures.crashes_to_rollback
    promote = (
        f"{_sessions(clean, 'crash-free')} would promote"
        if clean is not None
        else "no run of crash-free sessions would promote before max_sessions"
    )
    assert crashes is not None  # set for every sequential verdict
    return f"{promote}, {crashes:,} more crashed would roll back"


def _sessions(count: int, kind: str) -> str:
    return f"{count:,} more {kind} session{'' if count == 1 else 's'}"


def odds(log_ratio: float) -> str:
    """A likelihood ratio, given as its natural log, as odds a person reads: "24:1", "1:3"."""
    if log_ratio >= 0:
        ratio = math.exp(min(log_ratio, 700.0))
        return f"{_round_odds(ratio)}:1" if ratio < 1e6 else "over 1,000,000:1"
    ratio = math.exp(min(-log_ratio, 700.0))
    return f"1:{_round_odds(ratio)}" if ratio < 1e6 else "1:over 1,000,000"


def _round_odds(ratio: float) -> str:
    return f"{ratio:,.1f}" if ratio < 10 else f"{ratio:,.0f}"


def allowed_crashes(sessions: int, threshold: float) -> int:
    """The most crashed sessions out of ``sessions`` whose crash-free rate still reaches ``threshold``.

    (sessions - c) / sessions >= t  <=>  c <= sessions * (1 - t), so it is floor(sessions * (1 - t)),
    computed exactly.
    """
    if sessions < 0:
        raise ValueError(f"sessions must not be negative, got {sessions}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    return math.floor(sessions * (1 - _exact(threshold)))


def wilson_upper_bound(successes: int, n: int, confidence: float) -> float:
    """Upper end of the two-sided Wilson score interval for the rate ``successes / n``."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = _z(confidence)
    z2 = z * z
    # The textbook formula multiplied through by n, which keeps the square root's argument
    # away from the cancellation p(1 - p) suffers near p = 1, where crash-free rates live.
    bound = (successes + z2 / 2 + z * math.sqrt(successes * (n - successes) / n + z2 / 4)) / (n + z2)
    rate = successes / n
    # Exactly, the bound lies in [rate, 1]; rounding can step a hair outside, which would read as nonsense.
    return min(1.0, max(rate, bound))


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
    if not _exact(threshold) - _exact(tolerance) > 0 or not _exact(threshold) + _exact(tolerance) < 1:
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


def _exact(value: float) -> Fraction:
    # repr gives the shortest decimal that round-trips, i.e. what was written in the config (0.995),
    # not the binary approximation Fraction(0.995) would give (0.99499999999999999555...).
    return Fraction(Decimal(repr(float(value))))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    # NaN compares false with everything, so the range checks above reject it on their own.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _counts(evidence: Evidence) -> tuple[int, int] | str:
    """The counts when they make sense, else a sentence saying why they don't."""
    sessions, crashed = evidence.sessions, evidence.crashed
    if sessions is None:
        return "no session count"
    if crashed is None:
        return f"the provider gave {sessions:,} sessions but no crashed count"
    if sessions < 0 or crashed < 0:
        return f"the provider gave negative counts ({crashed:,} crashed of {sessions:,} sessions)"
    if crashed > sessions:
        return f"the provider gave more crashed sessions than sessions ({crashed:,} crashed of {sessions:,})"
    return sessions, crashed


def _figures(policy: Policy, evidence: Evidence, counts: tuple[int, int] | str) -> Figures:
    rate: float | None = None
    bound: float | None = None
    if not isinstance(counts, str) and counts[0] > 0:
        sessions, crashed = counts
        rate = float(Fraction(sessions - crashed, sessions))
        if policy.early_fail_confidence is not None:
            bound = wilson_upper_bound(sessions - crashed, sessions, policy.early_fail_confidence)
    base = Figures(
        sessions=evidence.sessions,
        crashed=evidence.crashed,
        crash_free_rate=rate,
        upper_bound=bound,
        threshold=policy.crash_free_threshold,
        min_sessions=policy.sample,
        allowed_crashes=allowed_crashes(policy.sample, policy.crash_free_threshold),
        elapsed=evidence.elapsed,
        max_wait=policy.max_wait,
        method=policy.method.value,
        sessions_per_minute=(
            counts[0] / evidence.elapsed * 60
            if not isinstance(counts, str) and evidence.elapsed > 0
            else None
        ),
    )
    if policy.method == Method.FIXED:
        return base
    n, c = counts if not isinstance(counts, str) else (0, 0)
    if policy.method == Method.WATCH:
        watch = policy.watch()
        return replace(
            base,
            good_crash_rate=watch.good,
            bad_crash_rate=watch.bad,
            rollback_statistic=watch.statistic(n, c),
            rollback_level=watch.level,
            crashes_to_rollback=watch.crashes_to_alarm(n, c),
        )
    test = sequential.boundaries(policy.design())
    cap = test.design.cap
    return replace(
        base,
        allowed_crashes=max(test.promote_at_most[min(max(n, test.design.floor), cap)], 0),
        max_sessions=cap,
        good_crash_rate=test.design.good,
        bad_crash_rate=test.design.bad,
        promote_statistic=test.promote_evidence(n, c),
        promote_level=test.promote_level,
        rollback_statistic=test.rollback_evidence(n, c),
        rollback_level=test.rollback_level,
        promote_at_most=test.promote_at_most[min(n, cap)],
        rollback_at_least=test.rollback_at_least[min(n, cap)],
        clean_to_promote=test.clean_sessions_to_promote(n, c),
        crashes_to_rollback=_crashes_to_fail(policy, test, n, c),
    )


def _crashes_to_fail(policy: Policy, test: sequential.Boundaries, sessions: int, crashed: int) -> int:
    """More crashed sessions that would fail the release: by the test, or sooner by fail fast."""
    more = test.crashes_to_rollback(sessions, crashed)
    if policy.fail_fast:
        fast = max(0, allowed_crashes(test.design.cap, policy.crash_free_threshold) + 1 - crashed)
        if sessions + fast < test.design.cap:  # at the cap the likelihood ratio's sign decides
            more = min(more, fast)
    return more


def _without_evidence(
    policy: Policy, evidence: Evidence, figures: Figures, rule: Rule, reason: str
) -> Verdict:
    """No usable numbers this poll: never a pass, and a human or the timeout policy after enough."""
    if evidence.consecutive_errors >= policy.max_consecutive_errors:
        # Errors say nothing about the release, so they never roll it back: a human decides.
        return _verdict(
            Outcome.INCONCLUSIVE,
            Rule.ERRORS_EXHAUSTED,
            figures,
            reason,
            f"{evidence.consecutive_errors:,} failed polls in a row (limit "
            f"{policy.max_consecutive_errors:,}): holding for a human whatever on_timeout says",
            on_inconclusive=OnTimeout.HOLD,
        )
    if evidence.elapsed >= policy.max_wait:
        return _verdict(
            Outcome.INCONCLUSIVE,
            Rule.TIMEOUT,
            figures,
            reason,
            f"waited {_duration(evidence.elapsed)} (limit {_duration(policy.max_wait)}) "
            f"without usable numbers; on timeout: {policy.on_timeout}",
            on_inconclusive=OnTimeout(policy.on_timeout),
        )
    return _verdict(Outcome.WAIT, rule, figures, reason)


def _no_data_reason(policy: Policy, evidence: Evidence) -> str:
    if evidence.error is None:
        return "no session data for this release yet"
    return (
        f"no data from the provider: {evidence.error} (failed poll {evidence.consecutive_errors:,} "
        f"in a row, limit {policy.max_consecutive_errors:,})"
    )


def _upper_bound_below(successes: int, n: int, confidence: float, threshold: Fraction) -> bool:
    """Whether the Wilson upper bound of successes / n is below the threshold, decided exactly.

    The Wilson interval is every p with n * (p_hat - p)**2 <= z**2 * p * (1 - p). It contains p_hat,
    so the threshold lies above it iff threshold > p_hat and the inequality fails at the threshold.
    Multiplied through by n that is (successes - n * t)**2 > z**2 * n * t * (1 - t): rational in
    everything but z, whose float is taken exactly, so no rounding of the bound decides a release.
    """
    if threshold * n <= successes:
        return False
    z2 = Fraction(_z(confidence)) ** 2
    return (successes - threshold * n) ** 2 > z2 * n * threshold * (1 - threshold)


def _z(confidence: float) -> float:
    # Two-sided: 0.99 leaves 0.5% in each tail. Asking for the lower tail keeps the argument
    # away from 1.0, where inv_cdf is undefined and a confidence near 1 would round to.
    return -NormalDist().inv_cdf((1 - confidence) / 2)


def _verdict(
    outcome: Outcome,
    rule: Rule,
    figures: Figures,
    *reasons: str,
    on_inconclusive: OnTimeout | None = None,
    after_checks: bool = False,
) -> Verdict:
    return Verdict(outcome, rule, reasons, figures, on_inconclusive, after_checks)


def _so_far(sessions: int, crashed: int, figures: Figures) -> str:
    if sessions == 0:
        return ""
    (rate,) = _percents(Fraction(sessions - crashed, sessions))
    return (
        f"; crash-free {rate} ({crashed:,} crashed, "
        f"{figures.allowed_crashes:,} allowed at {figures.min_sessions:,})"
    )


def _percents(*values: Fraction) -> tuple[str, ...]:
    """Percentages to two places, or more where two places would make different values read alike.

    Otherwise 99.4995% against a 99.5% threshold would print as "99.50% < 99.50%".
    """
    distinct = len(set(values))
    shown: tuple[str, ...] = ()
    for places in range(2, 9):
        shown = tuple(_percent(value, places) for value in values)
        if len(set(shown)) == distinct:
            break
    return shown


def _percent(value: Fraction, places: int) -> str:
    scaled = round(value * 100 * 10**places)  # exact, ties to even
    return f"{Decimal(scaled).scaleb(-places):.{places}f}%"


def _confidence(confidence: float) -> str:
    return f"{confidence * 100:.10g}%"


def _duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return " ".join(part for part in parts if part) or "0s"
