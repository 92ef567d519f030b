"""PagerDuty Events API v2 (docs/vendor-apis.md §4): alert events and change events.

No auth header: the routing key in the body is the credential, which is why only its last
four characters are ever shown back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.service import Service
from simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.state import Simulator

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
MAX_BYTES = 512 * 1024
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


def invalid(errors: list[str]) -> Response:
    return json_response(
        400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    )


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def validate_alert(event: dict[str, Any]) -> list[str]:
    errors = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup_key, str) and len(dedup_key) > MAX_DEDUP_KEY:
        errors.append(f"'dedup_key' is too long (must be at most {MAX_DEDUP_KEY} characters)")
    if action in ("acknowledge", "resolve") and _blank(dedup_key):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        for key in ("summary", "source", "severity"):
            if _blank(payload.get(key)):
                errors.append(f"'payload.{key}' is missing or blank")
        if isinstance(payload.get("summary"), str) and len(payload["summary"]) > MAX_SUMMARY:
            errors.append(f"'payload.summary' is too long (must be at most {MAX_SUMMARY} characters)")
        severity = payload.get("severity")
        if not _blank(severity) and severity not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
    return errors


def validate_change(event: dict[str, Any]) -> list[str]:
    errors = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    payload = event.get("payload")
    if not isinstance(payload, dict) or _blank(payload.get("summary")):
        errors.append("'payload.summary' is missing or blank")
    elif len(payload["summary"]) > MAX_SUMMARY:
        errors.append(f"'payload.summary' is too long (must be at most {MAX_SUMMARY} characters)")
    return errors


@dataclass
class Incident:
    routing_key: str
    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    opened_at: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "routing_key_suffix": self.routing_key[-4:],
            "dedup_key": self.dedup_key,
            "status": self.status,
            "opened_at": self.opened_at,
            "events": self.events,
        }


class PagerDutyService(Service):
    name = "pagerduty"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.incidents: list[Incident] = []
        self.changes: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.incidents, self.changes, self.dropped = [], [], []

    def handle(self, request: Request) -> Response:
        if request.path not in ("/v2/enqueue", "/v2/change/enqueue"):
            return json_response(404, {"status": "not found", "message": "Not Found", "errors": []})
        if request.method != "POST":
            return json_response(
                405, {"status": "method not allowed", "message": "Method Not Allowed", "errors": []}
            )
        if len(request.body) > MAX_BYTES:
            return invalid(["Event object exceeds the maximum size of 512 KB"])
        try:
            event = request.json()
        except (ValueError, UnicodeDecodeError):
            return invalid(["Event object is not valid JSON"])
        if not isinstance(event, dict):
            return invalid(["Event object must be a JSON object"])
        with self.sim.lock:
            if request.path == "/v2/change/enqueue":
                return self.change(event)
            return self.alert(event)

    def change(self, event: dict[str, Any]) -> Response:
        errors = validate_change(event)
        if errors:
            return invalid(errors)
        self.changes.append(_redacted(event, self.sim.now()))
        return json_response(202, {"status": "success", "message": "Change event processed"})

    def alert(self, event: dict[str, Any]) -> Response:
        errors = validate_alert(event)
        if errors:
            return invalid(errors)
        routing_key, action = event["routing_key"], event["event_action"]
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        record = _redacted({**event, "dedup_key": dedup_key}, self.sim.now())
        open_incident = next(
            (
                i
                for i in reversed(self.incidents)
                if (i.routing_key, i.dedup_key) == (routing_key, dedup_key) and i.status != "resolved"
            ),
            None,
        )
        if action == "trigger":
            if open_incident is None:
                # A trigger after a resolve opens a new incident under the same key (§4.1).
                open_incident = Incident(routing_key, dedup_key, "triggered", self.sim.now())
                self.incidents.append(open_incident)
            open_incident.events.append(record)
        elif open_incident is None:
            # Acknowledge/resolve with nothing open is dropped but still accepted (§4.1).
            self.dropped.append(record)
        else:
            open_incident.status = "acknowledged" if action == "acknowledge" else "resolved"
            open_incident.events.append(record)
        return json_response(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            response = json_response(
                429,
                {
                    "status": "throttle event",
                    "message": "Requests for this service are arriving too quickly. Please retry later.",
                },
            )
            if fault.retry_after is not None:  # undocumented for PagerDuty; only when asked
                response.headers["Retry-After"] = str(int(fault.retry_after))
        elif fault.kind == "timeout":
            response = json_response(504, {"status": "timeout", "message": "Gateway Timeout", "errors": []})
        else:
            status = fault.status or 503
            response = json_response(
                status,
                {"status": "server error", "message": "Internal Server Error", "errors": ["injected fault"]},
            )
        if fault.empty_body:
            response.body = b""
            response.headers.pop("Content-Type", None)
        return response

    def view(self) -> dict[str, Any]:
        with self.sim.lock:
            return {
                "incidents": [i.to_json() for i in self.incidents],
                "change_events": list(self.changes),
                "dropped_events": list(self.dropped),
            }


def _redacted(event: dict[str, Any], received_at: float) -> dict[str, Any]:
    clean = {k: v for k, v in event.items() if k != "routing_key"}
    routing_key = event.get("routing_key")
    clean["routing_key_suffix"] = routing_key[-4:] if isinstance(routing_key, str) else None
    clean["received_at"] = received_at
    return clean
