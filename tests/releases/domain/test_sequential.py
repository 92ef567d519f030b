"""The sequential test (method: sequential, the default): its boundaries against exact binomial
calculations, its stated error rates, and the promises the verdict keeps as properties."""

from __future__ import annotations

import dataclasses
import itertools
import math
from functools import cache

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from releases.domain import sequential
from releases.domain.evidence import Evidence, Outcome, Rule
from releases.domain.gate_policy import Method, OnNoTraffic, OnTimeout, Policy, validate_policy
from releases.domain.operating import characteristics, decisions, session_limit
from releases.domain.rates import allowed_crashes
from releases.domain.sequential import Design
from releases.domain.verdict import evaluate

HOUR = 3600.0
DEFAULT = Policy(crash_free_threshold=0.995, max_wait=2 * HOUR)


# A few designs, so the calibration (cached per design) runs a handful of times, not per example.
POLICIES = [
    DEFAULT,
    dataclasses.replace(DEFAULT, min_sessions=600, max_sessions=2000),
    dataclasses.replace(DEFAULT, crash_free_threshold=0.99, tolerance=0.005, false_promote=0.01),
    dataclasses.replace(DEFAULT, crash_free_threshold=0.9, tolerance=0.05, max_sessions=800),
]
policies = st.sampled_from(POLICIES)


def judge(sessions: int, crashed: int, *, elapsed: float = 60.0, **overrides: object) -> object:
    return evaluate(dataclasses.replace(DEFAULT, **overrides), Evidence(sessions, crashed, elapsed))


def pmf(crashed: int, sessions: int, rate: float) -> float:
    return math.comb(sessions, crashed) * rate**crashed * (1 - rate) ** (sessions - crashed)


@cache
def default_decisions() -> object:
    return decisions(DEFAULT, session_limit(DEFAULT, 200, None))


# --- the default policy, by example -----------------------------------------------------------


def test_the_default_tells_99_8_from_99_2_percent_with_a_floor_from_the_rule_of_three() -> None:
    design = DEFAULT.design()
    assert (design.good, design.bad, design.false_promote, design.false_rollback) == (
        0.002,
        0.008,
        0.05,
        0.05,
    )
    assert (design.floor, design.cap) == (373, 5000)
    # Zero crashes in 373 sessions: (1 - 0.008)**373 is just under 5%; in 372 just over.
    assert (1 - 0.008) ** 373 <= 0.05 < (1 - 0.008) ** 372


@pytest.mark.parametrize(
    ("sessions", "crashed", "outcome", "rule"),
    [
        (0, 0, Outcome.WAIT, Rule.WAITING),
        (431, 0, Outcome.WAIT, Rule.WAITING),
        (432, 0, Outcome.PASS, Rule.SEQUENTIAL_PASS),  # the fewest clean sessions that promote
        (1000, 1, Outcome.PASS, Rule.SEQUENTIAL_PASS),
        (1000, 2, Outcome.WAIT, Rule.WAITING),
        (25, 1, Outcome.WAIT, Rule.WAITING),
        (25, 2, Outcome.FAIL, Rule.SEQUENTIAL_FAIL),
        (100, 3, Outcome.FAIL, Rule.SEQUENTIAL_FAIL),  # 97% crash-free
        (5000, 20, Outcome.PASS, Rule.CAP_PASS),  # 99.6%: nearer 99.8% than 99.2% at the cap
        (5000, 22, Outcome.FAIL, Rule.CAP_FAIL),
        (6000, 20, Outcome.PASS, Rule.CAP_PASS),  # a poll past the cap decides the same way
    ],
)
def test_the_default_decides_where_its_boundaries_are(
    sessions: int, crashed: int, outcome: Outcome, rule: Rule
) -> None:
    verdict = judge(sessions, crashed)
    assert (verdict.outcome, verdict.rule) == (outcome, rule)


