"""The gate's sequential test: promote, roll back or keep waiting, on cumulative session counts.

Two one-sided generalised likelihood-ratio tests run side by side (docs/decision-quality.md):

- **promote** when the data favour a crash rate at most ``good`` over one of ``bad`` strongly
  enough: ``max over q <= good of log L(q) / L(bad) >= A``, and at least ``floor`` sessions;
- **roll back** when they favour a crash rate at least ``bad`` over ``good``:
  ``max over q >= bad of log L(q) / L(good) >= B``.

Both statistics fall as crashes rise, so each boundary is one crash count per session count:
promote at ``n`` sessions with at most ``promote_at_most[n]`` crashes, roll back with at least
``rollback_at_least[n]``. ``A`` and ``B`` are calibrated on the exact binomial distribution so that
a release crashing at exactly ``bad`` reaches the promote boundary, checked after every single
session up to the cap, with probability at most ``false_promote`` (and a ``good`` release the
rollback boundary with at most ``false_rollback``). Checking after fewer sessions (a poll brings
many) can only miss crossings, so the stated error rates hold however the sessions are polled; a
release worse than ``bad`` (better than ``good``) is promoted (rolled back) less often still.

At ``cap`` sessions the test decides by the sign of ``log L(good) / L(bad)``; that decision is
counted in the calibration too.

Pure and deterministic; the calibration (about half a second in Python for the default cap) is
cached per design.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

# A cap of 20,000 sessions keeps the calibration under about ten seconds; past it the sequential
# test has long since decided any release that is not exactly at the threshold.
MAX_CAP = 20_000
_LEVEL_PRECISION = 1e-4


@dataclass(frozen=True)
class Design:
    """What the test is asked to tell apart, and how sure it must be. Crash rates, not crash-free."""

    good: float  # crash rate a release is promoted at (1 - (threshold + tolerance))
    bad: float  # crash rate a release is rolled back at (1 - (threshold - tolerance))
    false_promote: float  # at most this chance of promoting a release crashing at ``bad``
    false_rollback: float  # at most this chance of rolling back a release crashing at ``good``
    floor: int  # nothing is promoted below this many sessions
    cap: int  # at this many sessions the likelihood ratio's sign decides

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 0 < self.good < self.bad < 1:
            out.append("the good crash rate must be above 0 and below the bad one, and the bad one below 1")
        for name in ("false_promote", "false_rollback"):
            value = getattr(self, name)
            if not 0 < value < 0.5:
                out.append(f"{name} must be above 0 and below 0.5 (e.g. 0.05), got {value!r}")
        if self.floor < 1:
            out.append(f"min_sessions must be at least 1, got {self.floor!r}")
        if not self.floor <= self.cap <= MAX_CAP:
            out.append(f"max_sessions must be at least min_sessions ({self.floor}) and at most {MAX_CAP:,}")
        return out


@dataclass(frozen=True)
class Boundaries:
    """The test as two tables of crash counts, with its exact error rates."""

    design: Design
    promote_level: float  # A, in natural-log units of likelihood ratio
    rollback_level: float  # B
    promote_at_most: tuple[int, ...]  # index n <= cap: most crashes that promote (-1: none)
    rollback_at_least: tuple[int, ...]  # index n <= cap: fewest crashes that roll back (n + 1: none)
    false_promote: float  # exact, checked after every session: the rate ``design`` asked for or less
    false_rollback: float

    def promotes(self, sessions: int, crashed: int) -> bool:
        if sessions >= self.design.cap:
            return self.cap_promotes(sessions, crashed)
        return sessions >= self.design.floor and crashed <= self.promote_at_most[sessions]

    def rolls_back(self, sessions: int, crashed: int) -> bool:
        if sessions >= self.design.cap:
            return not self.cap_promotes(sessions, crashed)
        return crashed >= self.rollback_at_least[sessions]

    def cap_promotes(self, sessions: int, crashed: int) -> bool:
        return log_ratio(sessions, crashed, self.design.good, self.design.bad) > 0

    def clean_sessions_to_promote(self, sessions: int, crashed: int) -> int | None:
        """How many more crash-free sessions would promote; None when none would before the cap."""
        if self.promotes(sessions, crashed):
            return 0
        cap = self.design.cap
        if sessions < cap:
            # promote_at_most never falls as sessions grow (a clean session only adds evidence).
            first = bisect_left(self.promote_at_most, crashed, lo=max(sessions, self.design.floor), hi=cap)
            if first < cap:
                return first - sessions
        at = max(sessions, cap)
        return at - sessions if self.cap_promotes(at, crashed) else None

    def crashes_to_rollback(self, sessions: int, crashed: int) -> int:
        """How many more sessions, all crashed, would roll back."""
        more = 0
        while not self.rolls_back(sessions + more, crashed + more):
            more += 1
        return more

    def promote_evidence(self, sessions: int, crashed: int) -> float:
        return promote_statistic(sessions, crashed, self.design.good, self.design.bad)

    def rollback_evidence(self, sessions: int, crashed: int) -> float:
        return rollback_statistic(sessions, crashed, self.design.good, self.design.bad)


def log_likelihood_ratio(sessions: int, crashed: int, q: float, r: float) -> float:
    """log of P(crashed of sessions | crash rate q) / P(same | crash rate r); the binomial
    coefficients cancel."""
    clean = sessions - crashed
    value = crashed * math.log(q / r) if crashed else 0.0
    if clean:
        value += clean * (math.log1p(-q) - math.log1p(-r))
    return value


def log_ratio(sessions: int, crashed: int, good: float, bad: float) -> float:
    """Wald's statistic, log L(good) / L(bad): positive when the counts favour ``good``."""
    return log_likelihood_ratio(sessions, crashed, good, bad)


