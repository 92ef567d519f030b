"""Rolling a live release back when real users crash: from a Sentry alert or a bake-watch breach.

One path for both causes, so a release is rolled back at most once whichever comes first: the
move to ``rolling_back`` is a compare-and-set. The rollback action is written (and so dispatched)
first; the page and the Slack message are their own actions, so their failures never delay or
undo the rollback.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from notifications.messages import admin_url, percent, sentry_release_url
from releases.decisions import GATEKEEPER, facts_for, known_good, next_key, slack_spec
from releases.models import Action, Incident, Project, Release
from releases.outbox import enqueue_actions, write_actions
from releases.states import ActionSpec, ReleaseState, transition

S = ReleaseState
# A live release in one of these states can be rolled back from an alert or a breach.
ROLLABLE = frozenset({S.PROMOTED, S.GATING, S.HELD})


def dedup_key(project: Project, release: Release) -> str:
    """One PagerDuty alert per project and release: every page about it lands on the same one."""
    return f"gatekeeper/{project.name}/{release.deployment_id}"[:255]


def page_spec(
    release: Release,
    *,
    summary: str,
    severity: str,
    details: dict[str, Any],
    links: list[tuple[str, str]],
    rollback_key: str = "",
    intent: str = "",
) -> list[ActionSpec]:
    project = release.project
    if not project.pagerduty_routing_key_env:
        return []
    payload = {
        "event_action": "trigger",
        "routing_key_env": project.pagerduty_routing_key_env,  # the variable's name, never the key
        "dedup_key": dedup_key(project, release),
        "summary": summary[:1024],
        "severity": severity,
        "source": urlsplit(settings.GATEKEEPER_PUBLIC_URL).netloc or "gatekeeper",
        "component": project.name,
        "group": project.sentry_environment or "production",
        "class": "release-regression",
        "custom_details": details,
        "links": links,
        "client_url": admin_url(release.pk),
        "rollback_action_key": rollback_key,
    }
    key = f"pagerduty:{release.pk}:{intent}" if intent else next_key(release, Action.Kind.PAGERDUTY)
    return [ActionSpec(kind=Action.Kind.PAGERDUTY, key=key, payload=payload)]


def resolve_spec(release: Release, intent: str) -> list[ActionSpec]:
    project = release.project
    if not project.pagerduty_routing_key_env:
        return []
    payload = {
        "event_action": "resolve",
        "routing_key_env": project.pagerduty_routing_key_env,
        "dedup_key": dedup_key(project, release),
    }
    return [ActionSpec(kind=Action.Kind.PAGERDUTY, key=f"pagerduty:{release.pk}:{intent}", payload=payload)]


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
            "next_poll_at": None,
        }
        if transition(release, S.FAILED, actor=actor, reason=cause, fields=decided) is None:
            return "already"
    figures = figures or {}
    if target == "look":
        target = known_good(project, exclude=release)
    threshold = project.watch_threshold or project.crash_free_threshold
    rate = figures.get("crash_free_rate", release.crash_free_rate)
    links = _links(release, incident)
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
        Release.objects.filter(pk=release.pk, watch_until__isnull=False).update(
            watch_until=None, next_poll_at=None
        )
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
        fields={"rollback_target": target.deployment_id, "watch_until": None, "next_poll_at": None},
    )
    if moved is None:
        return "already"
    return "rolling-back"


def _intent(incident: Incident | None, what: str) -> str:
    return f"{what}:incident-{incident.sentry_id}" if incident is not None else f"{what}:breach"


def _links(release: Release, incident: Incident | None) -> list[tuple[str, str]]:
    project = release.project
    links = []
    if incident is not None and incident.web_url:
        links.append((incident.web_url, "Sentry incident"))
    sentry = sentry_release_url(project.sentry_org, release.version, project.sentry_project)
    if sentry:
        links.append((sentry, "Sentry release"))
    if release.inspector_url:
        links.append((release.inspector_url, "Vercel deployment"))
    links.append((admin_url(release.pk), "Gatekeeper"))
    return links


def notify_only(release: Release, incident: Incident, *, page: bool) -> None:
    """A warning: tell the channel (and the on-call, if configured), touch nothing."""
    headline = f"Sentry warning: {incident.title or 'crash-free rate falling'}; no action taken"
    facts = facts_for(release, outcome="info", headline=headline, reasons=(incident.description,))
    specs = list(slack_spec(release, facts, key=f"slack:{release.pk}:warning:incident-{incident.sentry_id}"))
    if page:
        specs += page_spec(
            release,
            summary=f"{release.project.name} {release.version}: {headline}",
            severity="warning",
            details={"release": release.version, "description": incident.description},
            links=_links(release, incident),
            intent=f"warning:incident-{incident.sentry_id}",
        )
    enqueue_actions(write_actions(release, specs))


def resolved(release: Release, incident: Incident) -> None:
    facts = facts_for(
        release,
        outcome="info",
        headline=f"Sentry resolved: {incident.title or 'alert'}",
        reasons=(incident.description,) if incident.description else (),
    )
    specs = list(slack_spec(release, facts, key=f"slack:{release.pk}:resolve:incident-{incident.sentry_id}"))
    if incident.paged:
        specs += resolve_spec(release, f"resolve:incident-{incident.sentry_id}")
    enqueue_actions(write_actions(release, specs))