def test_a_promote_says_the_counts_and_the_evidence_in_odds() -> None:
    verdict = judge(1240, 1)
    assert verdict.reasons == (
        "1,240 sessions, 1 crashed (crash-free 99.92%): evidence 779:1 that the crash-free rate is "
        "99.80% or better rather than 99.20% (promotes at 32:1)",
    )


def test_a_rollback_says_the_counts_and_the_evidence_in_odds() -> None:
    (reason,) = judge(100, 3).reasons
    assert reason.startswith(
        "100 sessions, 3 crashed (crash-free 97.00%): evidence 214:1 that the crash-free"
    )
    assert reason.endswith("99.20% or worse rather than 99.80% (rolls back at 24:1)")


def test_waiting_says_how_many_clean_sessions_would_promote_and_crashes_would_roll_back() -> None:
    verdict = judge(400, 1)
    assert verdict.reasons == (
        "400 sessions, 1 crashed (crash-free 99.75%) so far: 387 more crash-free sessions would promote, "
        "3 more crashed would roll back",
    )
    figures = verdict.figures
    assert (figures.clean_to_promote, figures.crashes_to_rollback) == (387, 3)
    assert (figures.promote_at_most, figures.rollback_at_least) == (-1, 4)


def test_no_verdict_by_max_wait_does_what_on_timeout_says() -> None:
    verdict = judge(400, 1, elapsed=2 * HOUR, on_timeout=OnTimeout.ROLLBACK)
    assert (verdict.outcome, verdict.rule, verdict.on_inconclusive) == (
        Outcome.INCONCLUSIVE,
        Rule.TIMEOUT,
        OnTimeout.ROLLBACK,
    )
    assert "387 more crash-free sessions would promote" in verdict.reasons[0]


def test_a_boundary_crossed_decides_even_past_max_wait() -> None:
    assert judge(432, 0, elapsed=5 * HOUR).outcome == Outcome.PASS
    assert judge(100, 3, elapsed=5 * HOUR).outcome == Outcome.FAIL


def test_a_set_floor_holds_a_promote_the_evidence_alone_would_give() -> None:
    assert judge(432, 0, min_sessions=600).outcome == Outcome.WAIT
    assert judge(600, 0, min_sessions=600).outcome == Outcome.PASS


@given(policies, st.data())
def test_crashes_no_future_could_bring_to_the_threshold_always_fail(
    policy: Policy, data: st.DataObject
) -> None:
    """Exact fail fast: past the crashes the threshold allows in max_sessions, nothing can pass.

    The rollback boundary gets there first for these designs; either way it is a fail."""
    most = allowed_crashes(policy.max_sessions, policy.crash_free_threshold)
    crashed = data.draw(st.integers(most + 1, most + 200))
    sessions = data.draw(st.integers(crashed, policy.max_sessions - 1))
    verdict = evaluate(policy, Evidence(sessions, crashed, 60.0))
    assert verdict.outcome == Outcome.FAIL
    assert verdict.rule in {Rule.SEQUENTIAL_FAIL, Rule.FAIL_FAST}


def test_no_data_and_errors_never_promote() -> None:
    policy = DEFAULT
    assert evaluate(policy, Evidence(None, None, 60.0)).outcome == Outcome.WAIT
    assert (
        evaluate(policy, Evidence(5000, 0, 60.0, consecutive_errors=1, error="503")).outcome == Outcome.WAIT
    )
    exhausted = evaluate(policy, Evidence(None, None, 60.0, consecutive_errors=4, error="503"))
    assert exhausted.on_inconclusive == OnTimeout.HOLD


def test_a_snapshot_from_before_the_choice_of_method_is_judged_by_the_fixed_rule() -> None:
    stored = {"min_sessions": 500, "crash_free_threshold": 0.995, "max_wait": 7200.0}
    assert Policy.from_json(stored).method == Method.FIXED
    assert Policy.from_json(DEFAULT.to_json()) == DEFAULT


# --- the boundaries against exact binomial calculations ---------------------------------------


