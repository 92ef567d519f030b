"""What the admin's release page shows: the verdict in a sentence, what production serves, the
chart, the canary's stages, the history and the actions, all from the stored rows.

The wording is the Slack messages' (notifications/messages.py), so a release manager reads the
same figures in both places.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.safestring import SafeString

from notifications.messages import count, duration, evidence, percent, sentry_release_url
from releases.core.production import known_good
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, GateCheck, Incident, RampCheck, Release, ReleaseEvent
from releases.ops import chart

S = ReleaseState

STATE_WORDS = {
    S.RECEIVED: "Received",
    S.GATING: "Gating",
    S.PASSED: "Passed",
    S.PROMOTING: "Promoting",
    S.PROMOTED: "Promoted",
    S.SUPERSEDED: "Superseded",
    S.FAILED: "Failed",
    S.ROLLING_BACK: "Rolling back",
    S.ROLLED_BACK: "Rolled back",
    S.HELD: "Held",
    S.RAMPING: "Ramping",
    S.CANCELLED: "Cancelled",
}


def when(moment: datetime | None) -> str:
    """Times to the second, in UTC, as the history needs them to be ordered by eye."""
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def actor_name(actor: str) -> str:
    return actor.removeprefix("user:")


def rule_of(release: Release, *, alerted: bool | None = None) -> str:
    """The rule that decided, overrides included, since a human is a rule too. A release that
    passed its gate and was rolled back since was rolled back by a Sentry alert (it has an
    incident; ``alerted`` when the caller already asked) or by its bake watch."""
    if release.verdict == "pass" and release.state in {S.ROLLING_BACK, S.ROLLED_BACK}:
        if alerted is None:
            alerted = Incident.objects.filter(release=release).exists()
        return "alert" if alerted else "bake"
    if release.verdict_rule:
        return release.verdict_rule
    return {"approved": "override:approve", "rejected": "override:reject"}.get(release.verdict, "")


def figures_of(release: Release, kind: str | None = None) -> dict[str, Any]:
    """The latest check's figures (of analyses of ``kind`` if given), else the release's counts."""
    checks = release.checks.filter(error="")
    if kind is not None:
        checks = checks.filter(analysis__kind=kind)
    check = checks.order_by("-checked_at", "-id").first()
    figures = dict(check.figures) if check is not None and check.figures else {}
    figures.setdefault("sessions", release.sessions)
    figures.setdefault("crashed", release.crashed)
    figures.setdefault("crash_free_rate", release.crash_free_rate)
    figures.setdefault("threshold", release.project.crash_free_threshold)
    figures.setdefault("min_sessions", release.project.min_sessions)
    return figures


def evidence_so_far(release: Release) -> str:
    """ "8 sessions (98.75% crash-free, below the 500-session minimum)": what an override overrules."""
    figures = figures_of(release)
    sessions, rate = figures.get("sessions"), figures.get("crash_free_rate")
    if not sessions:
        return "no sessions yet"
    parts = [f"{percent(rate)} crash-free"]
    threshold, floor = figures.get("threshold"), figures.get("min_sessions") or 0
    if rate is not None and threshold is not None:
        parts.append(f"{'above' if rate >= threshold else 'below'} the {percent(threshold)} threshold")
    if sessions < floor:
        parts.append(f"below the {floor:,}-session minimum")
    return f"{count(sessions)} sessions ({', '.join(parts)})"


def _decider(release: Release) -> ReleaseEvent | None:
    """The human whose override decided the release, if one did."""
    return (
        release.events.filter(actor__startswith="user:", kind__in=[ReleaseEvent.Kind.TRANSITION])
        .exclude(to_state__in=[S.GATING, S.HELD])
        .order_by("-created_at", "-id")
        .first()
    )


def verdict_sentence(release: Release) -> str:
    state = STATE_WORDS.get(S(release.state), release.state)
    human = _decider(release)
    if human is not None and release.verdict in {"approved", "rejected"}:
        verb = "approved" if release.verdict == "approved" else "rejected"
        return f"{state} by {actor_name(human.actor)}: {verb} by hand with {evidence_so_far(release)}"
    # A promoted release is explained by its gate; the bake watch speaks only when it rolled back.
    promoted = release.state in {S.PASSED, S.PROMOTING, S.PROMOTED, S.SUPERSEDED}
    figures = figures_of(release, Analysis.Kind.GATE if promoted else None)
    sessions, rate, threshold = figures.get("sessions"), figures.get("crash_free_rate"), figures["threshold"]
    if rate is None:
        tail = f"no crash-free rate yet ({count(sessions or 0)} sessions), threshold {percent(threshold)}"
    else:
        side = "above" if rate >= threshold else "below"
        tail = (
            f"{percent(rate)} crash-free over {count(sessions)} sessions, "
            f"{side} the {percent(threshold)} threshold"
        )
    outcome = {"pass": "pass", "fail": "fail"}.get(release.verdict, "wait")
    found = evidence(figures, outcome)
    method = "sequential test" if figures.get("method") == "sequential" else "bake watch"
    sentence = f"{state}: {tail}"
    if found:
        sentence += f" ({method}: {found})"
    reason = release.verdict_reasons[0] if release.verdict_reasons else ""
    # The rule's own reason, unless it only says again what the evidence clause said.
    decided = release.state in {S.HELD, S.FAILED, S.ROLLED_BACK, S.ROLLING_BACK}
    if reason and decided and not (found and found in reason):
        sentence += f". {reason}"
    return sentence


@dataclass(frozen=True)
class Production:
    live: str  # what production serves now, by our records
    target: str  # where a rollback would go


def production(release: Release) -> Production:
    project = release.project
    live_id = project.live_deployment_id
    live = Release.objects.filter(project=project, deployment_id=live_id).first() if live_id else None
    if live is None:
        shown = live_id or "unknown (no deployment.promoted seen yet)"
    else:
        shown = f"{live.version or live.deployment_id} ({live.deployment_id})"
        if live.pk == release.pk:
            shown += " — this release"
    good = known_good(project, exclude=release)
    target = f"{good.version or good.deployment_id} ({good.deployment_id})" if good else "none known"
    return Production(live=shown, target=target)


def chart_for(release: Release) -> SafeString | None:
    checks = list(release.checks.filter(error="").order_by("checked_at", "id"))
    if not checks:
        return None
    start = release.gating_started_at or checks[0].checked_at
    points = [_point(check, start) for check in checks if check.sessions is not None]
    if not points:
        return None
    threshold = release.project.crash_free_threshold
    title = f"Crash-free rate and sessions of {release} since its gate started, against {percent(threshold)}"
    return chart.render(points, threshold, title=title)


def _point(check: GateCheck, start: datetime) -> chart.Point:
    sessions = check.sessions or 0
    figures = check.figures or {}
    return chart.Point(
        seconds=max(0.0, (check.checked_at - start).total_seconds()),
        sessions=sessions,
        rate=check.crash_free_rate,
        promote_at=chart.boundary_rate(sessions, figures.get("promote_at_most")),
        rollback_at=chart.boundary_rate(sessions, figures.get("rollback_at_least")),
    )


def check_rows(release: Release) -> list[dict[str, Any]]:
    return [
        {
            "at": when(check.checked_at),
            "kind": check.analysis.get_kind_display(),
            "sessions": count(check.sessions),
            "crashed": count(check.crashed),
            "rate": percent(check.crash_free_rate),
            "outcome": check.outcome,
            "rule": check.rule,
            "note": check.error or "; ".join(check.reasons[:1]),
        }
        for check in release.checks.select_related("analysis").order_by("-checked_at", "-id")[:50]
    ]


def stage_rows(release: Release) -> list[dict[str, Any]]:
    """A canary's stages: each one's share of traffic, its schedule, and its SLO checks."""
    stages = release.analyses.filter(kind=Analysis.Kind.CANARY).order_by("stage", "pk")
    checks: dict[int, list[RampCheck]] = {}
    for check in release.ramp_checks.order_by("checked_at", "id"):
        checks.setdefault(check.analysis_id, []).append(check)
    rows = []
    for stage in stages:
        plan = (stage.policy.get("stages") or [])[stage.stage or 0 : (stage.stage or 0) + 1]
        share = plan[0].get("percent") if plan else None
        rows.append(
            {
                "stage": (stage.stage or 0) + 1,
                "percent": "—" if share is None else f"{share:g}%",
                "phase": stage.get_phase_display(),
                "started": when(stage.started_at),
                "ended": when(stage.ended_at),
                "checks": [_ramp_row(c) for c in checks.get(stage.pk, [])],
            }
        )
    return rows


def stage_plan(release: Release) -> str:
    """The canary's stages as "5% → [25%] → 100%", the one in place marked, "(paused)" if so."""
    canary = list(release.analyses.filter(kind=Analysis.Kind.CANARY).order_by("pk"))
    if not canary:
        return ""
    placed = [a.stage for a in canary if a.started_at is not None]
    in_place = placed[-1] if placed else None
    stages = canary[-1].policy.get("stages", [])
    plan = " → ".join(
        f"[{s['percent']:g}%]" if i == in_place else f"{s['percent']:g}%" for i, s in enumerate(stages)
    )
    return plan + (" (paused)" if canary[-1].phase == Analysis.Phase.PAUSED else "")


