"""SLO check specs and their pure judgement."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from releases.domain.slo_rules import (
    CheckSpec,
    judge,
    judge_crash_free,
    judge_relative_crash,
    parse_check,
    substitute,
)

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def spec(**raw: Any) -> CheckSpec:
    parsed, problems = parse_check(raw, "c")
    assert problems == []
    assert parsed is not None
    return parsed


def problems_of(raw: Any) -> list[str]:
    parsed, problems = parse_check(raw, "canary.checks[0]")
    assert parsed is None
    return problems


# --- parsing ------------------------------------------------------------------------------------


def test_the_design_examples_parse_with_their_defaults() -> None:
    rate = spec(kind="sentry_error_rate", max=0.01, window="5m")
    assert (rate.window, rate.timeout, rate.max, rate.min_sessions) == (300.0, 10.0, 0.01, 1)
    assert rate.name == "sentry_error_rate (max 0.01)"
    relative = spec(kind="sentry_error_rate", relative_to_previous=2.0, window="5m")
    assert relative.relative_to_previous == 2.0 and relative.floor == 0.0
    http = spec(kind="http", url="https://status.example.com/slo", timeout="10s")
    assert http.url == "https://status.example.com/slo" and http.timeout == 10.0
    posthog = spec(kind="posthog_exceptions", max=10, window="5m")
    assert (posthog.property, posthog.value, posthog.project_id) == ("$app_version", "$RELEASE", "")
    datadog = spec(kind="datadog_query", query="avg:errors{deployment_id:$DEPLOYMENT_ID}", max=0.01)
    assert CheckSpec.from_json(datadog.to_json()) == datadog


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sentry_error_rate", "must be a mapping"),
        ({"kind": "sentry_erorr_rate", "max": 1}, "kind: must be one of"),
        ({"kind": "sentry_error_rate"}, "needs a threshold"),
        ({"kind": "sentry_error_rate", "max": 1, "query": "x"}, "query: not a setting of"),
        ({"kind": "sentry_error_rate", "max": 5}, "rates are fractions"),
        ({"kind": "sentry_crash_free", "min": 99.5}, "rates are fractions"),
        ({"kind": "sentry_error_rate", "max": "1%"}, "max: must be a number"),
        ({"kind": "sentry_error_rate", "max": float("nan")}, "max: must be a number"),
        ({"kind": "sentry_error_rate", "max": 0.1, "min": 0.2}, "min is above max"),
        ({"kind": "sentry_error_rate", "max": 0.1, "window": "5 minutes"}, "window:"),
        ({"kind": "sentry_error_rate", "max": 0.1, "window": "10s"}, "window: must be between"),
        ({"kind": "sentry_error_rate", "max": 0.1, "timeout": "5m"}, "timeout: must be between"),
        ({"kind": "sentry_error_rate", "max": 0.1, "min_sessions": 0}, "min_sessions"),
        ({"kind": "sentry_error_rate", "relative_to_previous": 0}, "must be more than 0"),
        ({"kind": "sentry_error_rate", "max": 0.1, "floor": 0.01}, "floor: only applies"),
        ({"kind": "sentry_crash_free", "method": "fixed", "relative_to_previous": 2}, "means nothing"),
        ({"kind": "http", "url": "https://x.example/slo", "max": 1}, "passes on 200 only"),
        ({"kind": "http"}, "url: is required"),
        ({"kind": "http", "url": "ftp://x.example/slo"}, "http:// or https://"),
        ({"kind": "datadog_query", "max": 1}, "query: is required"),
        ({"kind": "datadog_query", "query": "avg:errors{*}", "max": 1}, "must name the deployment"),
        ({"kind": "posthog_exceptions", "max": 1, "value": "1.4.2"}, "value: must name the deployment"),
        ({"kind": "posthog_exceptions", "max": 1, "property": "x'; DROP"}, "property: must be a"),
    ],
)
def test_a_bad_check_is_refused_naming_the_field(raw: Any, expected: str) -> None:
    assert any(expected in problem for problem in problems_of(raw)), problems_of(raw)


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of({"kind": "sentry_error_rate", "max": 5, "window": "x", "colour": "red"})
    assert len(problems) == 3


def test_placeholders_are_filled() -> None:
    text = "https://$DEPLOYMENT_URL/slo?d=$DEPLOYMENT_ID&r=$RELEASE"
    filled = substitute(text, deployment_id="dpl_1", deployment_url="shop-abc.vercel.app", release="web@1")
    assert filled == "https://shop-abc.vercel.app/slo?d=dpl_1&r=web@1"


# --- judging ------------------------------------------------------------------------------------


def test_absolute_bounds() -> None:
    check = spec(kind="sentry_error_rate", max=0.01, min=0.001)
    assert judge(check, 0.01).ok  # at the bound passes
    assert not judge(check, 0.0101).ok
    assert "above the maximum 0.01" in judge(check, 0.02).reason
    assert "below the minimum 0.001" in judge(check, 0.0).reason
    assert judge(check, 0.005).threshold == "<= 0.01 and >= 0.001"


def test_no_value_never_passes() -> None:
    for check in (
        spec(kind="sentry_error_rate", max=1),
        spec(kind="sentry_crash_free", method="fixed", min=0),
        spec(kind="sentry_error_rate", relative_to_previous=100, floor=1),
        spec(kind="http", url="https://x.example/$DEPLOYMENT_ID"),
    ):
        verdict = judge(check, None, 0.5)
        assert not verdict.ok


def test_relative_to_previous_with_the_stated_zero_rule() -> None:
    check = spec(kind="sentry_error_rate", relative_to_previous=2.0)
    assert judge(check, 0.008, 0.004).ok
    verdict = judge(check, 0.0081, 0.004)
    assert not verdict.ok and "more than 2 x the previous deployment's 0.004" in verdict.reason
    # previous zero, no floor: any error at all fails
    assert not judge(check, 0.0001, 0.0).ok
    assert judge(check, 0.0, 0.0).ok
    floored = spec(kind="sentry_error_rate", relative_to_previous=2.0, floor=0.001)
    assert judge(floored, 0.001, 0.0).ok
    assert not judge(floored, 0.0011, 0.0).ok
    assert "no value for the previous deployment" in judge(check, 0.001, None).reason


def test_composite_bounds_must_all_hold() -> None:
    check = spec(kind="sentry_error_rate", max=0.01, relative_to_previous=2.0)
    assert judge(check, 0.006, 0.004).ok
    assert not judge(check, 0.009, 0.004).ok  # under max, over 2x previous
    assert not judge(check, 0.02, 0.5).ok  # under 2x previous, over max


def test_a_stored_check_without_any_threshold_never_passes() -> None:
    # sync_config refuses it; an entry edited by hand in the admin must not pass everything
    assert not judge(CheckSpec(kind="sentry_error_rate", name="x"), 0.0).ok


def test_http_passes_on_200_only() -> None:
    check = spec(kind="http", url="https://x.example/slo")
    assert judge(check, 200).ok
    for status in (201, 204, 301, 404, 500, 503):
        assert not judge(check, status).ok
    assert "timeout" in judge(check, None).reason


@given(value=finite, bound=finite)
def test_max_is_exactly_value_at_most_bound(value: float, bound: float) -> None:
    check = CheckSpec(kind="datadog_query", name="x", max=bound, query="$DEPLOYMENT_ID")
    assert judge(check, value).ok is (value <= bound)


@given(value=finite, previous=finite, factor=st.floats(min_value=0.01, max_value=100), floor=finite)
def test_relative_is_exactly_value_at_most_the_larger_of_factor_times_previous_and_floor(
    value: float, previous: float, factor: float, floor: float
) -> None:
    check = CheckSpec(kind="posthog_exceptions", name="x", relative_to_previous=factor, floor=floor)
    assert judge(check, value, previous).ok is (value <= max(factor * previous, floor))


def test_a_crash_free_check_is_the_sequential_test_unless_it_says_fixed() -> None:
    check = spec(kind="sentry_crash_free", min=0.995)
    assert check.is_sequential()
    policy = check.crash_free_policy()
    assert (policy.crash_free_threshold, policy.tolerance) == (0.995, 0.003)
    # Scaled to the bar: 60% of the crash rate it allows.
    assert spec(kind="sentry_crash_free", min=0.9).crash_free_policy().tolerance == 0.06
    assert not spec(kind="sentry_crash_free", method="fixed", min=0.995).is_sequential()


def test_a_stored_crash_free_check_from_before_the_choice_of_method_keeps_the_window_rule() -> None:
    stored = {"kind": "sentry_crash_free", "name": "crash-free", "min": 0.995, "window": 300.0}
    assert not CheckSpec.from_json(stored).is_sequential()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"kind": "sentry_crash_free", "min": 0.995, "max": 0.999},
            "needs min (the crash-free bar) or relative_to_previous, and no max",
        ),
        ({"kind": "sentry_crash_free", "min": 0.995, "tolerance": 0.01}, "c.tolerance: 0.01 around"),
        (
            {"kind": "sentry_crash_free", "min": 0.995, "method": "bayes"},
            "c.method: must be sequential or fixed",
        ),
        ({"kind": "sentry_crash_free", "min": 0.995, "false_promote": 0.7}, "c.false_promote: must be"),
        (
            {"kind": "sentry_error_rate", "max": 0.01, "tolerance": 0.1},
            "not a setting of a sentry_error_rate check",
        ),
    ],
)
def test_a_sequential_check_the_test_cannot_run_is_refused_naming_the_key(
    raw: dict[str, Any], message: str
) -> None:
    parsed, problems = parse_check(raw, "c")
    assert parsed is None
    assert any(message in problem for problem in problems), problems


def test_the_sequential_check_judges_pass_fail_or_wait() -> None:
    check = spec(kind="sentry_crash_free", min=0.995)
    assert judge_crash_free(check, 1000, 1)[0] == "pass"
    assert judge_crash_free(check, 100, 3)[0] == "fail"
    outcome, reason = judge_crash_free(check, 50, 0)
    assert outcome == "wait" and "more crash-free sessions would promote" in reason


# --- the two-sample crash check -----------------------------------------------------------------


def relative(**raw: Any) -> CheckSpec:
    return spec(kind="sentry_crash_free", relative_to_previous=2.0, **raw)


@pytest.mark.parametrize(
    ("canary", "previous", "outcome"),
    [
        ((5000, 8), (95000, 192), "pass"),  # 0.16% against 0.20%: no worse, with crashes enough to tell
        ((5000, 30), (95000, 190), "fail"),  # 0.6% against 0.2%: three times as often
        ((5000, 2), (95000, 38), "wait"),  # the same rate, but 40 crashes cannot tell 1x from 2x yet
        ((5000, 0), (95000, 0), "wait"),  # no crash on either side: nothing to compare
        ((0, 0), (95000, 190), "wait"),  # no canary sessions yet
    ],
)
def test_the_two_sample_check_compares_crashes_not_rates(
    canary: tuple[int, int], previous: tuple[int, int], outcome: str
) -> None:
    verdict, reason = judge_relative_crash(relative(), canary, previous)
    assert verdict == outcome, reason


def test_the_two_sample_check_fails_a_canary_as_healthy_as_production_at_most_one_time_in_twenty() -> None:
    """Exactly: the crashes' owners are coin flips (5% canary traffic), looked at after every crash."""
    check = relative()
    n1, n2 = 5000, 95000
    share = n1 / (n1 + n2)
    alive = {0: 1.0}
    failed = 0.0
    for crashes in range(1, 400):
        moved: dict[int, float] = {}
        for mine, mass in alive.items():
            moved[mine] = moved.get(mine, 0.0) + mass * (1 - share)
            moved[mine + 1] = moved.get(mine + 1, 0.0) + mass * share
        alive = {}
        for mine, mass in moved.items():
            verdict, _ = judge_relative_crash(check, (n1, mine), (n2, crashes - mine))
            if verdict == "fail":
                failed += mass
            else:
                alive[mine] = mass
    assert failed <= 0.05


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"method": "fixed"}, "a ratio of crash-free rates means nothing"),
        ({"floor": 0.001}, "floor: not a setting of a sentry_crash_free check"),
    ],
)
def test_a_relative_crash_check_it_cannot_run_is_refused(raw: dict[str, Any], message: str) -> None:
    _, problems = parse_check({"kind": "sentry_crash_free", "relative_to_previous": 2.0, **raw}, "c")
    assert any(message in problem for problem in problems), problems
    _, problems = parse_check({"kind": "sentry_crash_free", "relative_to_previous": 1.0}, "c")
    assert any("must be above 1" in problem for problem in problems), problems