def test_every_default_boundary_is_the_likelihood_ratio_from_binomial_probabilities() -> None:
    test = sequential.boundaries(DEFAULT.design())
    good, bad = 0.002, 0.008
    for sessions in [*range(373, 700), 1000, 2000, 4999]:
        most = test.promote_at_most[sessions]

        def promote_ratio(crashed: int, n: int = sessions) -> float:
            best = min(crashed / n, good)
            return math.log(pmf(crashed, n, best) / pmf(crashed, n, bad))

        if most >= 0:
            assert promote_ratio(most) >= test.promote_level - 1e-9
        assert promote_ratio(most + 1) < test.promote_level + 1e-9
    for sessions in [1, 2, 10, 25, 50, 100, 300, 1000, 4999]:
        least = test.rollback_at_least[sessions]

        def rollback_ratio(crashed: int, n: int = sessions) -> float:
            best = max(crashed / n, bad)
            return math.log(pmf(crashed, n, best) / pmf(crashed, n, good))

        assert rollback_ratio(least) >= test.rollback_level - 1e-9
        if least > 0:
            assert rollback_ratio(least - 1) < test.rollback_level + 1e-9


SMALL = Design(good=0.05, bad=0.5, false_promote=0.1, false_rollback=0.1, floor=2, cap=14)


def by_every_path(design: Design, rate: float, crossed: object) -> float:
    """P(a run crosses), summed over every one of the 2**cap crash/no-crash sequences."""
    total = 0.0
    for path in itertools.product((0, 1), repeat=design.cap):
        counts = itertools.accumulate(path)
        if any(crossed(sessions, crashed) for sessions, crashed in enumerate(counts, start=1)):  # type: ignore[operator]
            total += rate ** sum(path) * (1 - rate) ** (design.cap - sum(path))
    return total


def test_the_false_promote_rate_is_the_sum_over_every_path_of_sessions() -> None:
    test = sequential.boundaries(SMALL)
    exact = by_every_path(SMALL, SMALL.bad, test.promotes)
    assert test.false_promote == pytest.approx(exact, abs=1e-12)
    assert 0 < test.false_promote <= SMALL.false_promote


def test_the_false_rollback_rate_is_the_sum_over_every_path_of_sessions() -> None:
    test = sequential.boundaries(SMALL)
    exact = by_every_path(SMALL, SMALL.good, test.rolls_back)
    assert test.false_rollback == pytest.approx(exact, abs=1e-12)
    assert 0 < test.false_rollback <= SMALL.false_rollback


def test_the_calibration_spends_the_error_it_is_given_not_much_less() -> None:
    test = sequential.boundaries(DEFAULT.design())
    assert 0.045 <= test.false_promote <= 0.05
    assert 0.045 <= test.false_rollback <= 0.05
    # A level any lower would break the promise: the bisection stopped at the edge.
    design = DEFAULT.design()
    lower = sequential._promote_table(design, test.promote_level - 0.01)
    assert sequential._false_promote(design, lower) > 0.05


@pytest.mark.parametrize("per_poll", [1, 25, 200])
def test_the_stated_error_rates_hold_however_many_sessions_each_poll_brings(per_poll: int) -> None:
    table = default_decisions()
    at_bad = characteristics(table, 0.992, per_poll)  # type: ignore[arg-type]
    at_good = characteristics(table, 0.998, per_poll)  # type: ignore[arg-type]
    assert at_bad.promote <= 0.05
    assert at_good.rollback <= 0.05
    # Worse than bad is promoted less often, better than good rolled back less often.
    assert characteristics(table, 0.99, per_poll).promote <= at_bad.promote  # type: ignore[arg-type]
    assert characteristics(table, 0.999, per_poll).rollback <= at_good.rollback  # type: ignore[arg-type]


