"""Sentry's metric-alert incidents: what an alert sent through /_sim/sentry/alert leaves behind,
and ``GET /api/0/organizations/{org}/incidents/`` that lists them (docs/vendor-apis.md §3.6).

An alert's webhook can be lost (``deliver: false`` on the control call), as Sentry's are when
the receiver is down: the incident stays open here, where Gatekeeper's reconciliation finds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from simulator.wire import Request

if TYPE_CHECKING:
    from simulator.state import Simulator

CLOSED, WARNING, CRITICAL = 2, 10, 20
STATUS_FILTERS = {
    "open": lambda status: status != CLOSED,
    "closed": lambda status: status == CLOSED,
    "warning": lambda status: status == WARNING,
    "critical": lambda status: status == CRITICAL,
}
DEFAULT_PER_PAGE, MAX_PER_PAGE = 25, 100


class IncidentError(ValueError):
    pass


class IncidentStore:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._incidents: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, org: str, incident: dict[str, Any]) -> None:
        """Keep the incident as the latest webhook described it (snake_case, §3.5)."""
        with self.sim.lock:
            self._incidents[(org, str(incident["id"]))] = incident

    def clear(self) -> None:
        with self.sim.lock:
            self._incidents.clear()

    def listing(
        self, org: str, slugs: set[str] | None, environments: list[str], status: str | None
    ) -> list[dict[str, Any]]:
        """Sentry's order: newest start first."""
        keep = STATUS_FILTERS.get(status or "", lambda _: True)
        with self.sim.lock:
            found = [
                incident
                for (owner, _), incident in self._incidents.items()
                if owner == org
                and keep(incident["status"])
                and (slugs is None or slugs & set(incident["projects"]))
                and (not environments or incident["alert_rule"].get("environment") in environments)
            ]
        found.sort(key=lambda incident: (incident["date_started"], incident["id"]), reverse=True)
        return [camel_cased(incident) for incident in found]


def page(request: Request, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """One page and its Link header, as Sentry's OffsetPaginator cuts them: the cursor reads
    ``<per page>:<page>:<is_prev>``."""
    per_page_raw = (request.query.get("per_page") or [str(DEFAULT_PER_PAGE)])[0]
    if not per_page_raw.isdigit() or not 1 <= int(per_page_raw) <= MAX_PER_PAGE:
        raise IncidentError(f"Invalid per_page parameter. Must be between 1 and {MAX_PER_PAGE}.")
    per_page = int(per_page_raw)
    cursor = (request.query.get("cursor") or [f"{per_page}:0:0"])[0]
    parts = cursor.split(":")
    if len(parts) != 3 or not all(part.lstrip("-").isdigit() for part in parts):
        raise IncidentError("Invalid cursor parameter.")
    number = max(0, int(parts[1]))
    chunk = rows[number * per_page : (number + 1) * per_page]
    split = urlsplit(request.full_path)
    base = f"http://{request.header('host') or 'localhost'}{split.path}"
    pairs = [(k, v) for k, v in parse_qsl(split.query, keep_blank_values=True) if k != "cursor"]
    links = []
    for rel, target, is_prev, results in (
        ("previous", number - 1, 1, number > 0),
        ("next", number + 1, 0, (number + 1) * per_page < len(rows)),
    ):
        token = f"{per_page}:{max(target, 0)}:{is_prev}"
        url = f"{base}?{urlencode([*pairs, ('cursor', token)])}"
        links.append(f'<{url}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{token}"')
    return chunk, ", ".join(links)


def camel_cased(incident: dict[str, Any]) -> dict[str, Any]:
    """The webhook's snake_case incident as the REST API serialises it (IncidentSerializer)."""
    rule = incident["alert_rule"]
    return {
        "id": incident["id"],
        "identifier": incident["identifier"],
        "organizationId": incident["organization_id"],
        "projects": incident["projects"],
        "alertRule": {
            "id": rule["id"],
            "name": rule["name"],
            "organizationId": rule["organization_id"],
            "status": rule["status"],
            "queryType": 2,
            "dataset": rule["dataset"],
            "query": rule["query"],
            "aggregate": rule["aggregate"],
            "thresholdType": rule["threshold_type"],
            "resolveThreshold": rule["resolve_threshold"],
            "timeWindow": rule["time_window"],
            "environment": rule["environment"],
            "resolution": rule["resolution"],
            "thresholdPeriod": rule["threshold_period"],
            "triggers": rule["triggers"],
            "projects": rule["projects"],
            "owner": None,
            "dateModified": rule["date_modified"],
            "dateCreated": rule["date_created"],
            "createdBy": rule["created_by"],
        },
        "activities": None,
        "status": incident["status"],
        "statusMethod": incident["status_method"],
        "type": incident["type"],
        "title": incident["title"],
        "dateStarted": incident["date_started"],
        "dateDetected": incident["date_detected"],
        "dateCreated": incident["date_created"],
        "dateClosed": incident["date_closed"],
    }
