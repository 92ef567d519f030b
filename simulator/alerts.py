"""Sentry metric-alert webhooks to Gatekeeper (docs/vendor-apis.md §3.5).

Signed like Sentry's integration platform: HMAC-SHA256 of the exact compact-JSON body with the
client secret; the timestamp header is sent but, as in Sentry, not signed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from simulator.sessions import SessionsError, parse_date
from simulator.webhooks import SENTRY_TIMEOUT, check_tamper, sentry_signature, target_url
from simulator.wire import ControlError, as_number, as_text, require_text

if TYPE_CHECKING:
    from simulator.state import Simulator

ACTIONS = {"critical": 20, "warning": 10, "resolved": 2}
TAMPERING = ("bad_signature", "no_signature", "stale_timestamp")


def _microseconds(epoch: float) -> str:
    # Sentry serialises incident times with microseconds (§3.5 example).
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(value: Any, default: float) -> float:
    """Epoch seconds or an ISO-8601 string (what a test has to hand)."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return parse_date(value)
        except SessionsError:
            raise ControlError("date_started: epoch seconds or ISO-8601") from None
    return as_number({"date_started": value}, "date_started") or default


def alert_body(body: dict[str, Any], now: float) -> dict[str, Any]:
    action = require_text(body, "action")
    if action not in ACTIONS:
        raise ControlError(f"action: one of {', '.join(ACTIONS)}")
    projects = body.get("projects") or [require_text(body, "project")]
    if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
        raise ControlError("projects: a list of project slugs")
    started = _epoch(body.get("date_started"), now - 180)
    rule_id = str(body.get("alert_rule_id", "341"))
    rule_name = as_text(body, "alert_rule_name") or "Crash-free sessions below 99.5%"
    org = as_text(body, "org") or "acme"
    incident_id = str(body.get("incident_id", "812"))
    rule = {
        "id": rule_id,
        "name": rule_name,
        "organization_id": str(body.get("organization_id", "1203")),
        "dataset": "metrics",
        "aggregate": as_text(body, "aggregate")
        or "percentage(sessions_crashed, sessions) AS _crash_rate_alert_aggregate",
        "query": as_text(body, "query") or "",
        "environment": as_text(body, "environment") or "production",
        "time_window": 5,
        "resolution": 1,
        "threshold_type": 0,
        "resolve_threshold": None,
        "threshold_period": 1,
        "projects": projects,
        "include_all_projects": False,
        "status": 0,
        "created_by": None,
        "date_created": "2025-11-02T08:00:00.000000Z",
        "date_modified": "2025-11-02T08:00:00.000000Z",
        "triggers": [],
    }
    incident = {
        "id": incident_id,
        "identifier": str(body.get("identifier", "57")),
        "organization_id": rule["organization_id"],
        "projects": projects,
        "title": rule_name,
        "status": ACTIONS[action],
        "status_method": 3,
        "type": 2,
        "date_started": _microseconds(started),
        "date_detected": _microseconds(started + 60),
        "date_created": _microseconds(started + 62),
        "date_closed": _microseconds(now) if action == "resolved" else None,
        "alert_rule": rule,
    }
    return {
        "action": action,
        "installation": {
            "uuid": as_text(body, "installation_uuid") or "7a1c9e52-3b4d-4f60-9a18-2c5e7d0b4f31"
        },
        "data": {
            "metric_alert": incident,
            "description_text": as_text(body, "description_text")
            or "3% crashed sessions in the last 5 minutes",
            "description_title": f"{action.capitalize()}: {rule_name}",
            "web_url": f"https://{org}.sentry.io/alerts/rules/details/{rule_id}/",
        },
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
    }


def send_alert(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    tamper = body.get("tamper")
    if tamper is not None and tamper not in TAMPERING:
        raise ControlError(f"tamper: one of {', '.join(TAMPERING)}")
    check_tamper(None if tamper == "stale_timestamp" else tamper)
    repeat = body.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100:
        raise ControlError("repeat: an integer from 1 to 100")
    now = sim.now()
    payload = alert_body(body, now)
    # The incident exists in Sentry whether or not its webhook arrives anywhere.
    sim.sentry_incidents.record(as_text(body, "org") or "acme", payload["data"]["metric_alert"])
    deliver = body.get("deliver", True)
    if not isinstance(deliver, bool):
        raise ControlError("deliver: true or false")
    if not deliver:
        return {"deliveries": [], "incident": payload["data"]["metric_alert"]["id"]}
    url = target_url(sim, body.get("target"), "/webhooks/sentry/")
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    request_id = uuid.uuid4().hex
    timestamp = int(now - 3600) if tamper == "stale_timestamp" else int(now)
    headers = {
        "Content-Type": "application/json",
        "Request-ID": request_id,
        "Sentry-Hook-Resource": "metric_alert",
        "Sentry-Hook-Timestamp": str(timestamp),
    }
    secret = sim.options.sentry_webhook_secret
    if tamper == "bad_signature":
        headers["Sentry-Hook-Signature"] = sentry_signature(raw, (secret or "") + "-not-the-secret")
    elif tamper != "no_signature" and secret:
        headers["Sentry-Hook-Signature"] = sentry_signature(raw, secret)
    timeout = as_number(body, "timeout", SENTRY_TIMEOUT) or SENTRY_TIMEOUT
    deliveries = sim.webhooks.deliver(
        url=url,
        body=raw,
        headers=headers,
        event_id=request_id,
        event_type=f"metric_alert.{body['action']}",
        timeout=timeout,
        repeat=repeat,
        parallel=bool(body.get("parallel", False)),
    )
    return {"deliveries": [d.summary() for d in deliveries]}