def test_the_decision_table_asks_evaluate_and_agrees_with_the_boundaries() -> None:
    table = default_decisions()
    test = sequential.boundaries(DEFAULT.design())
    for sessions in (1, 25, 372, 373, 432, 1000, 4999):
        assert table.promote_at_most[sessions] == test.promote_at_most[sessions]  # type: ignore[attr-defined]
        assert table.rollback_at_least[sessions] == test.rollback_at_least[sessions]  # type: ignore[attr-defined]


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tolerance": 0.0}, "tolerance"),
        ({"tolerance": 0.005}, "tolerance"),  # good would be 100%
        ({"crash_free_threshold": 0.002, "tolerance": 0.003}, "tolerance"),  # bad below 0%
        ({"false_promote": 0.0}, "false_promote"),
        ({"false_promote": 0.5}, "false_promote"),
        ({"false_rollback": 1.0}, "false_rollback"),
        ({"max_sessions": 100}, "max_sessions"),  # below the derived floor of 373
        ({"max_sessions": 50_000}, "max_sessions"),
        ({"early_fail_confidence": 0.99}, "early_fail_confidence"),
        ({"method": "bayesian"}, "method"),
    ],
)
def test_it_names_what_is_wrong_with_a_sequential_policy(overrides: dict[str, object], field: str) -> None:
    problems = validate_policy(dataclasses.replace(DEFAULT, **overrides))
    assert len(problems) == 1, problems
    assert problems[0].startswith(field)


# --- properties ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _calibrated() -> None:
    """Calibrate each design once up front, so no example pays for it inside hypothesis's deadline."""
    for policy in POLICIES:
        sequential.boundaries(policy.design())


@st.composite
def counts(draw: st.DrawFn, max_sessions: int = 6000) -> tuple[int, int]:
    sessions = draw(st.integers(0, max_sessions))
    crashed = draw(st.one_of(st.integers(0, min(sessions, 40)), st.integers(0, sessions)))
    return sessions, crashed


@given(policies, counts(), st.integers(1, 50), st.floats(0, 3 * HOUR))
def test_more_crashes_never_turn_a_rollback_into_a_promote(
    policy: Policy, sample: tuple[int, int], more: int, elapsed: float
) -> None:
    sessions, crashed = sample
    assume(crashed + more <= sessions)
    fewer = evaluate(policy, Evidence(sessions, crashed, elapsed)).outcome
    worse = evaluate(policy, Evidence(sessions, crashed + more, elapsed)).outcome
    if fewer == Outcome.FAIL:
        assert worse == Outcome.FAIL
    if fewer != Outcome.PASS:
        assert worse != Outcome.PASS


@given(policies, counts(), st.integers(1, 2000), st.floats(0, 3 * HOUR))
def test_more_clean_sessions_never_turn_a_promote_into_a_rollback(
    policy: Policy, sample: tuple[int, int], more: int, elapsed: float
) -> None:
    sessions, crashed = sample
    before = evaluate(policy, Evidence(sessions, crashed, elapsed)).outcome
    after = evaluate(policy, Evidence(sessions + more, crashed, elapsed)).outcome
    if before == Outcome.PASS:
        assert after == Outcome.PASS


@given(policies, counts())
def test_nothing_is_promoted_below_the_floor(policy: Policy, sample: tuple[int, int]) -> None:
    sessions, crashed = sample
    if evaluate(policy, Evidence(sessions, crashed, 60.0)).outcome == Outcome.PASS:
        assert sessions >= policy.sample


@given(policies, counts(max_sessions=3000))
def test_the_figures_say_exactly_what_would_promote_and_what_would_roll_back(
    policy: Policy, sample: tuple[int, int]
) -> None:
    sessions, crashed = sample
    figures = evaluate(policy, Evidence(sessions, crashed, 60.0)).figures
    clean, crashes = figures.clean_to_promote, figures.crashes_to_rollback
    assert crashes is not None
    after_crashes = evaluate(policy, Evidence(sessions + crashes, crashed + crashes, 60.0))
    assert after_crashes.outcome == Outcome.FAIL
    if crashes > 0:
        one_short = evaluate(policy, Evidence(sessions + crashes - 1, crashed + crashes - 1, 60.0))
        assert one_short.outcome != Outcome.FAIL
    if clean is not None:
        assert evaluate(policy, Evidence(sessions + clean, crashed, 60.0)).outcome == Outcome.PASS
        if clean > 0:
            assert evaluate(policy, Evidence(sessions + clean - 1, crashed, 60.0)).outcome != Outcome.PASS


