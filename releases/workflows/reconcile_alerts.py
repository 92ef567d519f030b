"""Ask Sentry which metric alerts are open, and act on any whose webhook never reached us.

Sentry sends a metric-alert webhook once and never retries it: one lost while Gatekeeper was
down, unreachable or refusing would leave a crashing release live until its bake watch (if any)
caught it. So every few minutes, and after an outage, the open incidents of the mapped projects
are read (docs/vendor-apis.md §3.6) and each one not seen before goes through the same decision
as its webhook (``alert_rollback.on_metric_alert``), under the same delivery id, so an incident
seen both ways is handled once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict

from notifications.messages import sentry_web_url
from releases.core.errors import ProviderError
from releases.integrations import clients
from releases.integrations.sentry.incidents import OpenIncident
from releases.models import Project, WebhookDelivery
from releases.workflows.alert_rollback import Alert, decide_once

logger = logging.getLogger(__name__)


def reconcile() -> dict[str, int]:
    """One pass over every organisation with mapped projects; a Sentry failure skips that one."""
    counts = {"orgs": 0, "open": 0, "acted": 0, "known": 0, "not_crashes": 0, "failed": 0}
    by_org: dict[str, list[str]] = defaultdict(list)
    for project in Project.objects.exclude(sentry_org="").exclude(sentry_project=""):
        ident = project.sentry_query_project
        if ident.isdigit():  # a slug never resolved to its id: the incidents list takes ids only
            by_org[project.sentry_org].append(ident)
    client = clients.sentry()
    for org, ids in sorted(by_org.items()):
        counts["orgs"] += 1
        try:
            incidents = client.open_incidents(org, sorted(set(ids)))
        except ProviderError as exc:
            counts["failed"] += 1
            logger.warning("sentry.reconcile.failed", extra={"org": org, "error": str(exc)})
            continue
        for incident in incidents:
            counts["open"] += 1
            if not incident.action or not incident.measures_crashes:
                counts["not_crashes"] += 1
                continue
            counts["acted" if _act(org, incident) else "known"] += 1
    if counts["acted"] or counts["failed"]:
        logger.info("sentry.reconcile", extra=counts)
    return counts


def alert_for(org: str, incident: OpenIncident) -> Alert:
    return Alert(
        action=incident.action,
        sentry_id=incident.id,
        identifier=incident.identifier,
        title=incident.title or incident.rule_name,
        projects=incident.projects,
        started_at=incident.started_at,
        environment=incident.environment,
        query=incident.query,
        description=f"{incident.title or incident.rule_name}: open in Sentry, its webhook never arrived",
        web_url=sentry_web_url(org, f"alerts/{incident.identifier or incident.id}/"),
    )


def _act(org: str, incident: OpenIncident) -> bool:
    """Whether this pass decided the incident (False: its webhook or an earlier pass did)."""
    alert = alert_for(org, incident)
    if WebhookDelivery.objects.filter(source="sentry", delivery_id=alert.delivery_id).exists():
        return False
    record = {
        **asdict(incident),
        "started_at": incident.started_at.isoformat() if incident.started_at else None,
    }
    payload = {"reconciled_from": "sentry incidents", "org": org, "incident": record}
    outcome = decide_once(alert, payload, note="found open in Sentry; no webhook had arrived")
    if outcome is None:  # its webhook arrived while we were deciding
        return False
    logger.info(
        "sentry.reconcile.acted",
        extra={"org": org, "incident": incident.id, "action": alert.action, "outcome": outcome.status},
    )
    return True
