"""What a Sentry integration webhook means to Gatekeeper (api-contracts.md §3.5).

Dispatch is on ``Sentry-Hook-Resource`` through a table: ``metric_alert`` is handled, the other
resources Sentry sends are acknowledged and ignored, anything else is a 400. Sentry gives each
delivery a fresh Request-ID, so repeats are recognised by the incident and the action instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from releases import alerts
from releases.decisions import live_and_known_good
from releases.models import Action, Incident, Project, Release, ReleaseEvent, WebhookDelivery
from releases.vercel_events import BadPayload, Outcome

SENTRY = "sentry"
IGNORED_RESOURCES = frozenset(
    {"installation", "event_alert", "issue", "error", "comment", "seer", "preprod_artifact"}
)
ACTIONS = frozenset({"critical", "warning", "resolved"})
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


def _text(value: Any, field: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (required and str(value) == ""):
        raise BadPayload(f"{field}: must be a string")
    return str(value)


def read_metric_alert(data: dict[str, Any]) -> Alert:
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:  # a list or object is unhashable
        raise BadPayload(f"action: must be one of {', '.join(sorted(ACTIONS))}")
    body = data.get("data")
    if not isinstance(body, dict) or not isinstance(body.get("metric_alert"), dict):
        raise BadPayload("data.metric_alert: must be an object")
    incident = body["metric_alert"]
    rule = incident.get("alert_rule") if incident.get("alert_rule") is not None else {}
    if not isinstance(rule, dict):
        raise BadPayload("data.metric_alert.alert_rule: must be an object")
    projects = incident.get("projects", rule.get("projects"))
    if not isinstance(projects, list) or not projects or not all(isinstance(p, str) for p in projects):
        raise BadPayload("data.metric_alert.projects: must be a list of project slugs")
    started_raw = incident.get("date_started")
    started = None
    if started_raw is not None:
        try:
            started = parse_datetime(started_raw) if isinstance(started_raw, str) else None
        except ValueError:  # well formed but impossible, e.g. month 13: a 400, not a 500
            started = None
        if started is None or started.tzinfo is None:
            raise BadPayload("data.metric_alert.date_started: must be an ISO-8601 time with a zone")
    environment = rule.get("environment")
    if environment is not None and not isinstance(environment, str):
        raise BadPayload("data.metric_alert.alert_rule.environment: must be a string or null")
    query = rule.get("query") or ""
    if not isinstance(query, str):
        raise BadPayload("data.metric_alert.alert_rule.query: must be a string")
    web_url = body.get("web_url") or ""
    if not isinstance(web_url, str) or (web_url and not web_url.startswith(("https://", "http://"))):
        raise BadPayload("data.web_url: must be a URL")
    return Alert(
        action=action,
        sentry_id=_text(incident.get("id"), "data.metric_alert.id")[:100],
        identifier=_text(incident.get("identifier"), "data.metric_alert.identifier", required=False)[:100],
        title=_text(incident.get("title"), "data.metric_alert.title", required=False)[:500],
        projects=tuple(projects),
        started_at=started,
        environment=environment or None,
        query=query,
        description=_text(body.get("description_text"), "data.description_text", required=False)[:2000],
        web_url=web_url[:500],
    )


def _project_for(alert: Alert) -> Project | None:
    # In SQL, as the ORM spends longer building this query than PostgreSQL answering it.
    slugs = list(alert.projects)
    marks = ", ".join(["%s"] * len(slugs))
    candidates = list(
        Project.objects.raw(
            f"SELECT * FROM {Project._meta.db_table} WHERE sentry_project IN ({marks}) ORDER BY id",  # noqa: S608
            slugs,
        )
    )
    if alert.environment:
        candidates = [p for p in candidates if p.sentry_environment in ("", alert.environment)]
    if len(candidates) > 1 and alert.org_slug:
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
        alerts.notify_only(release, incident, page=mode == "page")
        return opened(
            paged=pages and mode == "page",
            accepted=True,
            note=f"warning: {'paged and ' if mode == 'page' else ''}told Slack",
        )
    cause = f"Sentry {alert.action} alert: {alert.description or alert.title}".strip()
    done = alerts.rollback_live(release, cause=cause, actor=SENTRY, incident=incident, target=target)
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
        values.update(paged=True, dedup_key=alerts.dedup_key(incident.project, release))
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
    alerts.resolved(release, incident)
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


HANDLERS: dict[str, Callable[[Alert, WebhookDelivery], Outcome]] = {"metric_alert": on_metric_alert}
READERS: dict[str, Callable[[dict[str, Any]], Alert]] = {"metric_alert": read_metric_alert}
