"""What a verdict is made of: the evidence a poll brings, the figures it yields, the outcome and
the rule that decided. Pure data; ``releases/domain/verdict.py`` reaches verdicts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum

from releases.domain.gate_policy import Method, OnTimeout


class Outcome(StrEnum):
    # S105 mistakes "pass" for a hardcoded password.
    WAIT = "wait"
    PASS = "pass"  # noqa: S105
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


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