@given(
    policies,
    st.lists(st.booleans(), min_size=1, max_size=3000).map(tuple),
    st.lists(st.integers(1, 400), min_size=1, max_size=40),
    st.lists(st.integers(1, 400), min_size=1, max_size=40),
)
def test_a_verdict_depends_only_on_the_cumulative_counts_never_on_how_polls_split_them(
    policy: Policy, crashes: tuple[bool, ...], split_a: list[int], split_b: list[int]
) -> None:
    """Two gates see the same sessions, polled in different batches: wherever both look at the
    same cumulative count they give the same verdict, word for word."""

    def verdicts(split: list[int]) -> dict[int, object]:
        seen: dict[int, object] = {}
        sessions = 0
        for size in itertools.cycle(split):
            sessions = min(len(crashes), sessions + size)
            crashed = sum(crashes[:sessions])
            verdict = evaluate(Policy.from_json(policy.to_json()), Evidence(sessions, crashed, 60.0))
            seen[sessions] = (verdict.outcome, verdict.rule, verdict.reasons, verdict.figures)
            if verdict.outcome != Outcome.WAIT or sessions == len(crashes):
                return seen
        raise AssertionError("unreachable")

    a, b = verdicts(split_a), verdicts(split_b)
    for sessions in set(a) & set(b):
        assert a[sessions] == b[sessions]
    # Where one gate decided, the other, looking at that count, would have decided the same.
    for sessions, verdict in a.items():
        crashed = sum(crashes[:sessions])
        fresh = evaluate(policy, Evidence(sessions, crashed, 60.0))
        assert verdict == (fresh.outcome, fresh.rule, fresh.reasons, fresh.figures)


# --- the bake watch's test ----------------------------------------------------------------------


WATCH = dataclasses.replace(DEFAULT, method=Method.WATCH, false_alarm=0.01)


def alarm_probability(watch: sequential.Watch, rate: float, horizon: int) -> float:
    """P(ever alarmed within ``horizon`` sessions, checked after every one), exactly."""
    alive = {0: 1.0}
    alarmed = 0.0
    for sessions in range(1, horizon + 1):
        moved: dict[int, float] = {}
        for crashed, mass in alive.items():
            moved[crashed] = moved.get(crashed, 0.0) + mass * (1 - rate)
            moved[crashed + 1] = moved.get(crashed + 1, 0.0) + mass * rate
        alive = {}
        for crashed, mass in moved.items():
            if watch.alarms(sessions, crashed):
                alarmed += mass
            else:
                alive[crashed] = mass
    return alarmed


def test_a_good_release_watched_session_by_session_is_alarmed_at_most_one_time_in_a_hundred() -> None:
    watch = WATCH.watch()
    # 6,000 sessions: an hour at 100 a minute, every one of them a chance to alarm.
    assert alarm_probability(watch, 0.002, 6000) <= 0.01
    assert alarm_probability(watch, 0.001, 6000) <= alarm_probability(watch, 0.002, 6000)


def test_a_release_that_went_bad_is_caught() -> None:
    watch = WATCH.watch()
    assert alarm_probability(watch, 0.03, 400) > 0.98
    assert alarm_probability(watch, 0.01, 6000) > 0.99


@pytest.mark.parametrize(
    ("sessions", "crashed", "outcome"),
    [
        (300, 8, Outcome.FAIL),
        (20_000, 50, Outcome.WAIT),
        (360_000, 720, Outcome.WAIT),
    ],  # an hour at 6,000/min
)
def test_the_watch_fails_on_the_alarm_and_otherwise_keeps_watching(
    sessions: int, crashed: int, outcome: Outcome
) -> None:
    verdict = evaluate(WATCH, Evidence(sessions, crashed, 60.0))
    assert verdict.outcome == outcome
    assert verdict.figures.rollback_level == pytest.approx(math.log(100))
    if outcome == Outcome.FAIL:
        assert verdict.rule == Rule.WATCH_ALARM
    else:
        more = verdict.figures.crashes_to_rollback
        assert more is not None and more > 0
        assert evaluate(WATCH, Evidence(sessions + more, crashed + more, 60.0)).outcome == Outcome.FAIL
        assert (
            evaluate(WATCH, Evidence(sessions + more - 1, crashed + more - 1, 60.0)).outcome == Outcome.WAIT
        )


