"""Rolling a live release back when real users crash: from a Sentry alert or a bake-watch breach.

One path for both causes, so a release is rolled back at most once whichever comes first: the
move to ``rolling_back`` is a compare-and-set. The rollback action is written (and so dispatched)
first; the page and the Slack message are their own actions, so their failures never delay or
undo the rollback.
"""

from __future__ import annotations

from typing import Any, Literal

from django.utils import timezone

from notifications.intents import facts_for, page_spec, slack_spec
from notifications.messages import admin_url, evidence, percent, sentry_release_url
from releases.core.outbox import ActionSpec, enqueue_actions, write_actions
from releases.core.production import known_good
from releases.core.transitions import GATEKEEPER, stop_analyses, transition
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Release

S = ReleaseState

# A live release in one of these states can be rolled back from an alert or a breach.
ROLLABLE = frozenset({S.PROMOTED, S.GATING, S.HELD})


def rollback_live(
    release: Release,
    *,
    cause: str,
    actor: str = GATEKEEPER,
    incident: Incident | None = None,
    figures: dict[str, Any] | None = None,
    reasons: tuple[str, ...] = (),
    target: Release | Literal["look"] | None = "look",
) -> str:
    """Roll production back from ``release`` now. Returns what happened:
    ``rolling-back``, ``no-target`` (paged and told, nothing rolled back), or ``already``."""
    project = release.project
    if release.state not in ROLLABLE:
        return "already"
    if release.state == S.GATING:
        decided = {
            "verdict": "fail",
            "verdict_rule": "alert" if incident else "breach",
            "verdict_reasons": [cause],
            "decided_at": timezone.now(),
        }
        if transition(release, S.FAILED, actor=actor, reason=cause, fields=decided) is None:
            return "already"
    figures = figures or {}
    if target == "look":
        target = known_good(project, exclude=release)
    threshold = project.watch_threshold or project.crash_free_threshold
    rate = figures.get("crash_free_rate", release.crash_free_rate)
    links = links_for(release, incident)
    details = {
        "project": project.name,
        "release": release.version,
        "deployment_id": release.deployment_id,
        "crash_free_rate": rate,
        "threshold": threshold,
        "sessions": figures.get("sessions", release.sessions),
        "cause": cause,
        "rollback_target": target.deployment_id if target else None,
        "rollback_target_release": target.version if target else None,
    }
    if evidence(figures, "fail"):
        # The bake watch's test: what it found, in words and in its own figures.
        details["crashed"] = figures.get("crashed", release.crashed)
        details["evidence"] = evidence(figures, "fail")
        details.update({name: figures.get(name) for name in ("rollback_statistic", "rollback_level")})
    name = release.version or release.deployment_id
    rate_text = f"crash-free {percent(rate)} < {percent(threshold)}" if rate is not None else cause
    if target is None:
        details["rollback_status"] = "not rolled back: no known-good deployment"
        summary = f"{project.name} {name}: {rate_text}; NOT rolled back, no known-good deployment"
        facts = facts_for(
            release,
            outcome="fail",
            headline="crashing in production; no known-good deployment to roll back to: NOT rolled back",
            reasons=(cause, *reasons),
            figures=figures,
        )
        specs = [
            *page_spec(
                release,
                summary=summary,
                severity="critical",
                details=details,
                links=links,
                intent=_intent(incident, "no-target"),
            ),
            *slack_spec(release, facts, key=f"slack:{release.pk}:{_intent(incident, 'no-target')}"),
        ]
        enqueue_actions(write_actions(release, specs))
        # Reported once: a watch that kept polling would only find the same breach again.
        stop_analyses(release)
        return "no-target"
    # Keys named by the alert (or the breach): one rollback per release is the compare-and-set's
    # job, and naming them saves the decision a query on the way to the rollback.
    rollback_key = f"rollback:{release.pk}:{_intent(incident, 'rollback')}"
    rollback = ActionSpec(
        kind=Action.Kind.ROLLBACK,
        key=rollback_key,
        payload={
            "deployment_id": target.deployment_id,
            "from_deployment_id": release.deployment_id,
            "target_release_id": target.pk,
            "cause": cause,
        },
    )
    target_name = target.version or target.deployment_id
    summary = f"{project.name} {name}: {rate_text}; rolling back to {target_name}"
    headline = f"crashing in production: rolling back to {target_name} ({target.deployment_id})"
    facts = facts_for(release, outcome="fail", headline=headline, reasons=(cause, *reasons), figures=figures)
    specs = [
        rollback,  # first: dispatched first, before anyone is told
        *page_spec(
            release,
            summary=summary,
            severity="critical",
            details=details,
            links=links,
            rollback_key=rollback_key,
            intent=_intent(incident, "rollback"),
        ),
        *slack_spec(release, facts, key=f"slack:{release.pk}:{_intent(incident, 'rollback')}"),
    ]
    moved = transition(
        release,
        S.ROLLING_BACK,
        actor=actor,
        reason=cause,
        actions=specs,
        fields={"rollback_target": target.deployment_id},
    )
    if moved is None:
        return "already"
    return "rolling-back"


def _intent(incident: Incident | None, what: str) -> str:
    return f"{what}:incident-{incident.sentry_id}" if incident is not None else f"{what}:breach"


def links_for(release: Release, incident: Incident | None) -> list[tuple[str, str]]:
    project = release.project
    links = []
    if incident is not None and incident.web_url:
        links.append((incident.web_url, "Sentry incident"))
    sentry = sentry_release_url(project.sentry_org, release.version, project.sentry_query_project)
    if sentry:
        links.append((sentry, "Sentry release"))
    if release.inspector_url:
        links.append((release.inspector_url, "Vercel deployment"))
    links.append((admin_url(release.pk), "Gatekeeper"))
    return links
