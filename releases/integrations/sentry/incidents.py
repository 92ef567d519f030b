"""Sentry's metric-alert incidents as its incidents list answers them (docs/vendor-apis.md §3.6).

The reconciliation (releases/workflows/reconcile_alerts.py) reads the open ones, so that an
alert whose webhook never reached us (Sentry does not retry) is still acted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from releases.integrations.http import MalformedAnswer, as_dict, as_list

# IncidentStatus in Sentry: OPEN 1, CLOSED 2, WARNING 10, CRITICAL 20.
CRITICAL, WARNING, CLOSED = 20, 10, 2
ACTIONS = {CRITICAL: "critical", WARNING: "warning"}


@dataclass(frozen=True)
class OpenIncident:
    id: str
    identifier: str
    status: int
    title: str
    projects: tuple[str, ...]
    started_at: datetime | None
    rule_id: str
    rule_name: str
    aggregate: str
    query: str
    environment: str | None

    @property
    def action(self) -> str:
        """The webhook action this status is the state of: critical, warning or '' (neither)."""
        return ACTIONS.get(self.status, "")

    @property
    def measures_crashes(self) -> bool:
        """Whether the rule watches crashed sessions or users: what a Gatekeeper rollback is for.

        Sentry writes a crash-rate rule's aggregate as ``percentage(sessions_crashed, sessions)``
        (or the users form) and the newer ones as ``crash_free_rate(session)``."""
        return "crash" in self.aggregate.lower()


def incidents_from(data: Any) -> list[OpenIncident]:
    return [_incident(raw, f"incidents[{index}]") for index, raw in enumerate(as_list(data, "incidents"))]


def _incident(raw: Any, where: str) -> OpenIncident:
    body = as_dict(raw, where)
    rule = body.get("alertRule") if body.get("alertRule") is not None else {}
    rule = as_dict(rule, f"{where}.alertRule")
    ident = body.get("id")
    if isinstance(ident, bool) or not isinstance(ident, str | int) or str(ident) == "":
        raise MalformedAnswer(f"{where}.id: expected a string")
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise MalformedAnswer(f"{where}.status: expected an integer")
    projects = body.get("projects")
    if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
        raise MalformedAnswer(f"{where}.projects: expected a list of slugs")
    started = body.get("dateStarted")
    started_at = parse_datetime(started) if isinstance(started, str) else None
    if started_at is not None and started_at.tzinfo is None:
        started_at = None
    environment = rule.get("environment")
    return OpenIncident(
        id=str(ident)[:100],
        identifier=_text(body.get("identifier"))[:100],
        status=status,
        title=_text(body.get("title"))[:500],
        projects=tuple(projects),
        started_at=started_at,
        rule_id=_text(rule.get("id")),
        rule_name=_text(rule.get("name")),
        aggregate=_text(rule.get("aggregate")),
        query=_text(rule.get("query")),
        environment=environment if isinstance(environment, str) and environment else None,
    )


def _text(value: Any) -> str:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
