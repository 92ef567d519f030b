"""PostHog query API (docs/vendor-apis.md §6.2): ``POST /api/projects/{id}/query/`` with HogQL.

Exception events come from streams registered through the control API: per project and one
event property value (``$app_version = 1.4.2``), a rate per minute in phases. Counts are
deterministic like the Sentry sessions (traffic.py): within a phase ``floor(per_minute / 60 *
elapsed)``, and a window's count is a difference of cumulatives.

Errors are ``{"type", "code", "detail", "attr"}``; a 429 is ``throttled_error`` with
``Retry-After`` seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator import hogql
from simulator.service import Route, Service, resolve, route
from simulator.wire import (
    ControlError,
    Request,
    Response,
    as_number,
    iso_ms,
    json_response,
    require_text,
    start_stop,
)

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.state import Simulator

EXCEPTION_EVENT = "$exception"
DEFAULT_LIMIT = 100
REFRESH = (
    "blocking",
    "async",
    "force_blocking",
    "force_async",
    "force_cache",
    "lazy_async",
    "async_except_on_cache_miss",
)
# (type, code) of DRF's exceptions as PostHog renders them, for injected statuses.
_ERRORS = {
    400: ("validation_error", "invalid_input", "Invalid input."),
    401: ("authentication_error", "not_authenticated", "Authentication credentials were not provided."),
    403: ("authentication_error", "permission_denied", "You do not have permission to perform this action."),
    404: ("invalid_request", "not_found", "Not found."),
    409: ("invalid_request", "conflict", "Conflict."),
}


def posthog_error(status: int, kind: str, code: str, detail: str, attr: str | None = None) -> Response:
    return json_response(status, {"type": kind, "code": code, "detail": detail, "attr": attr})


def invalid(detail: str) -> Response:
    return posthog_error(400, "validation_error", "invalid_input", detail)


@dataclass
class RatePhase:
    at: float
    per_minute: float
    stop: float | None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "per_minute": self.per_minute, "stop": self.stop}


@dataclass
class Stream:
    project_id: int
    property: str
    value: str
    phases: list[RatePhase] = field(default_factory=list)

    def cumulative(self, t: float) -> int:
        """Exception events before ``t``: each phase accrues from its start until the next
        phase starts or its own stop."""
        total = 0
        phases = sorted(self.phases, key=lambda p: p.at)
        for index, phase in enumerate(phases):
            end = phases[index + 1].at if index + 1 < len(phases) else math.inf
            if phase.stop is not None:
                end = min(end, phase.stop)
            total += math.floor(phase.per_minute / 60.0 * max(0.0, min(t, end) - phase.at))
        return total

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "property": self.property,
            "value": self.value,
            "phases": [p.to_json() for p in sorted(self.phases, key=lambda p: p.at)],
            "so_far": self.cumulative(now),
        }


class PostHogService(Service):
    name = "posthog"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.streams: dict[tuple[int, str, str], Stream] = {}
        self.routes: list[Route] = [
            route("POST", r"/api/projects/(?P<project>[^/]+)/query/?", self.query),
        ]

    def reset(self) -> None:
        self.streams.clear()

    # --- plumbing ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        token = request.bearer()
        if token is None:
            return posthog_error(401, *_ERRORS[401])
        required = self.sim.required_token("posthog")
        if required is not None and token != required:
            return posthog_error(
                401, "authentication_error", "invalid_personal_api_key", "Invalid Personal API key."
            )
        found = resolve(self.routes, request)
        if found is None:
            return posthog_error(404, "invalid_request", "not_found", "Not found.")
        if isinstance(found, str):
            return posthog_error(
                405, "invalid_request", "method_not_allowed", f'Method "{request.method}" not allowed.'
            )
        handler, args = found
        with self.sim.lock:
            return handler(request, args)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            after = fault.retry_after if fault.retry_after is not None else fault.reset_after
            wait = max(1, math.ceil(after if after is not None else 1.0))
            unit = "second" if wait == 1 else "seconds"
            detail = f"Request was throttled. Expected available in {wait} {unit}."
            response = posthog_error(429, "throttled_error", "throttled", detail)
            response.headers["Retry-After"] = str(wait)
        elif fault.kind == "timeout":
            response = posthog_error(504, "server_error", "error", "A server error occurred.")
        else:
            status = fault.status or 503
            kind, code, message = _ERRORS.get(status, ("server_error", "error", "A server error occurred."))
            response = posthog_error(status, kind, code, message)
        if fault.empty_body:
            response.body = b""
            response.headers.pop("Content-Type", None)
        return response

    # --- the query -----------------------------------------------------------------------------

    def query(self, request: Request, args: dict[str, str]) -> Response:
        if not re.fullmatch(r"\d+", args["project"]):
            return posthog_error(404, "invalid_request", "not_found", "Not found.")
        project_id = int(args["project"])
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as bad:
            return posthog_error(400, "validation_error", "parse_error", f"JSON parse error - {bad}")
        if not isinstance(body, dict):
            return invalid("The request body must be a JSON object.")
        spec = body.get("query")
        if not isinstance(spec, dict):
            return invalid("'query' is required and must be an object with a 'kind'.")
        kind = spec.get("kind")
        if kind != "HogQLQuery":
            return invalid(f"Unsupported query kind {kind!r}: the simulator answers HogQLQuery only.")
        refresh = body.get("refresh", "blocking")
        if refresh not in REFRESH:
            return invalid(f"'refresh' must be one of: {', '.join(REFRESH)}")
        text = spec.get("query")
        if not isinstance(text, str):
            return invalid("HogQLQuery.query: a string is required.")
        try:
            parsed = hogql.parse(text)
        except hogql.HogQLError as bad:
            return invalid(str(bad))
        now = self.sim.now()
        count = self.count(project_id, parsed, now)
        limit = parsed.limit if parsed.limit is not None else DEFAULT_LIMIT
        printed = text.strip().rstrip(";").rstrip()
        if parsed.limit is None:
            printed += f" LIMIT {DEFAULT_LIMIT}"
        return json_response(
            200,
            {
                "results": [[count]] if limit > 0 else [],
                "columns": [parsed.column],
                "types": ["UInt64"],
                "hogql": printed,
                "hasMore": False,
                "limit": limit,
                "offset": 0,
                "is_cached": False,
                "last_refresh": iso_ms(now),
                "next_allowed_client_refresh": iso_ms(now + 60),
                "timezone": "UTC",
                "modifiers": {},
                "query": text,
                "error": None,
                "timings": [{"k": "./query", "t": 0.001}],
            },
        )

    def count(self, project_id: int, parsed: hogql.CountQuery, now: float) -> int:
        if parsed.event is not None and parsed.event != EXCEPTION_EVENT:
            return 0  # only exception events are simulated
        since = now - parsed.window_seconds if parsed.window_seconds is not None else -math.inf
        total = 0
        for stream in self.streams.values():
            wanted = all((stream.property, stream.value) == pair for pair in parsed.properties)
            if stream.project_id != project_id or not wanted:
                continue
            total += stream.cumulative(now) - stream.cumulative(since)
        return total

    # --- control -------------------------------------------------------------------------------

    def add_stream(self, body: dict[str, Any]) -> Stream:
        raw_id = body.get("project_id")
        if isinstance(raw_id, bool) or not re.fullmatch(r"\d+", str(raw_id if raw_id is not None else "")):
            raise ControlError("project_id: a numeric PostHog project id")
        prop, value = require_text(body, "property"), body.get("value")
        if not isinstance(value, str):
            raise ControlError("value: a string (the property value to match)")
        per_minute = as_number(body, "per_minute")
        if per_minute is None or per_minute < 0:
            raise ControlError("per_minute: a non-negative number")
        with self.sim.lock:
            start, stop = start_stop(body, self.sim.now())
            key = (int(str(raw_id)), prop, value)
            stream = self.streams.get(key)
            if stream is None:
                stream = self.streams[key] = Stream(*key)
            # Same key adds a phase: from `start` the new rate replaces the earlier one.
            stream.phases.append(RatePhase(start, per_minute, stop))
            return stream

    def view(self) -> list[dict[str, Any]]:
        with self.sim.lock:
            now = self.sim.now()
            return [stream.to_json(now) for stream in self.streams.values()]