def promote_statistic(sessions: int, crashed: int, good: float, bad: float) -> float:
    """max over q <= good of log L(q) / L(bad): the best case for "at most good" against "bad"."""
    if sessions == 0:
        return 0.0
    return log_likelihood_ratio(sessions, crashed, min(crashed / sessions, good), bad)


def rollback_statistic(sessions: int, crashed: int, good: float, bad: float) -> float:
    """max over q >= bad of log L(q) / L(good): the best case for "at least bad" against "good"."""
    if sessions == 0:
        return 0.0
    return log_likelihood_ratio(sessions, crashed, max(crashed / sessions, bad), good)


def cap_promote_most(design: Design) -> int:
    """The most crashes at ``cap`` sessions whose likelihood ratio still favours ``good``."""
    crashed = -1
    while log_ratio(design.cap, crashed + 1, design.good, design.bad) > 0:
        crashed += 1
    return crashed


@lru_cache(maxsize=64)
def cap_problem(design: Design) -> str | None:
    """Why ``cap`` is too few sessions for the error rates asked, or None.

    At the cap the likelihood ratio's sign decides, and that decision errs too: with good and bad
    close together and a small cap, the sign alone promotes more bad releases (or rolls back more
    good ones) than the design allows, whatever the boundaries before it.
    """
    never = (-1,) * (design.cap + 1)
    promote_error = _false_promote(design, never)
    rollback_error = _false_rollback(design, tuple(range(1, design.cap + 2)))
    if promote_error <= design.false_promote and rollback_error <= design.false_rollback:
        return None
    return (
        f"max_sessions {design.cap:,} is too few to tell a crash rate of {design.good:.4%} from "
        f"{design.bad:.4%}: deciding by the likelihood ratio there alone would promote "
        f"{promote_error:.1%} of bad releases and roll back {rollback_error:.1%} of good ones "
        f"(false_promote {design.false_promote:g}, false_rollback {design.false_rollback:g}); "
        f"raise max_sessions or tolerance"
    )


@lru_cache(maxsize=32)
def boundaries(design: Design) -> Boundaries:
    """The calibrated test for ``design``. Raises ValueError for a design it cannot be built for."""
    problems = design.problems()
    if not problems:
        problem = cap_problem(design)
        problems = [problem] if problem else []
    if problems:
        raise ValueError("; ".join(problems))
    a = _calibrate(lambda level: _false_promote(design, _promote_table(design, level)), design.false_promote)
    b = _calibrate(
        lambda level: _false_rollback(design, _rollback_table(design, level)), design.false_rollback
    )
    promote, rollback = _promote_table(design, a), _rollback_table(design, b)
    return Boundaries(
        design=design,
        promote_level=a,
        rollback_level=b,
        promote_at_most=promote,
        rollback_at_least=rollback,
        false_promote=_false_promote(design, promote),
        false_rollback=_false_rollback(design, rollback),
    )


def _calibrate(error_at: Callable[[float], float], wanted: float) -> float:
    """The smallest level (to _LEVEL_PRECISION) whose exact error rate is at most ``wanted``.

    The error rate only falls as the level rises (the boundary moves away), so bisect, after
    doubling until the error is small enough.
    """
    low, high = 0.0, math.log(1 / wanted)
    while error_at(high) > wanted:
        low, high = high, high * 2
    while high - low > _LEVEL_PRECISION:
        middle = (low + high) / 2
        if error_at(middle) <= wanted:
            high = middle
        else:
            low = middle
    return high


def _promote_table(design: Design, level: float) -> tuple[int, ...]:
    table = [-1] * (design.cap + 1)
    crashed = -1
    for sessions in range(design.floor, design.cap + 1):
        # The statistic rises with sessions at a fixed crash count, so the limit never falls.
        while (
            crashed + 1 <= sessions
            and promote_statistic(sessions, crashed + 1, design.good, design.bad) >= level
        ):
            crashed += 1
        table[sessions] = crashed
    return tuple(table)


