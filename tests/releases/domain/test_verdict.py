"""The fixed rule (method: fixed): every rule and boundary by example, then its promises as properties.

The sequential test, the default, has its own tests in test_sequential.py.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from releases.domain.evidence import Evidence, Outcome, Rule, Verdict
from releases.domain.gate_policy import Method, OnTimeout, Policy, validate_policy
from releases.domain.rates import allowed_crashes, wilson_upper_bound
from releases.domain.verdict import evaluate

HOUR = 3600.0
SEQUENTIAL_FIGURES = [
    "max_sessions",
    "good_crash_rate",
    "bad_crash_rate",
    "promote_statistic",
    "promote_level",
    "rollback_statistic",
    "rollback_level",
    "promote_at_most",
    "rollback_at_least",
    "clean_to_promote",
    "crashes_to_rollback",
]


def make_policy(**overrides: object) -> Policy:
    """500 sessions at 99.5% within two hours: at most 2 crashes in the first 500.

    Without the word about too little traffic (test_sequential.py covers it for both methods), so
    each rule here is seen on its own."""
    base = Policy(
        method=Method.FIXED,
        min_sessions=500,
        crash_free_threshold=0.995,
        max_wait=2 * HOUR,
        no_traffic_after=None,
    )
    return dataclasses.replace(base, **overrides)


def judge(
    sessions: int | None,
    crashed: int | None,
    *,
    elapsed: float = 60.0,
    consecutive_errors: int = 0,
    error: str | None = None,
    **policy: object,
) -> Verdict:
    evidence = Evidence(sessions, crashed, elapsed, consecutive_errors=consecutive_errors, error=error)
    return evaluate(make_policy(**policy), evidence)


def exact(value: float) -> Fraction:
    return Fraction(Decimal(repr(value)))


# --- the seed rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "crashed", "outcome", "rule"),
    [
        (500, 0, Outcome.PASS, Rule.SEED_PASS),
        (500, 2, Outcome.PASS, Rule.SEED_PASS),  # exactly min_sessions, the most crashes allowed
        (500, 3, Outcome.FAIL, Rule.SEED_FAIL),  # one crash over
        (1000, 5, Outcome.PASS, Rule.SEED_PASS),  # crash-free exactly 99.5%
        (1000, 6, Outcome.FAIL, Rule.SEED_FAIL),
        (1204, 6, Outcome.PASS, Rule.SEED_PASS),
        (1204, 7, Outcome.FAIL, Rule.SEED_FAIL),
        (100_000, 500, Outcome.PASS, Rule.SEED_PASS),
        (100_000, 501, Outcome.FAIL, Rule.SEED_FAIL),
        (500, 500, Outcome.FAIL, Rule.SEED_FAIL),
    ],
)
def test_it_decides_on_the_crash_free_rate_once_min_sessions_are_in(
    sessions: int, crashed: int, outcome: Outcome, rule: Rule
) -> None:
    verdict = judge(sessions, crashed)
    assert (verdict.outcome, verdict.rule) == (outcome, rule)
    assert verdict.on_inconclusive is None


def test_it_passes_exactly_at_the_threshold_where_float_arithmetic_would_fail() -> None:
    # In floats 10 * (1 - 0.9) is 0.9999999999999998, which would allow no crash in ten sessions.
    assert 1 > 10 * (1 - 0.9)
    verdict = judge(10, 1, min_sessions=10, crash_free_threshold=0.9)
    assert verdict.outcome is Outcome.PASS
    assert verdict.figures.allowed_crashes == 1


@pytest.mark.parametrize("elapsed", [2 * HOUR, 5 * HOUR])
@pytest.mark.parametrize(("crashed", "outcome"), [(2, Outcome.PASS), (3, Outcome.FAIL)])
def test_it_still_decides_on_the_seed_rule_past_max_wait(
    elapsed: float, crashed: int, outcome: Outcome
) -> None:
    verdict = judge(500, crashed, elapsed=elapsed, on_timeout=OnTimeout.ROLLBACK)
    assert verdict.outcome is outcome
    assert verdict.on_inconclusive is None


def test_it_says_the_rate_threshold_and_sessions_when_it_fails() -> None:
    verdict = judge(1204, 9)
    assert verdict.reasons == (
        "crash-free 99.25% < 99.50% over 1,204 sessions (9 crashed, at most 6 allowed)",
    )


def test_it_says_the_rate_meets_the_threshold_when_it_passes_exactly_at_it() -> None:
    verdict = judge(1000, 5)
    assert verdict.reasons == ("crash-free 99.50% >= 99.50% over 1,000 sessions (5 crashed, 5 allowed)",)


def test_it_shows_more_places_when_two_would_make_a_miss_read_as_equal() -> None:
    verdict = judge(200_000, 1001, min_sessions=200_000)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.reasons[0].startswith("crash-free 99.4995% < 99.5000% over 200,000 sessions")


# --- a threshold of 100% ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "crashed", "rule"),
    [
        (0, 0, Rule.WAITING),
        (499, 0, Rule.WAITING),
        (1, 1, Rule.FAIL_FAST),
        (499, 1, Rule.FAIL_FAST),
        (500, 0, Rule.SEED_PASS),
        (500, 1, Rule.SEED_FAIL),
    ],
)
def test_a_threshold_of_one_allows_no_crash_at_all(sessions: int, crashed: int, rule: Rule) -> None:
    verdict = judge(sessions, crashed, crash_free_threshold=1.0, early_fail_confidence=0.99)
    assert verdict.rule == rule
    assert verdict.figures.allowed_crashes == 0


def test_a_threshold_of_one_never_early_fails_a_release_without_crashes() -> None:
    verdict = judge(499, 0, crash_free_threshold=1.0, early_fail_confidence=0.99, early_fail_min_sessions=1)
    assert verdict.rule == Rule.WAITING
    assert verdict.figures.upper_bound == 1.0


# --- fail fast ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "crashed", "fail_fast", "rule"),
    [
        (3, 2, True, Rule.WAITING),  # allowed_crashes(500) = 2: still reachable
        (499, 2, True, Rule.WAITING),
        (3, 3, True, Rule.FAIL_FAST),  # allowed_crashes(500) + 1
        (499, 3, True, Rule.FAIL_FAST),
        (499, 400, True, Rule.FAIL_FAST),
        (3, 3, False, Rule.WAITING),
        (499, 3, False, Rule.WAITING),
    ],
)
def test_it_fails_fast_once_crashes_exceed_what_min_sessions_allows(
    sessions: int, crashed: int, fail_fast: bool, rule: Rule
) -> None:
    assert judge(sessions, crashed, fail_fast=fail_fast).rule == rule


def test_it_fails_fast_even_past_max_wait() -> None:
    verdict = judge(100, 3, elapsed=3 * HOUR)
    assert (verdict.outcome, verdict.rule) == (Outcome.FAIL, Rule.FAIL_FAST)


def test_it_explains_fail_fast_with_the_numbers() -> None:
    verdict = judge(412, 3)
    assert verdict.reasons == (
        "3 crashed sessions already exceed the 2 that 99.50% crash-free allows in the first 500 sessions, "
        "so those sessions can no longer reach 99.50%",
        "412 of 500 sessions so far",
    )


# --- statistical early fail --------------------------------------------------------------------

# min_sessions 10,000 at 99.5% allows 50 crashes, so fail fast stays out of the way below that.
EARLY = {"min_sessions": 10_000, "early_fail_confidence": 0.99, "early_fail_min_sessions": 50}


@pytest.mark.parametrize(
    ("sessions", "crashed", "rule"),
    [
        (200, 3, Rule.WAITING),  # upper bound 99.62% at 99% confidence
        (200, 4, Rule.EARLY_FAIL),  # upper bound 99.40%
        (200, 10, Rule.EARLY_FAIL),
        (50, 5, Rule.EARLY_FAIL),  # exactly at the floor
        (49, 5, Rule.WAITING),  # one session under the floor
        (5000, 25, Rule.WAITING),  # observed rate exactly at the threshold
    ],
)
def test_it_fails_early_when_the_upper_bound_is_below_the_threshold(
    sessions: int, crashed: int, rule: Rule
) -> None:
    verdict = judge(sessions, crashed, **EARLY)
    assert verdict.rule == rule
    bound = verdict.figures.upper_bound
    assert bound is not None
    if sessions >= 50:
        assert (bound < 0.995) == (rule == Rule.EARLY_FAIL)


def test_it_does_not_fail_early_when_the_test_is_off() -> None:
    verdict = judge(200, 10, **{**EARLY, "early_fail_confidence": None})
    assert verdict.rule == Rule.WAITING
    assert verdict.figures.upper_bound is None


def test_a_higher_confidence_needs_more_evidence_to_fail_early() -> None:
    assert judge(200, 4, **{**EARLY, "early_fail_confidence": 0.9}).rule == Rule.EARLY_FAIL
    assert judge(200, 4, **{**EARLY, "early_fail_confidence": 0.9999}).rule == Rule.WAITING


def test_fail_fast_comes_before_the_statistical_test() -> None:
    verdict = judge(100, 10, early_fail_confidence=0.99)
    assert verdict.rule == Rule.FAIL_FAST


def test_it_explains_an_early_fail_with_the_bound_and_confidence() -> None:
    verdict = judge(200, 10, **EARLY)
    assert verdict.reasons == (
        "crash-free 95.00% over 200 sessions (10 crashed): at 99% confidence the rate is at most 97.72%, "
        "below 99.50%",
        "200 of 10,000 sessions so far",
    )


# --- waiting and timing out below min_sessions ---------------------------------------------------


def test_it_waits_below_min_sessions_and_says_how_far_along_it_is() -> None:
    verdict = judge(412, 1)
    assert (verdict.outcome, verdict.rule) == (Outcome.WAIT, Rule.WAITING)
    assert verdict.reasons == ("412 of 500 sessions so far; crash-free 99.76% (1 crashed, 2 allowed at 500)",)


def test_it_waits_with_no_sessions_yet_without_a_rate() -> None:
    verdict = judge(0, 0)
    assert verdict.rule == Rule.WAITING
    assert verdict.reasons == ("0 of 500 sessions so far",)
    assert verdict.figures.crash_free_rate is None


@pytest.mark.parametrize(
    ("elapsed", "outcome"),
    [
        (0.0, Outcome.WAIT),
        (2 * HOUR - 1, Outcome.WAIT),
        (2 * HOUR, Outcome.INCONCLUSIVE),
        (9 * HOUR, Outcome.INCONCLUSIVE),
    ],
)
def test_it_times_out_below_min_sessions_at_max_wait(elapsed: float, outcome: Outcome) -> None:
    assert judge(412, 1, elapsed=elapsed).outcome is outcome


@pytest.mark.parametrize("on_timeout", list(OnTimeout))
def test_a_timeout_asks_the_caller_to_do_what_the_policy_says(on_timeout: OnTimeout) -> None:
    verdict = judge(412, 1, elapsed=2 * HOUR, on_timeout=on_timeout)
    assert (verdict.outcome, verdict.rule) == (Outcome.INCONCLUSIVE, Rule.TIMEOUT)
    assert verdict.on_inconclusive is on_timeout
    assert verdict.reasons == (
        f"waited 2h (limit 2h) with only 412 of 500 sessions; on timeout: {on_timeout}",
    )


def test_a_timeout_given_the_policy_as_a_plain_string_still_answers_with_the_enum() -> None:
    verdict = judge(412, 1, elapsed=2 * HOUR, on_timeout="rollback")
    assert verdict.on_inconclusive is OnTimeout.ROLLBACK


# --- provider errors and no data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("consecutive_errors", "outcome", "rule"),
    [
        (1, Outcome.WAIT, Rule.NO_DATA),
        (2, Outcome.WAIT, Rule.NO_DATA),
        (3, Outcome.WAIT, Rule.NO_DATA),
        (4, Outcome.INCONCLUSIVE, Rule.ERRORS_EXHAUSTED),
        (5, Outcome.INCONCLUSIVE, Rule.ERRORS_EXHAUSTED),
    ],
)
def test_it_gives_up_on_a_failing_provider_after_max_consecutive_errors(
    consecutive_errors: int, outcome: Outcome, rule: Rule
) -> None:
    verdict = judge(None, None, consecutive_errors=consecutive_errors, error="HTTP 502")
    assert (verdict.outcome, verdict.rule) == (outcome, rule)


@pytest.mark.parametrize("on_timeout", list(OnTimeout))
@pytest.mark.parametrize("elapsed", [60.0, 2 * HOUR])
def test_exhausted_errors_hold_for_a_human_whatever_on_timeout_says(
    on_timeout: OnTimeout, elapsed: float
) -> None:
    verdict = judge(
        None, None, consecutive_errors=4, error="HTTP 502", elapsed=elapsed, on_timeout=on_timeout
    )
    assert verdict.rule == Rule.ERRORS_EXHAUSTED
    assert verdict.on_inconclusive is OnTimeout.HOLD


@pytest.mark.parametrize("on_timeout", list(OnTimeout))
def test_errors_past_max_wait_time_out_as_the_policy_says(on_timeout: OnTimeout) -> None:
    verdict = judge(
        None, None, consecutive_errors=2, error="timeout", elapsed=2 * HOUR, on_timeout=on_timeout
    )
    assert (verdict.outcome, verdict.rule) == (Outcome.INCONCLUSIVE, Rule.TIMEOUT)
    assert verdict.on_inconclusive is on_timeout


def test_it_never_passes_on_a_poll_with_an_error_even_with_good_numbers() -> None:
    verdict = judge(10_000, 0, consecutive_errors=1, error="HTTP 429")
    assert (verdict.outcome, verdict.rule) == (Outcome.WAIT, Rule.NO_DATA)
    assert verdict.figures.crash_free_rate == 1.0


def test_it_waits_when_the_provider_has_no_sessions_for_the_release_yet() -> None:
    verdict = judge(None, None)
    assert (verdict.outcome, verdict.rule) == (Outcome.WAIT, Rule.NO_DATA)
    assert verdict.reasons == ("no session data for this release yet",)


def test_it_names_the_provider_error_and_the_count_so_far() -> None:
    verdict = judge(None, None, consecutive_errors=2, error="HTTP 502 from Sentry")
    assert verdict.reasons == (
        "no data from the provider: HTTP 502 from Sentry (failed poll 2 in a row, limit 4)",
    )


# --- invalid evidence ----------------------------------------------------------------------------

INVALID = [(-1, 0), (10, -1), (-5, -5), (10, None), (5, 6), (0, 1)]


@pytest.mark.parametrize(("sessions", "crashed"), INVALID)
def test_it_treats_nonsense_counts_like_a_provider_error(sessions: int, crashed: int | None) -> None:
    verdict = judge(sessions, crashed, consecutive_errors=1)
    assert (verdict.outcome, verdict.rule) == (Outcome.WAIT, Rule.INVALID_EVIDENCE)
    assert verdict.figures.crash_free_rate is None
    assert verdict.figures.upper_bound is None


@pytest.mark.parametrize(("sessions", "crashed"), INVALID)
def test_nonsense_counts_exhaust_like_errors_and_hold(sessions: int, crashed: int | None) -> None:
    verdict = judge(sessions, crashed, consecutive_errors=4, on_timeout=OnTimeout.ROLLBACK)
    assert (verdict.outcome, verdict.rule) == (Outcome.INCONCLUSIVE, Rule.ERRORS_EXHAUSTED)
    assert verdict.on_inconclusive is OnTimeout.HOLD


@pytest.mark.parametrize(("sessions", "crashed"), INVALID)
def test_nonsense_counts_past_max_wait_time_out(sessions: int, crashed: int | None) -> None:
    verdict = judge(sessions, crashed, consecutive_errors=1, elapsed=2 * HOUR, on_timeout=OnTimeout.ROLLBACK)
    assert (verdict.outcome, verdict.rule) == (Outcome.INCONCLUSIVE, Rule.TIMEOUT)
    assert verdict.on_inconclusive is OnTimeout.ROLLBACK


def test_it_says_what_is_wrong_with_the_counts() -> None:
    verdict = judge(5, 6, consecutive_errors=1)
    assert verdict.reasons == ("the provider gave more crashed sessions than sessions (6 crashed of 5)",)


# --- helpers and policy validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "threshold", "expected"),
    [
        (0, 0.995, 0),
        (199, 0.995, 0),
        (200, 0.995, 1),
        (500, 0.995, 2),
        (1000, 0.995, 5),
        (10, 0.9, 1),
        (3, 0.7, 0),
        (10, 0.7, 3),
        (10_000, 0.9999, 1),
        (1_000_000, 1.0, 0),
        (7, 0.5, 3),
    ],
)
def test_allowed_crashes_is_exact(sessions: int, threshold: float, expected: int) -> None:
    assert allowed_crashes(sessions, threshold) == expected


@pytest.mark.parametrize(("sessions", "threshold"), [(-1, 0.9), (10, 0.0), (10, 1.01), (10, float("nan"))])
def test_allowed_crashes_refuses_impossible_arguments(sessions: int, threshold: float) -> None:
    with pytest.raises(ValueError, match="must"):
        allowed_crashes(sessions, threshold)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(1, 0, 0.9), (-1, 5, 0.9), (6, 5, 0.9), (5, 5, 1.0), (5, 5, 0.0)]
)
def test_wilson_upper_bound_refuses_impossible_arguments(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        wilson_upper_bound(successes, n, confidence)


def test_wilson_upper_bound_matches_the_textbook_value() -> None:
    # 95 of 100 at 95% confidence (z = 1.959964): (0.95 + z²/200 + z·√(0.000475 + z²/40000)) / (1 + z²/100).
    assert wilson_upper_bound(95, 100, 0.95) == pytest.approx(0.97846, abs=1e-5)
    assert wilson_upper_bound(0, 10, 0.95) == pytest.approx(0.27753, abs=1e-5)


def test_wilson_upper_bound_stays_finite_for_a_confidence_next_to_one() -> None:
    assert wilson_upper_bound(50, 100, 1 - 2**-53) <= 1.0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"min_sessions": 0}, "min_sessions"),
        ({"min_sessions": 2.5}, "min_sessions"),
        ({"crash_free_threshold": 0.0}, "crash_free_threshold"),
        ({"crash_free_threshold": -0.5}, "crash_free_threshold"),
        ({"crash_free_threshold": 1.0000001}, "crash_free_threshold"),
        ({"crash_free_threshold": 99.5}, "crash_free_threshold"),
        ({"crash_free_threshold": float("nan")}, "crash_free_threshold"),
        ({"max_wait": 0}, "max_wait"),
        ({"max_wait": -60}, "max_wait"),
        ({"max_wait": float("inf")}, "max_wait"),
        ({"max_consecutive_errors": 0}, "max_consecutive_errors"),
        ({"on_timeout": "promote"}, "on_timeout"),
        ({"early_fail_confidence": 0.0}, "early_fail_confidence"),
        ({"early_fail_confidence": 1.0}, "early_fail_confidence"),
        ({"early_fail_confidence": 99.0}, "early_fail_confidence"),
        ({"early_fail_min_sessions": 0}, "early_fail_min_sessions"),
    ],
)
def test_it_names_each_impossible_policy_field(overrides: dict[str, object], field: str) -> None:
    problems = validate_policy(make_policy(**overrides))
    assert len(problems) == 1
    assert problems[0].startswith(field)
    with pytest.raises(ValueError, match=field):
        evaluate(make_policy(**overrides), Evidence(10, 0, 0.0))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"crash_free_threshold": 1.0},
        {"min_sessions": 1},
        {"early_fail_confidence": 0.99},
        {"on_timeout": "hold"},
    ],
)
def test_it_accepts_sensible_policies(overrides: dict[str, object]) -> None:
    assert validate_policy(make_policy(**overrides)) == []


def test_it_lists_every_problem_at_once() -> None:
    policy = Policy(
        method=Method.FIXED, min_sessions=0, crash_free_threshold=2.0, max_wait=0, max_consecutive_errors=0
    )
    assert len(validate_policy(policy)) == 4


def test_figures_serialise_to_a_flat_dict() -> None:
    assert judge(412, 1).figures.as_dict() == {
        "sessions": 412,
        "crashed": 1,
        "crash_free_rate": 411 / 412,
        "upper_bound": None,
        "threshold": 0.995,
        "min_sessions": 500,
        "allowed_crashes": 2,
        "elapsed": 60.0,
        "max_wait": 7200.0,
        "method": "fixed",
        "sessions_per_minute": 412.0,
        **dict.fromkeys(SEQUENTIAL_FIGURES),
    }


def test_rules_compare_equal_to_their_plain_names() -> None:
    assert judge(500, 0).rule == "seed_pass"


# --- properties ---------------------------------------------------------------------------------

thresholds = st.one_of(
    st.sampled_from([0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0]),
    st.integers(1, 1000).map(lambda k: k / 1000),
    st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
)
confidences = st.one_of(st.none(), st.sampled_from([0.8, 0.9, 0.95, 0.99, 0.999]), st.floats(0.01, 0.9999))
policies = st.builds(
    Policy,
    method=st.just(Method.FIXED),
    no_traffic_after=st.none(),
    min_sessions=st.integers(1, 3000),
    crash_free_threshold=thresholds,
    max_wait=st.floats(1.0, 10 * HOUR),
    max_consecutive_errors=st.integers(1, 10),
    on_timeout=st.sampled_from(OnTimeout),
    fail_fast=st.booleans(),
    early_fail_confidence=confidences,
    early_fail_min_sessions=st.integers(1, 300),
)
elapsed_times = st.floats(0.0, 12 * HOUR)


@st.composite
def counts(draw: st.DrawFn, max_sessions: int = 6000) -> tuple[int, int]:
    sessions = draw(st.integers(0, max_sessions))
    # Crash-free rates that matter sit near 1, so favour few crashes while covering all of them.
    crashed = draw(st.one_of(st.integers(0, min(sessions, 60)), st.integers(0, sessions)))
    return sessions, crashed


@given(policies, counts(), elapsed_times)
def test_one_more_crash_never_turns_a_fail_or_a_wait_into_a_pass(
    policy: Policy, sample: tuple[int, int], elapsed: float
) -> None:
    sessions, crashed = sample
    assume(crashed < sessions)
    before = evaluate(policy, Evidence(sessions, crashed, elapsed))
    after = evaluate(policy, Evidence(sessions, crashed + 1, elapsed))
    if before.outcome in (Outcome.FAIL, Outcome.WAIT):
        assert after.outcome is not Outcome.PASS
    if before.outcome is Outcome.FAIL:
        assert after.outcome is Outcome.FAIL


@given(policies, counts(), st.integers(1, 5000), elapsed_times)
def test_more_sessions_with_the_same_crashes_never_turn_a_pass_into_a_fail(
    policy: Policy, sample: tuple[int, int], more: int, elapsed: float
) -> None:
    sessions, crashed = sample
    before = evaluate(policy, Evidence(sessions, crashed, elapsed))
    after = evaluate(policy, Evidence(sessions + more, crashed, elapsed))
    if before.outcome is Outcome.PASS:
        assert after.outcome is Outcome.PASS


any_counts = st.tuples(
    st.one_of(st.none(), st.integers(-5, 6000)), st.one_of(st.none(), st.integers(-5, 6000))
)


@given(policies, any_counts, elapsed_times, st.integers(0, 12), st.text(min_size=1, max_size=20))
def test_a_poll_with_an_error_never_passes(
    policy: Policy, sample: tuple[int | None, int | None], elapsed: float, errors: int, error: str
) -> None:
    sessions, crashed = sample
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed, consecutive_errors=errors, error=error))
    assert verdict.outcome in (Outcome.WAIT, Outcome.INCONCLUSIVE)
    if errors >= policy.max_consecutive_errors:
        assert verdict.on_inconclusive is OnTimeout.HOLD


@given(
    policies,
    st.integers(-5, 6000),
    st.one_of(st.none(), st.integers(-5, 6000)),
    elapsed_times,
    st.integers(0, 12),
)
def test_nonsense_counts_never_decide(
    policy: Policy, sessions: int, crashed: int | None, elapsed: float, errors: int
) -> None:
    assume(crashed is None or sessions < 0 or crashed < 0 or crashed > sessions)
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed, consecutive_errors=errors))
    assert verdict.outcome in (Outcome.WAIT, Outcome.INCONCLUSIVE)


@given(policies, elapsed_times, st.data())
def test_a_fail_fast_is_never_contradicted_by_the_seed_rule_at_min_sessions(
    policy: Policy, elapsed: float, data: st.DataObject
) -> None:
    allowed = allowed_crashes(policy.min_sessions, policy.crash_free_threshold)
    assume(policy.fail_fast and allowed + 1 < policy.min_sessions)
    sessions = data.draw(st.integers(allowed + 1, policy.min_sessions - 1), label="sessions")
    crashed = data.draw(st.integers(allowed + 1, sessions), label="crashed")
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed))
    assert (verdict.outcome, verdict.rule) == (Outcome.FAIL, Rule.FAIL_FAST)
    later = data.draw(st.integers(crashed, policy.min_sessions), label="crashed at min_sessions")
    seed = evaluate(policy, Evidence(policy.min_sessions, later, elapsed))
    assert (seed.outcome, seed.rule) == (Outcome.FAIL, Rule.SEED_FAIL)


@given(policies, counts(), elapsed_times)
def test_early_fail_never_fires_when_the_observed_rate_meets_the_threshold(
    policy: Policy, sample: tuple[int, int], elapsed: float
) -> None:
    sessions, crashed = sample
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed))
    if verdict.rule == Rule.EARLY_FAIL:
        assert Fraction(sessions - crashed, sessions) < exact(policy.crash_free_threshold)


@given(policies, counts(), elapsed_times)
def test_the_seed_rule_is_the_exact_rate_against_the_exact_threshold(
    policy: Policy, sample: tuple[int, int], elapsed: float
) -> None:
    sessions, crashed = sample
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed))
    if verdict.outcome is Outcome.PASS:
        assert sessions >= policy.min_sessions
    if sessions >= policy.min_sessions:
        passes = Fraction(sessions - crashed, sessions) >= exact(policy.crash_free_threshold)
        assert verdict.outcome is (Outcome.PASS if passes else Outcome.FAIL)


@given(
    policies,
    st.one_of(counts(), st.tuples(st.none(), st.none())),
    elapsed_times,
    st.integers(0, 12),
    st.one_of(st.none(), st.text(max_size=10)),
)
def test_figures_always_echo_the_inputs(
    policy: Policy,
    sample: tuple[int | None, int | None],
    elapsed: float,
    errors: int,
    error: str | None,
) -> None:
    sessions, crashed = sample
    verdict = evaluate(policy, Evidence(sessions, crashed, elapsed, consecutive_errors=errors, error=error))
    figures = verdict.figures
    assert (figures.sessions, figures.crashed, figures.elapsed) == (sessions, crashed, elapsed)
    assert (figures.threshold, figures.min_sessions, figures.max_wait) == (
        policy.crash_free_threshold,
        policy.min_sessions,
        policy.max_wait,
    )
    assert figures.allowed_crashes == allowed_crashes(policy.min_sessions, policy.crash_free_threshold)
    if sessions and crashed is not None:
        assert figures.crash_free_rate == float(Fraction(sessions - crashed, sessions))
        assert (figures.upper_bound is None) == (policy.early_fail_confidence is None)
    else:
        assert figures.crash_free_rate is None
        assert figures.upper_bound is None
    assert (verdict.on_inconclusive is not None) == (verdict.outcome is Outcome.INCONCLUSIVE)
    assert verdict.reasons
    assert all(reason.strip() for reason in verdict.reasons)


@given(st.integers(0, 20_000), thresholds)
def test_allowed_crashes_is_the_most_crashes_whose_exact_rate_still_passes(
    sessions: int, threshold: float
) -> None:
    allowed = allowed_crashes(sessions, threshold)
    t = exact(threshold)
    if sessions == 0:
        assert allowed == 0
        return
    assert 0 <= allowed <= sessions
    assert Fraction(sessions - allowed, sessions) >= t
    if allowed < sessions:
        assert Fraction(sessions - allowed - 1, sessions) < t


@given(st.integers(1, 300), thresholds)
def test_allowed_crashes_agrees_with_counting_them_one_by_one(sessions: int, threshold: float) -> None:
    t = exact(threshold)
    passing = [c for c in range(sessions + 1) if Fraction(sessions - c, sessions) >= t]
    assert allowed_crashes(sessions, threshold) == max(passing, default=0)


@given(counts(max_sessions=100_000), st.floats(0.01, 0.9999))
def test_the_wilson_bound_lies_between_the_rate_and_one(sample: tuple[int, int], confidence: float) -> None:
    sessions, crashed = sample
    assume(sessions > 0)
    bound = wilson_upper_bound(sessions - crashed, sessions, confidence)
    assert (sessions - crashed) / sessions <= bound <= 1.0


@given(counts(max_sessions=2000), st.integers(2, 1000), st.sampled_from([0.8, 0.9, 0.95, 0.99, 0.999]))
def test_the_wilson_bound_shrinks_toward_the_rate_as_the_sample_grows(
    sample: tuple[int, int], factor: int, confidence: float
) -> None:
    sessions, crashed = sample
    assume(sessions > 0)
    rate = (sessions - crashed) / sessions
    small = wilson_upper_bound(sessions - crashed, sessions, confidence) - rate
    large = wilson_upper_bound((sessions - crashed) * factor, sessions * factor, confidence) - rate
    huge = wilson_upper_bound((sessions - crashed) * 10**9, sessions * 10**9, confidence) - rate
    assert large <= small + 1e-12
    assert huge < 1e-3


@given(counts(max_sessions=20_000), thresholds, st.sampled_from([0.8, 0.9, 0.95, 0.99, 0.999]))
def test_early_fail_agrees_with_the_reported_bound(
    sample: tuple[int, int], threshold: float, confidence: float
) -> None:
    sessions, crashed = sample
    assume(sessions > 0)
    policy = Policy(
        method=Method.FIXED,
        min_sessions=sessions + 1,
        crash_free_threshold=threshold,
        max_wait=HOUR,
        fail_fast=False,
        early_fail_confidence=confidence,
        early_fail_min_sessions=1,
    )
    verdict = evaluate(policy, Evidence(sessions, crashed, 0.0))
    bound = verdict.figures.upper_bound
    assert bound is not None
    # The decision is exact; the reported float may differ from it only by rounding.
    if verdict.rule == Rule.EARLY_FAIL:
        assert bound < threshold + 1e-12
    else:
        assert bound > threshold - 1e-12
