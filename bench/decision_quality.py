"""How often the gate makes the right call, and how many sessions it needs: sequential vs fixed.

    .venv/bin/python bench/decision_quality.py [--streams 20000] [--seed 2026]

For each method (the default policy: 99.5% with tolerance 0.003, 5%/5%, max_sessions 5,000;
the fixed rule's 500 sessions at 99.5% with fail fast), ``evaluate`` itself is asked which crash
counts promote and which roll back at every session count (releases/domain/operating.py). Then
``--streams`` simulated releases per true crash-free rate (seeded; every session crashes
independently at the rate) are polled every 1, 25 or 200 sessions until the verdict decides.

Two settings are printed:
- **the test alone**: no deadline, so every release is decided (by the cap at the latest); this is
  what the targets below are about;
- **with the default deadline**: a poll a minute and ``max_wait`` 2h, so "sessions per poll" is
  traffic per minute and a release still undecided at 2h is held.

Each figure is checked against the exact calculation over the binomial distribution (the same
code ``gate_simulate`` prints): a simulated P(promote) more than four standard errors from it is
reported. The targets are judged on the exact values, which carry no sampling noise.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from releases.domain.gate_policy import Method, Policy
from releases.domain.operating import Characteristics, Decisions, characteristics, decisions, session_limit

RATES = (0.97, 0.98, 0.99, 0.992, 0.995, 0.997, 0.998, 0.999, 0.9995)
PER_POLL = (1, 25, 200)
DEADLINE_POLLS = 120  # max_wait 2h, a poll a minute
POLICIES = {
    "sequential": Policy(crash_free_threshold=0.995, max_wait=7200.0),
    "fixed": Policy(method=Method.FIXED, crash_free_threshold=0.995, max_wait=7200.0),
}


@dataclass(frozen=True)
class Simulated:
    promote: float
    rollback: float
    held: float
    mean_sessions: float | None
    p95_sessions: int | None


def simulate(
    table: Decisions,
    crash_free: float,
    per_poll: int,
    *,
    streams: int,
    rng: np.random.Generator,
    polls: int | None,
) -> Simulated:
    """Poll ``streams`` releases until each is decided, held at the deadline, or past the table."""
    promote_most = np.array(table.promote_at_most)
    rollback_least = np.array(table.rollback_at_least)
    crashed = np.zeros(streams, dtype=np.int64)
    alive = np.arange(streams)
    outcome = np.zeros(streams, dtype=np.int8)  # +1 promote, -1 roll back, 0 held
    decided_at = np.zeros(streams, dtype=np.int64)
    poll = 0
    while alive.size:
        poll += 1
        sessions = poll * per_poll
        if sessions > table.limit:
            break
        crashed[alive] += rng.binomial(per_poll, 1.0 - crash_free, size=alive.size)
        now = crashed[alive]
        promoted = now <= promote_most[sessions]
        rolled = now >= rollback_least[sessions]
        outcome[alive[rolled]] = -1
        outcome[alive[promoted & ~rolled]] = 1
        done = promoted | rolled
        decided_at[alive[done]] = sessions
        alive = alive[~done]
        if polls is not None and poll >= polls:
            break
    decided = outcome != 0
    counts = decided_at[decided]
    return Simulated(
        promote=float(np.mean(outcome == 1)),
        rollback=float(np.mean(outcome == -1)),
        held=float(np.mean(~decided)),
        mean_sessions=float(counts.mean()) if counts.size else None,
        p95_sessions=int(np.percentile(counts, 95, method="inverted_cdf")) if counts.size else None,
    )


WATCH_RATES = (0.9995, 0.999, 0.998, 0.997, 0.995, 0.992, 0.99, 0.97)
WATCH_PER_MINUTE = 100
WATCH_MINUTES = 60


def watch_table(policy: Policy) -> Decisions:
    """What the bake watch acts on: only a fail rolls back; anything else keeps watching."""
    table = decisions(policy, WATCH_PER_MINUTE * WATCH_MINUTES)
    return Decisions((-1,) * len(table.promote_at_most), table.rollback_at_least)


def bake_watch(
    streams: int, rng: np.random.Generator, disagreements: list[str]
) -> dict[str, Characteristics]:
    """A live release watched for an hour at 100 sessions a minute, polled every minute."""
    from releases.models import Project
    from releases.workflows.bake import watch_policy

    policies = {
        "sequential": watch_policy(Project(gate_method="sequential")),
        "fixed": watch_policy(Project(gate_method="fixed")),
    }
    tables = {name: watch_table(policy) for name, policy in policies.items()}
    print(
        f"\n== the bake watch: a live release watched for {WATCH_MINUTES} min at {WATCH_PER_MINUTE} "
        f"sessions a minute, polled every minute (P(roll) is a rollback during the watch)"
    )
    columns = f"{'P(roll)':>7} {'mean':>6} {'p95':>6}"
    print(f"{'crash-free':>10}  {'sequential':^21}  |  {'fixed':^21}")
    print(f"{'':>10}  {columns}  |  {columns}")
    exact: dict[str, Characteristics] = {}
    for rate in WATCH_RATES:
        row = []
        for name, table in tables.items():
            result = simulate(table, rate, WATCH_PER_MINUTE, streams=streams, rng=rng, polls=WATCH_MINUTES)
            truth = characteristics(table, rate, WATCH_PER_MINUTE, WATCH_MINUTES)
            exact[f"{name}@{rate}"] = truth
            error = math.sqrt(max(truth.rollback * (1 - truth.rollback), 1e-12) / streams)
            if abs(result.rollback - truth.rollback) > 4 * error + 1e-9:
                disagreements.append(
                    f"bake watch, {name} at {rate:.2%}: simulated P(rollback) {result.rollback:.4f}, "
                    f"exact {truth.rollback:.4f}"
                )
            mean = f"{result.mean_sessions:,.0f}" if result.mean_sessions is not None else "-"
            p95 = f"{result.p95_sessions:,}" if result.p95_sessions is not None else "-"
            row.append(f"{result.rollback:7.3f} {mean:>6} {p95:>6}")
        print(f"{rate * 100:>9.2f}%  {row[0]}  |  {row[1]}")
    return exact


def cell(result: Simulated) -> str:
    mean = f"{result.mean_sessions:,.0f}" if result.mean_sessions is not None else "-"
    p95 = f"{result.p95_sessions:,}" if result.p95_sessions is not None else "-"
    return f"{result.promote:7.3f} {result.rollback:7.3f} {result.held:7.3f} {mean:>6} {p95:>6}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=20_000, help="simulated releases per rate and setting")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatekeeper.settings")
    os.environ.setdefault("DEBUG", "1")  # no service runs: only the models' defaults are read
    import django

    django.setup()

    tables: dict[str, Decisions] = {}
    for name, policy in POLICIES.items():
        began = time.monotonic()
        limit = max(session_limit(policy, per_poll, None) for per_poll in PER_POLL)
        tables[name] = decisions(policy, limit)
        took = time.monotonic() - began
        print(f"{name}: asked evaluate about every session count up to {limit:,} ({took:.1f} s)")
    print(f"{args.streams:,} simulated releases per rate, method and setting; seed {args.seed}")

    exact: dict[tuple[str, int, float, bool], Characteristics] = {}
    disagreements: list[str] = []
    for deadline in (False, True):
        polls_limit = DEADLINE_POLLS if deadline else None
        title = (
            "with the default deadline: a poll a minute, max_wait 2h (sessions per poll = sessions a minute)"
            if deadline
            else "the test alone: no deadline, polled until it decides"
        )
        print(f"\n== {title}")
        for per_poll in PER_POLL:
            print(f"\n{per_poll} session{'s' if per_poll > 1 else ''} per poll")
            columns = f"{'P(prom)':>7} {'P(roll)':>7} {'P(held)':>7} {'mean':>6} {'p95':>6}"
            print(f"{'crash-free':>10}  {'sequential':^37}  |  {'fixed':^37}")
            print(f"{'':>10}  {columns}  |  {columns}")
            for rate in RATES:
                row = []
                for name in POLICIES:
                    result = simulate(
                        tables[name], rate, per_poll, streams=args.streams, rng=rng, polls=polls_limit
                    )
                    truth = characteristics(tables[name], rate, per_poll, polls_limit)
                    exact[(name, per_poll, rate, deadline)] = truth
                    error = math.sqrt(max(truth.promote * (1 - truth.promote), 1e-12) / args.streams)
                    if abs(result.promote - truth.promote) > 4 * error + 1e-9:
                        disagreements.append(
                            f"{name} at {rate:.2%}, {per_poll}/poll: "
                            f"simulated P(promote) {result.promote:.4f}, "
                            f"exact {truth.promote:.4f}"
                        )
                    row.append(cell(result))
                print(f"{rate * 100:>9.2f}%  {row[0]}  |  {row[1]}")

    print("\nexact values (binomial, no sampling noise) behind the targets, sequential, no deadline:")
    print(f"{'per poll':>8}  P(promote) at 99.2%  P(rollback) at 99.8%  mean at 97%  mean at 99.9%")
    for per_poll in PER_POLL:
        bad, good = (
            exact[("sequential", per_poll, 0.992, False)],
            exact[("sequential", per_poll, 0.998, False)],
        )
        fast, slow = (
            exact[("sequential", per_poll, 0.97, False)],
            exact[("sequential", per_poll, 0.999, False)],
        )
        print(
            f"{per_poll:>8}  {bad.promote:19.4f}  {good.rollback:20.4f}  {fast.mean_sessions or 0:11.1f}  "
            f"{slow.mean_sessions or 0:13.1f}"
        )
    fixed_bad = exact[("fixed", 25, 0.992, False)]
    fixed_good = exact[("fixed", 25, 0.998, False)]
    print(
        f"fixed rule at 25/poll, for comparison: P(promote) at 99.2% {fixed_bad.promote:.4f}, "
        f"P(rollback) at 99.8% {fixed_good.rollback:.4f}"
    )

    watch_rows = bake_watch(args.streams, rng, disagreements)

    targets: list[tuple[str, bool]] = []
    for per_poll in PER_POLL:
        bad = exact[("sequential", per_poll, 0.992, False)]
        good = exact[("sequential", per_poll, 0.998, False)]
        targets.append((f"P(promote) <= 5% at 99.2%, {per_poll}/poll", bad.promote <= 0.05))
        targets.append((f"P(rollback) <= 5% at 99.8%, {per_poll}/poll", good.rollback <= 0.05))
    false_alarm = watch_rows["sequential@0.998"].rollback
    targets.append(
        (
            f"bake watch rolls back at most 1% of 99.8% releases (exact: {false_alarm:.4f})",
            false_alarm <= 0.01,
        )
    )
    fast = exact[("sequential", 25, 0.97, False)].mean_sessions
    slow = exact[("sequential", 25, 0.999, False)].mean_sessions
    targets.append(("mean sessions <= 100 at 97%, 25/poll", fast is not None and fast <= 100))
    targets.append(("mean sessions <= 650 at 99.9%, 25/poll", slow is not None and slow <= 650))
    print("\ntargets (sequential, the default policy):")
    for label, met in targets:
        print(f"  {label}: {'met' if met else 'MISSED'}")
    if disagreements:
        print("simulation and exact calculation disagree (more than 4 standard errors):")
        for line in disagreements:
            print(f"  {line}")
    else:
        print("simulation agrees with the exact calculation everywhere (within 4 standard errors)")
    print(f"ran in {time.monotonic() - started:.0f} s")
    return 0 if all(met for _, met in targets) and not disagreements else 1


if __name__ == "__main__":
    raise SystemExit(main())