def _ramp_row(check: RampCheck) -> dict[str, Any]:
    signals = []
    for signal in check.checks:
        value, baseline = signal.get("value"), signal.get("baseline")
        shown = "—" if value is None else f"{value:.6g}"
        if baseline is not None:
            shown += f" (previous {baseline:.6g})"
        signals.append(f"{'ok' if signal.get('ok') else 'FAIL'} {signal.get('name')}: {shown}")
    return {
        "at": when(check.checked_at),
        "confirmation": check.confirmation,
        "ok": "passed" if check.ok else "failed",
        "signals": signals,
        "reasons": "; ".join(check.reasons),
    }


def event_rows(release: Release) -> list[dict[str, str]]:
    return [
        {
            "at": when(event.created_at),
            "kind": event.get_kind_display(),
            "move": f"{event.from_state} → {event.to_state}" if event.to_state else "",
            "actor": actor_name(event.actor),
            "reason": event.reason,
        }
        for event in release.events.order_by("created_at", "id")
    ]


def action_rows(release: Release) -> list[dict[str, str]]:
    return [
        {
            "kind": action.get_kind_display(),
            "status": action.get_status_display(),
            "attempts": f"{action.attempts} of {action.max_attempts}",
            "error": action.last_error,
            "created": when(action.created_at),
            "finished": when(action.finished_at),
        }
        for action in Action.objects.filter(release=release).order_by("created_at", "id")
    ]


def context(release: Release) -> dict[str, Any]:
    project = release.project
    is_canary = release.analyses.filter(kind=Analysis.Kind.CANARY).exists()
    gate = release.latest_analysis(Analysis.Kind.GATE)
    return {
        "release": release,
        "verdict": verdict_sentence(release),
        "state": STATE_WORDS.get(S(release.state), release.state),
        "rule": rule_of(release),
        "production": production(release),
        "chart": chart_for(release),
        "checks": check_rows(release),
        "is_canary": is_canary,
        "stages": stage_rows(release) if is_canary else [],
        "plan": stage_plan(release) if is_canary else "",
        "events": event_rows(release),
        "actions": action_rows(release),
        "threshold": percent(project.crash_free_threshold),
        # A decided gate's time is the time it took to decide, not the time since it started.
        "elapsed": duration(gate.elapsed(release.decided_at))
        if gate is not None and gate.started_at
        else "—",
        "created": when(release.created_at),
        "decided": when(release.decided_at),
        "sentry_url": sentry_release_url(project.sentry_org, release.version, project.sentry_query_project),
    }
