"""A Sentry metric alert about production: is it about the release live now, and what to do.

Critical: roll production back to the known-good deployment (``releases/workflows/rollback.py``),
page and tell. Warning: per the project's ``on_warning``. Resolved: resolve the page, say so.
An alert that started before the live release went live is stale: recorded, nothing done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import Q

from notifications.intents import dedup_key, facts_for, page_spec, resolve_spec, slack_spec
from releases.core.deliveries import Outcome
from releases.core.outbox import enqueue_actions, write_actions
from releases.core.production import live_and_known_good, lock_project
from releases.models import Action, Incident, Project, Release, ReleaseEvent, WebhookDelivery
from releases.workflows.rollback import links_for, rollback_live

SENTRY = "sentry"

# Sentry's, Vercel's and our clocks differ a little; an incident within this of go-live is not stale.
CLOCK_SKEW = timedelta(seconds=5)

# `release:x` names a release; `!release:x` excludes one, and `latest` is Sentry's alias, not a name.
RELEASE_IN_QUERY = re.compile(r"""(?<![!\w])release:(?:"([^"]+)"|(\S+))""")
RELEASE_ALIASES = frozenset({"latest"})


@dataclass(frozen=True)
class Alert:
    action: str
    sentry_id: str
    identifier: str
    title: str
    projects: tuple[str, ...]
    started_at: datetime | None
    environment: str | None
    query: str
    description: str
    web_url: str

    @property
    def delivery_id(self) -> str:
        return f"metric_alert:{self.sentry_id}:{self.action}"

    @property
    def org_slug(self) -> str:
        """The organisation, read from the incident's link (the payload carries only its number)."""
        parts = urlsplit(self.web_url)
        match = re.search(r"/organizations/([^/]+)/", parts.path)
        if match:
            return match.group(1)
        host = parts.netloc.split(":")[0]
        return host.split(".", 1)[0] if host.endswith(".sentry.io") and host.count(".") >= 2 else ""


def _project_for(alert: Alert) -> Project | None:
    # Alerts name projects by slug: the one Sentry gave when the project was resolved, else the
    # one configured (a numeric id configured and never resolved cannot match).
    named = Q(sentry_project_slug__in=alert.projects) | Q(
        sentry_project_slug="", sentry_project__in=alert.projects
    )
    candidates = list(Project.objects.filter(named).order_by("id"))
    if alert.environment:
        candidates = [p for p in candidates if p.sentry_environment in ("", alert.environment)]
    if alert.org_slug:  # a slug is unique only within its organisation
        candidates = [p for p in candidates if p.sentry_org == alert.org_slug]
    return candidates[0] if len(candidates) == 1 else None


def _stale_reason(alert: Alert, project: Project, release: Release) -> str:
    named = {a or b for a, b in RELEASE_IN_QUERY.findall(alert.query)} - RELEASE_ALIASES
    if named and release.version not in named:
        return f"the alert is about release {', '.join(sorted(named))}, not the live {release.version}"
    went_live = project.live_since or release.promoted_at
    if alert.started_at is not None and went_live is not None and alert.started_at < went_live - CLOCK_SKEW:
        return (
            f"the incident started at {alert.started_at:%Y-%m-%d %H:%M:%S} UTC, before "
            f"{release.version or release.deployment_id} went live at {went_live:%Y-%m-%d %H:%M:%S} UTC"
        )
    return ""


def decide_once(alert: Alert, payload: dict[str, Any], note: str = "") -> Outcome | None:
    """Record the alert's delivery and decide it, in one transaction; None when this incident and
    action were recorded before: a repeat, or its webhook and the reconciliation both.

    ``note`` is added to the delivery's own (where the alert came from, when not a webhook)."""
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                source=SENTRY,
                delivery_id=alert.delivery_id,
                event_type=f"metric_alert.{alert.action}",
                outcome=WebhookDelivery.Outcome.IGNORED,
                payload=payload,
            )
            outcome = on_metric_alert(alert, delivery)
            if note:
                WebhookDelivery.objects.filter(pk=delivery.pk).update(note=f"{outcome.detail} ({note})")
    except IntegrityError:
        return None
    return outcome


