"""The promotion gate: start judging a staged build, and act on the verdict.

The polls that gather its evidence are ``releases/workflows/polls.py``; the verdict itself is the
pure ``releases/domain/verdict.py``.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from notifications.intents import facts_for, slack_spec
from releases.core.outbox import ActionSpec
from releases.core.transitions import GATEKEEPER, enter, transition
from releases.domain.evidence import Outcome, Rule, Verdict
from releases.domain.gate_policy import Method, OnTimeout, crash_rates
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, Release
from releases.workflows.promotion import start_promotion, start_rollback

S = ReleaseState


def _reason(release: Release) -> str:
    project = release.project
    policy = project.policy()
    if policy.method == Method.FIXED:
        return (
            f"gating: waiting for {policy.sample:,} sessions at a crash-free rate of at least "
            f"{project.crash_free_threshold * 100:.2f}%"
        )
    good, bad = crash_rates(project.crash_free_threshold, project.tolerance)
    return (
        f"gating: a sequential test of crash-free {1 - good:.2%} or better against {1 - bad:.2%} or worse "
        f"(at most {project.false_promote:.0%} of bad releases promoted, {project.false_rollback:.0%} "
        f"of good ones rolled back; at least {policy.sample:,} sessions to promote)"
    )


def _open_analysis(release: Release, now: datetime, *, resumed: bool) -> Analysis:
    """The gate's analysis, due for its first check now: the next dispatch (within
    DISPATCH_INTERVAL) sends it, so the webhook request that started the gate publishes nothing.

    A gate a human resumes carries on with its own clock and extra wait; the policy is the one
    it started with."""
    gate = release.latest_analysis(Analysis.Kind.GATE) if resumed else None
    if gate is None:
        return Analysis.objects.create(
            release=release,
            kind=Analysis.Kind.GATE,
            policy=release.project.policy().to_json(),
            generation=1,
            next_check_at=now,
            started_at=now,
            created_at=now,
            updated_at=now,
        )
    gate.phase, gate.generation, gate.next_check_at = Analysis.Phase.RUNNING, gate.generation + 1, now
    gate.consecutive_errors, gate.ended_at, gate.updated_at = 0, None, now
    gate.save(
        update_fields=["phase", "generation", "next_check_at", "consecutive_errors", "ended_at", "updated_at"]
    )
    return gate


def start_gate(release: Release, *, reason: str = "", actor: str = GATEKEEPER) -> bool:
    """received/held -> gating, with its gate analysis due for a first check now; ``actor`` is
    who restarts it (a human resuming a held release is recorded as ``user:<name>``)."""
    now = timezone.now()
    resumed = release.gating_started_at is not None
    fields = {} if resumed else {"gating_started_at": now}
    with transaction.atomic():
        moved = transition(release, S.GATING, actor=actor, reason=reason or _reason(release), fields=fields)
        if moved is None:
            return False
        _open_analysis(release, now, resumed=resumed)
    return True


def open_gate(release: Release) -> None:
    """A new release (not yet saved) written already gating, its gate analysis due now."""
    now = timezone.now()
    enter(release, S.GATING, actor=GATEKEEPER, reason=_reason(release), fields={"gating_started_at": now})
    _open_analysis(release, now, resumed=False)


def decide(release: Release, verdict: Verdict) -> None:
    """Record a gate's verdict: pass -> promote, fail -> keep/restore the known-good deployment,
    inconclusive -> hold for a human or roll back, per policy."""
    figures = verdict.figures.as_dict()
    decided = {
        "verdict": verdict.outcome.value,
        "verdict_rule": verdict.rule,
        "verdict_reasons": list(verdict.reasons),
        "decided_at": timezone.now(),
    }
    data = {"rule": verdict.rule, "figures": figures}
    reason = "; ".join(verdict.reasons) or verdict.rule
    if verdict.outcome == Outcome.PASS:
        if transition(release, S.PASSED, actor=GATEKEEPER, reason=reason, data=data, fields=decided) is None:
            return
        start_promotion(
            release,
            actor=GATEKEEPER,
            reason="gate passed",
            outcome="pass",
            reasons=verdict.reasons,
            figures=figures,
        )
    elif verdict.outcome == Outcome.FAIL or verdict.on_inconclusive == OnTimeout.ROLLBACK:
        outcome = "fail" if verdict.outcome == Outcome.FAIL else "inconclusive"
        if transition(release, S.FAILED, actor=GATEKEEPER, reason=reason, data=data, fields=decided) is None:
            return
        start_rollback(
            release,
            actor=GATEKEEPER,
            reason="gate failed",
            outcome=outcome,
            reasons=verdict.reasons,
            figures=figures,
        )
    else:
        what = "too little traffic to judge" if verdict.rule == Rule.NO_TRAFFIC else "no verdict"
        then = "a human decides (approve or reject in Gatekeeper)"
        actions = []
        checks = release.project.gate_checks
        if verdict.after_checks and checks:
            then = f"running its {len(checks)} gate check(s); promoted if they pass twice, 30 s apart"
            actions.append(
                ActionSpec(
                    kind=Action.Kind.CHECKS,
                    key=f"checks:{release.pk}:no-traffic",
                    payload={"checks": checks, "confirmations": 2, "interval": 30.0},
                )
            )
        facts = facts_for(
            release,
            outcome="inconclusive",
            headline=f"held, {what}: {then}",
            reasons=verdict.reasons,
            figures=figures,
        )
        transition(
            release,
            S.HELD,
            actor=GATEKEEPER,
            reason=reason,
            data=data,
            fields=decided,
            actions=[*slack_spec(release, facts), *actions],
        )