def _rollback_table(design: Design, level: float) -> tuple[int, ...]:
    table = [0] * (design.cap + 1)
    table[0] = 1  # no sessions, no rollback
    crashed = 0
    for sessions in range(1, design.cap + 1):
        while crashed <= sessions and rollback_statistic(sessions, crashed, design.good, design.bad) < level:
            crashed += 1
        table[sessions] = crashed
    return tuple(table)


def _false_promote(design: Design, promote: tuple[int, ...]) -> float:
    """P(a release crashing at ``bad`` is ever promoted), checked after every session.

    Dynamic programming over the crash count of the sessions so far, for the runs that have not
    crossed yet; crash counts above the largest that could still promote are lumped together.
    """
    p = design.bad
    top = max(promote[design.cap], cap_promote_most(design)) + 1
    alive = [0.0] * (top + 1)
    alive[0] = 1.0
    crossed = 0.0
    for sessions in range(1, design.cap + 1):
        alive = _step(alive, p, lump=True)
        limit = promote[sessions]
        if sessions == design.cap:
            limit = max(limit, cap_promote_most(design))
        for crashed in range(min(limit, top - 1) + 1):
            crossed += alive[crashed]
            alive[crashed] = 0.0
    return crossed


def _false_rollback(design: Design, rollback: tuple[int, ...]) -> float:
    """P(a release crashing at ``good`` is ever rolled back), checked after every session.

    A run with more crashes than the cap's sign allows rolls back by the cap at the latest, so
    reaching that count counts as crossing, and no larger count is carried.
    """
    p = design.good
    top = cap_promote_most(design) + 1
    alive = [0.0] * (top + 1)
    alive[0] = 1.0
    crossed = 0.0
    for sessions in range(1, design.cap + 1):
        alive = _step(alive, p, lump=False)
        for crashed in range(min(rollback[sessions], top), top + 1):
            crossed += alive[crashed]
            alive[crashed] = 0.0
    return crossed


def _step(alive: list[float], p: float, *, lump: bool) -> list[float]:
    """One more session: each run stays at its crash count or moves up one, with chance p."""
    stay = 1.0 - p
    new = [mass * stay for mass in alive]
    for crashed in range(len(alive) - 1):
        new[crashed + 1] += alive[crashed] * p
    if lump:
        new[-1] += alive[-1] * p  # the lumped top stays lumped
    return new


@dataclass(frozen=True)
class Watch:
    """The bake watch's test: has a live release become bad?

    A mixture likelihood ratio, ``M = mean over k of L(bad * 2**k) / L(good)`` for the bad rates
    ``bad, 2 bad, 4 bad, ...`` below 1, raises the alarm at ``1 / false_alarm``. Under a release
    crashing at ``good``, ``M`` is a martingale with mean 1, so by Ville's inequality it ever
    reaches ``1 / false_alarm`` with probability at most ``false_alarm``: however long the watch,
    however much traffic, however it is polled. A release better than ``good`` alarms less often
    still (the statistic rises with crashes). The mixture lets a release far worse than ``bad``
    be caught on the evidence that it is far worse, within a few dozen sessions.
    """

    good: float
    bad: float
    false_alarm: float

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 0 < self.good < self.bad < 1:
            out.append("the good crash rate must be above 0 and below the bad one, and the bad one below 1")
        if not 0 < self.false_alarm < 0.5:
            out.append(
                f"watch_false_alarm must be above 0 and below 0.5 (e.g. 0.01), got {self.false_alarm!r}"
            )
        return out

    @property
    def alternatives(self) -> tuple[float, ...]:
        rates = []
        rate = self.bad
        while rate < 1:
            rates.append(rate)
            rate *= 2
        return tuple(rates)

    @property
    def level(self) -> float:
        return math.log(1 / self.false_alarm)

    def statistic(self, sessions: int, crashed: int) -> float:
        """log M: the evidence, in natural-log units, that the release is bad rather than good."""
        logs = [log_likelihood_ratio(sessions, crashed, rate, self.good) for rate in self.alternatives]
        top = max(logs)
        return top + math.log(sum(math.exp(value - top) for value in logs) / len(logs))

    def alarms(self, sessions: int, crashed: int) -> bool:
        return self.statistic(sessions, crashed) >= self.level

    def crashes_to_alarm(self, sessions: int, crashed: int) -> int:
        """How many more sessions, all crashed, would raise the alarm.

        Each crashed session raises every term of the mixture, so the answer is the first ``more``
        that alarms: found by doubling, then halving, since a busy release's watch may be
        thousands of crashes away from it.
        """
        if self.alarms(sessions, crashed):
            return 0
        low, high = 0, 1  # low never alarms, high is the candidate
        while not self.alarms(sessions + high, crashed + high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if self.alarms(sessions + middle, crashed + middle):
                high = middle
            else:
                low = middle
        return high
