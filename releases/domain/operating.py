"""How a gate policy behaves: its chance to promote, roll back or hold, and the sessions it needs.

``decisions`` asks :func:`releases.domain.verdict.evaluate` itself, at every session count up to
a limit, which crash counts promote and which roll back; ``characteristics`` then computes,
exactly, what happens to a release of a given true crash-free rate polled every ``per_poll``
sessions, as a distribution over its crash count carried from poll to poll. ``gate_simulate`` and
``bench/decision_quality.py`` both use it; the benchmark checks it against simulated streams.

It relies on two properties the tests hold the verdict to: the decision depends only on the
cumulative counts (and, past ``max_wait``, the timeout), and more crashes never turn a rollback
into a promote, so each session count has one promote limit and one rollback limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from releases.domain.evidence import Evidence, Outcome
from releases.domain.gate_policy import Policy
from releases.domain.verdict import evaluate


@dataclass(frozen=True)
class Decisions:
    """What ``evaluate`` decides at each session count ``n`` (index) with no deadline reached."""

    promote_at_most: tuple[int, ...]  # the most crashes that promote at n sessions; -1: none
    rollback_at_least: tuple[int, ...]  # the fewest crashes that roll back at n sessions; n + 1: none

    @property
    def limit(self) -> int:
        return len(self.promote_at_most) - 1

    def outcome(self, sessions: int, crashed: int) -> int:
        """+1 promote, -1 roll back, 0 keep waiting."""
        if crashed >= self.rollback_at_least[sessions]:
            return -1
        if crashed <= self.promote_at_most[sessions]:
            return 1
        return 0


@dataclass(frozen=True)
class Characteristics:
    crash_free: float  # the release's true crash-free rate
    per_poll: int  # sessions each poll brings
    promote: float
    rollback: float
    held: float  # no verdict by the deadline (or by the last session count looked at)
    mean_sessions: float | None  # among decided releases
    p95_sessions: int | None


def decisions(policy: Policy, limit: int) -> Decisions:
    """Ask ``evaluate`` about every session count up to ``limit``, long before ``max_wait``.

    Per session count the crash counts run promote, then wait, then roll back (more crashes never
    turn a rollback into a promote, a property the tests hold), so two limits say it all. Each is
    found by starting from the previous session count's and stepping, which asks ``evaluate``
    a few times per session count rather than once per crash count.
    """

    def outcome(sessions: int, crashed: int) -> Outcome:
        return evaluate(policy, Evidence(sessions, crashed, elapsed=0.0)).outcome

    promote: list[int] = []
    rollback: list[int] = []
    most, least = -1, 1
    for sessions in range(limit + 1):
        # The most crashes that promote: step down while it does not promote, up while one more does.
        most = min(most, sessions)
        while most >= 0 and outcome(sessions, most) != Outcome.PASS:
            most -= 1
        while most + 1 <= sessions and outcome(sessions, most + 1) == Outcome.PASS:
            most += 1
        # The fewest crashes that roll back (sessions + 1: none do).
        least = max(min(least, sessions + 1), most + 1)
        while least <= sessions and outcome(sessions, least) != Outcome.FAIL:
            least += 1
        while least - 1 > most and outcome(sessions, least - 1) == Outcome.FAIL:
            least -= 1
        promote.append(most)
        rollback.append(least)
    return Decisions(tuple(promote), tuple(rollback))


def session_limit(policy: Policy, per_poll: int, polls: int | None) -> int:
    """The most sessions a run can see: to the deadline's poll, and never past the cap's."""
    # The fixed rule decides at the first poll past its sample; the sequential test at its cap.
    cap = policy.max_sessions if policy.method == "sequential" else policy.sample
    last = per_poll * math.ceil(cap / per_poll)  # the first poll at or past the cap
    return last if polls is None else min(last, per_poll * polls)


def characteristics(
    table: Decisions, crash_free: float, per_poll: int, polls: int | None = None
) -> Characteristics:
    """Exactly, for a release whose sessions crash independently at ``1 - crash_free``.

    ``polls``: the poll at which ``max_wait`` has passed (undecided runs are held there); None
    for no deadline, in which case runs still undecided at the table's limit count as held.
    """
    p = 1.0 - crash_free
    step = [math.comb(per_poll, k) * p**k * (1 - p) ** (per_poll - k) for k in range(per_poll + 1)]
    alive: dict[int, float] = {0: 1.0}
    promote = rollback = 0.0
    weighted = 0.0
    decided_by: list[tuple[int, float]] = []
    poll = 0
    while alive:
        poll += 1
        sessions = poll * per_poll
        if sessions > table.limit:
            break
        moved: dict[int, float] = {}
        for crashed, mass in alive.items():
            for more, chance in enumerate(step):
                weight = mass * chance
                if weight > 1e-18:
                    moved[crashed + more] = moved.get(crashed + more, 0.0) + weight
        alive = {}
        decided = 0.0
        for crashed, mass in moved.items():
            outcome = table.outcome(sessions, crashed)
            if outcome > 0:
                promote += mass
            elif outcome < 0:
                rollback += mass
            else:
                alive[crashed] = mass
                continue
            decided += mass
        weighted += decided * sessions
        decided_by.append((sessions, promote + rollback))
        if polls is not None and poll >= polls:
            break
    total = promote + rollback
    p95 = next((n for n, share in decided_by if share >= 0.95 * total), None) if total else None
    return Characteristics(
        crash_free=crash_free,
        per_poll=per_poll,
        promote=promote,
        rollback=rollback,
        held=max(0.0, 1.0 - total),
        mean_sessions=weighted / total if total else None,
        p95_sessions=p95,
    )
