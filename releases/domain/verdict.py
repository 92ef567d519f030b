"""The gate's verdict: a pure function from a policy and one poll's evidence to a decision.

Two methods. ``sequential`` (the default) runs the test in ``releases/domain/sequential.py``:
promote or roll back as soon as the cumulative counts say so with the error rates the policy
states. ``fixed`` is the seed rule: wait for ``min_sessions``, then compare the rate with the
threshold.

No Django, no I/O, no clock. The poll task gathers the evidence (the release's session totals, how
many provider errors came in a row, the seconds since gating started) and this module only decides,
so every rule can be tested exhaustively and with hypothesis.

Decisions use exact arithmetic (``releases/domain/rates.py``). The policy is
``releases/domain/gate_policy.py``; how numbers are written, ``releases/domain/wording.py``.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from releases.domain import sequential
from releases.domain.evidence import Evidence, Figures, Outcome, Rule, Verdict
from releases.domain.gate_policy import Method, OnNoTraffic, OnTimeout, Policy, validate_policy
from releases.domain.rates import allowed_crashes, exact, upper_bound_below, wilson_upper_bound
from releases.domain.wording import confidence_percent, duration, odds, percents


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
    good, bad = percents(Fraction(1) - exact(watch.good), Fraction(1) - exact(watch.bad))
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
    threshold = exact(policy.crash_free_threshold)
    if sessions >= policy.sample:
        # The seed rule decides even past max_wait: the sample is big enough, so there is nothing
        # left to be inconclusive about.
        allowed = allowed_crashes(sessions, policy.crash_free_threshold)
        rate, wanted = percents(Fraction(sessions - crashed, sessions), threshold)
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
        (wanted,) = percents(threshold)
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
        and upper_bound_below(sessions - crashed, sessions, confidence, threshold)
    ):
        assert figures.upper_bound is not None  # computed whenever a confidence is set and sessions > 0
        rate, bound, wanted = percents(
            Fraction(sessions - crashed, sessions), Fraction(figures.upper_bound), threshold
        )
        return _verdict(
            Outcome.FAIL,
            Rule.EARLY_FAIL,
            figures,
            f"crash-free {rate} over {sessions:,} sessions ({crashed:,} crashed): "
            f"at {confidence_percent(confidence)} confidence the rate is at most {bound}, below {wanted}",
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
            f"waited {duration(evidence.elapsed)} (limit {duration(policy.max_wait)}) "
            f"with only {sessions:,} of {policy.sample:,} sessions; on timeout: {policy.on_timeout}",
            on_inconclusive=OnTimeout(policy.on_timeout),
        )
    return _verdict(Outcome.WAIT, Rule.WAITING, figures, progress + _so_far(sessions, crashed, figures))


def _sequential(policy: Policy, evidence: Evidence, figures: Figures, sessions: int, crashed: int) -> Verdict:
    """The sequential test (releases/domain/sequential.py) on the cumulative counts."""
    test = sequential.boundaries(policy.design())
    cap = test.design.cap
    good, bad = percents(Fraction(1) - exact(test.design.good), Fraction(1) - exact(test.design.bad))
    counted = _counted(sessions, crashed)
    if sessions >= cap:
        # The cap decides even past max_wait: there is a verdict to give, by the ratio's sign.
        ratio = odds(sequential.log_ratio(sessions, crashed, test.design.good, test.design.bad))
        promotes = test.cap_promotes(sessions, crashed)
        return _verdict(
            Outcome.PASS if promotes else Outcome.FAIL,
            Rule.CAP_PASS if promotes else Rule.CAP_FAIL,
            figures,
            f"{counted}: max_sessions ({cap:,}) reached, and the counts "
            f"{'favour' if promotes else 'do not favour'} a crash-free rate of {good} over {bad} ({ratio})",
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
        (wanted,) = percents(exact(policy.crash_free_threshold))
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
            f"waited {duration(evidence.elapsed)} (limit {duration(policy.max_wait)}) without a "
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
        f"too little traffic to judge: {sessions:,} sessions in {duration(elapsed)} "
        f"({per_minute:,.1f} a minute); at that rate {duration(policy.max_wait)} brings about "
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
    (rate,) = percents(Fraction(sessions - crashed, sessions))
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
            f"waited {duration(evidence.elapsed)} (limit {duration(policy.max_wait)}) "
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
    (rate,) = percents(Fraction(sessions - crashed, sessions))
    return (
        f"; crash-free {rate} ({crashed:,} crashed, "
        f"{figures.allowed_crashes:,} allowed at {figures.min_sessions:,})"
    )