def on_metric_alert(alert: Alert, delivery: WebhookDelivery) -> Outcome:
    """Decide, and record the incident, inside the request's transaction; its actions are
    published when it commits."""
    project = _project_for(alert)
    if project is None:
        return _ignore(
            delivery,
            f"no single project for Sentry project(s) {', '.join(alert.projects)}"
            f"{' in ' + alert.environment if alert.environment else ''}",
        )
    delivery.project = project
    # The project before any of its releases' rows (core/production.py, lock_project): a rollback
    # below writes the live release, and this transaction's rows that name the project are
    # checked against it at commit, while a worker marking a release live holds the project
    # and waits for that release.
    lock_project(project.pk)
    if alert.action == "resolved":
        incident = _incident(project, alert)
        incident.description = alert.description or incident.description
        return _resolved(alert, incident, delivery)
    incident = Incident(
        project=project,
        sentry_id=alert.sentry_id,
        identifier=alert.identifier,
        title=alert.title,
        started_at=alert.started_at,
        web_url=alert.web_url,
        description=alert.description,
    )
    release, target = live_and_known_good(project)
    if release is None:
        return _recorded(
            delivery, incident, Incident.Status.UNMATCHED, "no live release known for the project"
        )
    release.project = project  # already loaded: saves a query on the way to the rollback
    stale = _stale_reason(alert, project, release)
    if stale:
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.NOTE,
            actor=SENTRY,
            reason=f"stale alert ignored: {stale}",
            data={"incident": alert.sentry_id, "action": alert.action},
        )
        return _recorded(delivery, incident, Incident.Status.STALE, stale, release, note=f"stale: {stale}")
    mode = "rollback" if alert.action == "critical" else project.on_warning
    pages = bool(project.pagerduty_routing_key_env)
    # An alert about the live release: the incident is open, whatever is done about it.
    opened = partial(_recorded, delivery, incident, Incident.Status.OPEN, "", release, severity=alert.action)
    if mode == "ignore":
        return opened(note="warning ignored by the project's on_warning")
    if mode in ("notify", "page"):
        notify_only(release, incident, page=mode == "page")
        return opened(
            paged=pages and mode == "page",
            accepted=True,
            note=f"warning: {'paged and ' if mode == 'page' else ''}told Slack",
        )
    cause = f"Sentry {alert.action} alert: {alert.description or alert.title}".strip()
    done = rollback_live(release, cause=cause, actor=SENTRY, incident=incident, target=target)
    note = {
        "rolling-back": "rolling back",
        "no-target": "paged: no known-good target",
        "already": f"release is {release.state}: nothing more to do",
    }[done]
    return opened(paged=pages and done != "already", accepted=True, note=note)


def _recorded(
    delivery: WebhookDelivery,
    incident: Incident,
    status: str,
    reason: str,
    release: Release | None = None,
    *,
    severity: str = "",
    paged: bool = False,
    accepted: bool = False,
    note: str = "",
) -> Outcome:
    """Record the incident and what became of this delivery, with the decision (same transaction)."""
    note = note or reason
    values: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "release": release,
        "identifier": incident.identifier,
        "title": incident.title,
        "started_at": incident.started_at,
        "web_url": incident.web_url,
        "description": incident.description,
    }
    if severity:
        values["severity"] = severity
    if paged and release is not None:
        values.update(paged=True, dedup_key=dedup_key(incident.project, release))
    # One INSERT ... ON CONFLICT DO UPDATE: a warning may have opened the incident already.
    Incident.objects.bulk_create(
        [Incident(project=incident.project, sentry_id=incident.sentry_id, **values)],
        update_conflicts=True,
        unique_fields=["project", "sentry_id"],
        update_fields=[*values, "updated_at"],
    )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        outcome=WebhookDelivery.Outcome.ACCEPTED if accepted else WebhookDelivery.Outcome.IGNORED,
        note=note,
        project=incident.project,
        release=release,
    )
    return Outcome("accepted" if accepted else "ignored", note, accepted=accepted)


def _resolved(alert: Alert, incident: Incident, delivery: WebhookDelivery) -> Outcome:
    release = incident.release
    previous = incident.status
    incident.status = Incident.Status.RESOLVED
    incident.save(update_fields=["status", "description", "updated_at"])
    ignored = incident.severity == "warning" and incident.project.on_warning == "ignore"
    if release is None or ignored or previous in (Incident.Status.STALE, Incident.Status.UNMATCHED):
        return _ignore(
            delivery, f"resolved an incident Gatekeeper did not act on ({previous})", incident.project
        )
    delivery.release = release
    if not incident.paged:
        # Paged, even if the bookkeeping after that decision was lost: the page's own row says so.
        incident.paged = Action.objects.filter(
            release=release, kind=Action.Kind.PAGERDUTY, key__contains=f":incident-{incident.sentry_id}"
        ).exists()
    resolved(release, incident)
    return _accept(delivery, "resolved" + (": PagerDuty resolve sent" if incident.paged else ""))


def _incident(project: Project, alert: Alert) -> Incident:
    """The incident's row; a first alert creates it with one INSERT (the rollback's hot path)."""
    if alert.action != "resolved":
        try:
            with transaction.atomic():
                return Incident.objects.create(
                    project=project,
                    sentry_id=alert.sentry_id,
                    identifier=alert.identifier,
                    title=alert.title,
                    started_at=alert.started_at,
                    web_url=alert.web_url,
                )
        except IntegrityError:
            pass  # seen before: a warning before this critical, or the other way round
    incident, _ = Incident.objects.get_or_create(
        project=project,
        sentry_id=alert.sentry_id,
        defaults={
            "identifier": alert.identifier,
            "title": alert.title,
            "started_at": alert.started_at,
            "web_url": alert.web_url,
        },
    )
    return incident


def _accept(delivery: WebhookDelivery, note: str) -> Outcome:
    delivery.outcome, delivery.note = WebhookDelivery.Outcome.ACCEPTED, note
    delivery.save(update_fields=["outcome", "note", "project", "release"])
    return Outcome("accepted", note, accepted=True)


def _ignore(delivery: WebhookDelivery, note: str, project: Project | None = None) -> Outcome:
    delivery.note, delivery.project = note, project or delivery.project
    delivery.save(update_fields=["note", "project", "release"])
    return Outcome("ignored", note)


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
            links=links_for(release, incident),
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
