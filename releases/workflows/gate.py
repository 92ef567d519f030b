"""The promotion gate: start judging a staged build, and act on the verdict.

The polls that gather its evidence are ``releases/workflows/polls.py``; the verdict itself is the
pure ``releases/domain/verdict.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from notifications.intents import facts_for, slack_spec
from releases.core.transitions import GATEKEEPER, enter, transition
from releases.domain.lifecycle import ReleaseState
from releases.domain.verdict import OnTimeout, Outcome, Verdict
from releases.models import Release
from releases.workflows.promotion import start_promotion, start_rollback

S = ReleaseState


def gate_start(release: Release, now: datetime) -> tuple[dict[str, Any], str]:
    """What starting the gate writes: the release's fields, and the reason its history gives.

    Due now: the next dispatch (within DISPATCH_INTERVAL) sends the first poll, so the webhook
    request that started the gate publishes nothing.
    """
    project = release.project
    reason = (
        f"gating: waiting for {project.min_sessions} sessions at a crash-free rate of at least "
        f"{project.crash_free_threshold * 100:.2f}%"
    )
    fields = {"next_poll_at": now, "consecutive_errors": 0, "generation": release.generation + 1}
    if release.gating_started_at is None:
        fields["gating_started_at"] = now
    return fields, reason


def start_gate(release: Release, *, reason: str = "") -> bool:
    """received/held -> gating, due for its first poll now."""
    fields, default_reason = gate_start(release, timezone.now())
    return (
        transition(release, S.GATING, actor=GATEKEEPER, reason=reason or default_reason, fields=fields)
        is not None
    )


def open_gate(release: Release) -> None:
    """A new release (not yet saved) written already gating, due for its first poll now."""
    fields, reason = gate_start(release, timezone.now())
    enter(release, S.GATING, actor=GATEKEEPER, reason=reason, fields=fields)


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
        facts = facts_for(
            release,
            outcome="inconclusive",
            headline="held: a human decides (approve or reject in Gatekeeper)",
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
            actions=slack_spec(release, facts),
        )
