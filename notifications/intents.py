"""What to tell whom: Slack messages and PagerDuty events as outbox intents.

The one interface the workflows use to notify: they build ``Facts`` with ``facts_for`` and get
back ``ActionSpec`` rows to write with their decision; ``notifications/delivery.py`` sends them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from notifications.messages import Facts, admin_url, evidence, sentry_release_url, verdict_message
from releases.core.outbox import ActionSpec, next_key
from releases.models import Action, Project, Release


def facts_for(
    release: Release,
    *,
    outcome: str,
    headline: str,
    reasons: tuple[str, ...] = (),
    figures: dict[str, Any] | None = None,
) -> Facts:
    project = release.project
    figures = figures or {}
    return Facts(
        project=project.name,
        release=release.version or release.deployment_id,
        deployment_id=release.deployment_id,
        outcome=outcome,
        headline=headline,
        reasons=reasons,
        sessions=figures.get("sessions", release.sessions),
        crashed=figures.get("crashed", release.crashed),
        crash_free_rate=figures.get("crash_free_rate", release.crash_free_rate),
        threshold=figures.get("threshold", project.crash_free_threshold),
        elapsed=figures.get("elapsed", release.elapsed()),
        evidence=evidence(figures, outcome),
        sentry_url=sentry_release_url(project.sentry_org, release.version, project.sentry_query_project),
        vercel_url=release.inspector_url,
        admin_url=admin_url(release.pk),
        dry_run=project.dry_run,
    )


def slack_spec(release: Release, facts: Facts, key: str = "") -> list[ActionSpec]:
    channel = release.project.slack_channel
    if not channel:
        return []
    text, blocks = verdict_message(facts)
    return [
        ActionSpec(
            kind=Action.Kind.SLACK,
            key=key or next_key(release, Action.Kind.SLACK),
            payload={"channel": channel, "text": text, "blocks": blocks},
        )
    ]


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