# --- too little traffic to judge ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "elapsed", "rule"),
    [
        (0, 600.0, Rule.NO_TRAFFIC),  # nothing at all after ten minutes
        (12, 600.0, Rule.NO_TRAFFIC),  # 1.2 a minute: 144 by max_wait, 432 needed
        (40, 600.0, Rule.WAITING),  # 4 a minute: 480 by max_wait, enough
        (12, 599.0, Rule.WAITING),  # before no_traffic_after nothing is said
    ],
)
def test_too_little_traffic_to_decide_by_max_wait_is_said_at_no_traffic_after(
    sessions: int, elapsed: float, rule: Rule
) -> None:
    verdict = evaluate(DEFAULT, Evidence(sessions, 0, elapsed))
    assert verdict.rule == rule
    if rule == Rule.NO_TRAFFIC:
        assert (verdict.outcome, verdict.on_inconclusive) == (Outcome.INCONCLUSIVE, OnTimeout.HOLD)
        assert f"{sessions:,} sessions in 10m ({sessions / 10:.1f} a minute)" in verdict.reasons[0]
        assert "a verdict needs 432" in verdict.reasons[0]
        assert "canary" in verdict.reasons[1]
    assert verdict.figures.sessions_per_minute == pytest.approx(sessions / elapsed * 60)


def test_on_no_traffic_rollback_keeps_the_previous_deployment_and_never_promotes() -> None:
    policy = dataclasses.replace(DEFAULT, on_no_traffic=OnTimeout.ROLLBACK)
    verdict = evaluate(policy, Evidence(0, 0, 900.0))
    assert (verdict.outcome, verdict.on_inconclusive) == (Outcome.INCONCLUSIVE, OnTimeout.ROLLBACK)


def test_the_fixed_rule_is_told_about_traffic_too_and_a_watch_or_an_old_snapshot_never() -> None:
    fixed = Policy(method=Method.FIXED, min_sessions=500, crash_free_threshold=0.995, max_wait=7200.0)
    assert evaluate(fixed, Evidence(20, 0, 900.0)).rule == Rule.NO_TRAFFIC  # 160 by max_wait, 500 needed
    silent = dataclasses.replace(DEFAULT, no_traffic_after=None)
    assert evaluate(silent, Evidence(0, 0, 900.0)).rule == Rule.WAITING
    old = {"min_sessions": 500, "crash_free_threshold": 0.995, "max_wait": 7200.0}
    assert Policy.from_json(old).no_traffic_after is None


@given(policies, counts(max_sessions=600), st.floats(0, 3 * HOUR))
def test_no_traffic_never_promotes(policy: Policy, sample: tuple[int, int], elapsed: float) -> None:
    sessions, crashed = sample
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed))
    if verdict.rule == Rule.NO_TRAFFIC:
        assert verdict.outcome == Outcome.INCONCLUSIVE
        assert verdict.on_inconclusive in {OnTimeout.HOLD, OnTimeout.ROLLBACK}


def test_promote_after_checks_holds_and_asks_for_the_checks_never_promotes_by_itself() -> None:
    policy = dataclasses.replace(DEFAULT, on_no_traffic=OnNoTraffic.PROMOTE_AFTER_CHECKS)
    verdict = evaluate(policy, Evidence(3, 0, 900.0))
    assert (verdict.outcome, verdict.on_inconclusive, verdict.after_checks) == (
        Outcome.INCONCLUSIVE,
        OnTimeout.HOLD,
        True,
    )
    assert evaluate(DEFAULT, Evidence(3, 0, 900.0)).after_checks is False
