"""Datadog metrics query API (docs/vendor-apis.md §6.1): ``GET /api/v1/query`` over registered series.

A series belongs to a tag (``deployment_id:dpl_x``, optionally a metric too) and is a list of
phases registered through the control API, each a constant value from its start until its stop
or until a later phase takes over. A query matches when its ``{...}`` scope holds the tag. The
registered value stands for the whole expression: ``.as_count()``, ``.as_rate()``, rollups and
arithmetic are not evaluated, only checked for shape. Points sit on the series' interval grid
inside ``[from, to]`` and never in the (simulated) future.

Datadog's rate-limit reset is *seconds remaining*, unlike Vercel's and Sentry's epoch seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.service import RateWindow, Route, Service, resolve, route
from simulator.wire import (
    ControlError,
    Request,
    Response,
    as_number,
    as_text,
    json_response,
    require_text,
    start_stop,
)

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.state import Simulator

# The timeseries query limit in Datadog's (older) docs; reported only, faults inject the 429s.
RATE_LIMIT = 1600
RATE_PERIOD = 3600
RATE_NAME = "query"  # the real X-RateLimit-Name for this endpoint is not documented
MAX_POINTS = 1500  # longer ranges are rolled up to a coarser interval, as Datadog does
DEFAULT_INTERVAL = 60
AGGREGATORS = ("avg", "sum", "min", "max", "count")
_NOT_TAG = re.compile(r"[^a-z0-9_:./-]")
# One metric term: [aggregator:]metric{scope}[ by {tags}]
_TERM = re.compile(
    r"(?:(?P<aggr>[a-z0-9]+):)?(?P<metric>[A-Za-z][\w.]*)\s*\{(?P<scope>[^{}]*)\}"
    r"(?:\s*by\s*\{(?P<by>[^{}]*)\})?"
)
# What may surround terms: functions, .as_count(), rollup arguments, arithmetic, numbers.
_GLUE = re.compile(r"[\w\s.,()+\-*/'\"]*")
_SCOPE_SPLIT = re.compile(r"[,\s()]+")


def dd_error(status: int, *messages: str) -> Response:
    return json_response(status, {"errors": list(messages)})


@dataclass(frozen=True)
class MetricQuery:
    text: str
    aggr: str
    metric: str
    scope: str
    tags: frozenset[str]
    group_by: tuple[str, ...]


class QueryError(Exception):
    pass


def parse_query(text: str) -> MetricQuery:
    """The first metric term of a query, its scope's tags and its grouping; QueryError when
    Datadog would not parse it (no ``{...}`` scope, unbalanced braces, stray characters)."""
    query = text.strip()
    if not query:
        raise QueryError("Error parsing query: the query is empty")
    if query.count("{") != query.count("}") or query.count("(") != query.count(")"):
        raise QueryError(f"Error parsing query: unable to parse {query}: unbalanced brackets")
    terms = list(_TERM.finditer(query))
    if not terms:
        raise QueryError(
            f"Error parsing query: unable to parse {query}: Rule 'scope_expr' didn't match; "
            "a metric needs a scope such as {*} or {service:web}"
        )
    braces = sum(2 if term.group("by") is not None else 1 for term in terms)
    glue = _TERM.sub(" ", query)
    if query.count("{") != braces or not _GLUE.fullmatch(glue):
        raise QueryError(f"Error parsing query: unable to parse {query}")
    first = terms[0]
    aggr = first.group("aggr") or "avg"
    if aggr not in AGGREGATORS and not re.fullmatch(r"p\d{1,2}", aggr):
        raise QueryError(f"Error parsing query: unknown aggregator {aggr!r}")
    scope = ",".join(part.strip() for part in first.group("scope").split(",") if part.strip())
    if not scope:
        raise QueryError(f"Error parsing query: unable to parse {query}: empty scope, use {{*}}")
    # Datadog stores tags lower-cased, so a scope matches them whatever its case.
    tags = frozenset(
        token.lower() for token in _SCOPE_SPLIT.split(scope) if token and token not in ("AND", "OR", "NOT")
    )
    by = first.group("by")
    group_by = tuple(t.strip() for t in by.split(",") if t.strip()) if by else ()
    return MetricQuery(query, aggr, first.group("metric"), scope, tags, group_by)


@dataclass
class ValuePhase:
    start: float
    stop: float | None
    value: float
    seq: int

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.stop is None or t < self.stop)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "value": self.value}


@dataclass
class Series:
    tag: str
    metric: str | None
    interval: int
    seq: int  # registration order: the earliest registered series wins a tie
    phases: list[ValuePhase] = field(default_factory=list)

    def value_at(self, t: float) -> float | None:
        """The latest-started phase covering ``t``: later phases override from their start."""
        covering = [phase for phase in self.phases if phase.covers(t)]
        if not covering:
            return None
        return max(covering, key=lambda phase: (phase.start, phase.seq)).value

    def matches(self, query: MetricQuery) -> bool:
        return self.tag in query.tags and self.metric in (None, query.metric)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "metric": self.metric,
            "interval": self.interval,
            "phases": [phase.to_json() for phase in sorted(self.phases, key=lambda p: (p.start, p.seq))],
            "value_now": self.value_at(now),
        }


class DatadogService(Service):
    name = "datadog"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.window = RateWindow(RATE_LIMIT, RATE_PERIOD)
        self.series: dict[tuple[str, str | None], Series] = {}
        self.seq = 0
        self.routes: list[Route] = [route("GET", r"/api/v1/query", self.query)]

    def reset(self) -> None:
        self.series.clear()

    # --- plumbing ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        api_key, app_key = request.header("dd-api-key"), request.header("dd-application-key")
        if not api_key or not app_key:
            return dd_error(403, "Forbidden")
        required = self.sim.required_token("datadog")
        if required is not None:
            # `datadog=API` checks the API key; `datadog=API:APP` checks both.
            want_api, _, want_app = required.partition(":")
            if api_key != want_api or (want_app and app_key != want_app):
                return dd_error(403, "Forbidden")
        found = resolve(self.routes, request)
        if found is None:
            return dd_error(404, "Not found")
        if isinstance(found, str):
            return dd_error(405, "Method Not Allowed")
        handler, args = found
        with self.sim.lock:
            return handler(request, args)

    def decorate(self, response: Response, request: Request) -> None:
        with self.sim.lock:
            now = self.sim.now()
            limit, remaining, reset = self.window.hit(now)
        self._rate_headers(response, limit, remaining, max(0, reset - int(now)))

    @staticmethod
    def _rate_headers(response: Response, limit: int, remaining: int, reset_in: int) -> None:
        for name, value in (
            ("Limit", limit),
            ("Period", RATE_PERIOD),
            ("Remaining", remaining),
            ("Reset", reset_in),
            ("Name", RATE_NAME),
        ):
            response.headers.setdefault(f"X-RateLimit-{name}", str(value))

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            # A short default wait keeps tests quick; the fault can ask for a longer one.
            after = fault.reset_after if fault.reset_after is not None else fault.retry_after
            reset_in = max(1, math.ceil(after if after is not None else 1.0))
            response = dd_error(429, f"Rate limit of {RATE_LIMIT} requests in {RATE_PERIOD} s reached.")
            self._rate_headers(response, RATE_LIMIT, 0, reset_in)
        elif fault.kind == "timeout":
            response = dd_error(504, "Gateway Timeout")
        else:
            status = fault.status or 503
            response = dd_error(status, "Service Unavailable" if status == 503 else "Internal Server Error")
        if fault.empty_body:
            response.body = b""
            response.headers.pop("Content-Type", None)
        return response

    # --- the query -----------------------------------------------------------------------------

    def query(self, request: Request, args: dict[str, str]) -> Response:
        bounds = {}
        for name in ("from", "to"):
            raw = request.param(name)
            if raw is None or not raw.strip():
                return dd_error(400, f"Missing required parameter '{name}'")
            try:
                bounds[name] = int(raw)
            except ValueError:
                return dd_error(400, f"Invalid parameter '{name}': expected an integer (epoch seconds)")
        start, end = bounds["from"], bounds["to"]
        if start >= end:
            return dd_error(400, "The 'to' parameter must be greater than 'from'")
        text = request.param("query")
        if text is None or not text.strip():
            return dd_error(400, "Missing required parameter 'query'")
        try:
            parsed = parse_query(text)
        except QueryError as bad:
            return dd_error(400, str(bad))
        series = self._series_for(parsed, start, end, self.sim.now())
        return json_response(
            200,
            {
                "status": "ok",
                "res_type": "time_series",
                "resp_version": 1,
                "query": parsed.text,
                "from_date": start * 1000,
                "to_date": end * 1000,
                "group_by": list(parsed.group_by),
                "message": "",
                "series": series,
                "times": [],
                "values": [],
            },
        )

    def _series_for(self, parsed: MetricQuery, start: int, end: int, now: float) -> list[dict[str, Any]]:
        """At most one series, as Datadog answers an ungrouped query: a registration naming the
        query's metric beats a tag-only one, then the earliest registered wins."""
        candidates = [s for s in self.series.values() if s.matches(parsed)]
        if not candidates:
            return []
        chosen = min(candidates, key=lambda s: (s.metric is None, s.seq))
        step = chosen.interval
        last = min(end, math.floor(now))
        first = math.ceil(start / step) * step
        begun = min(phase.start for phase in chosen.phases)
        first = max(first, math.ceil(begun / step) * step)  # skip the grid before any data
        count = (last - first) // step + 1 if last >= first else 0
        if count > MAX_POINTS:
            step *= math.ceil(count / MAX_POINTS)
            first = math.ceil(first / step) * step
        points = []
        for at in range(first, last + 1, step):
            value = chosen.value_at(at)
            if value is not None:
                points.append([at * 1000, value])
        if not points:
            return []
        return [
            {
                "metric": parsed.metric,
                "display_name": parsed.metric,
                "expression": parsed.text,
                "scope": parsed.scope,
                "tag_set": [],
                "aggr": parsed.aggr,
                "start": points[0][0],
                "end": min(points[-1][0] + step * 1000, end * 1000) - 1000,  # the last second covered
                "interval": step,
                "length": len(points),
                "query_index": 0,
                "attributes": {},
                "unit": [None, None],
                "pointlist": points,
            }
        ]

    # --- control -------------------------------------------------------------------------------

    def add_phase(self, body: dict[str, Any]) -> Series:
        # As Datadog's intake: lower case, and anything outside its tag alphabet becomes _.
        tag = _NOT_TAG.sub("_", require_text(body, "tag").strip().lower())
        metric = as_text(body, "metric") or None
        value = as_number(body, "value")
        if value is None:
            raise ControlError("value: required, a number")
        interval = body.get("interval")
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int) or interval < 1
        ):
            raise ControlError("interval: a positive whole number of seconds")
        with self.sim.lock:
            start, stop = start_stop(body, self.sim.now())
            key = (tag, metric)
            self.seq += 1
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series(tag, metric, interval or DEFAULT_INTERVAL, self.seq)
            elif interval is not None:
                series.interval = interval
            series.phases.append(ValuePhase(start, stop, value, self.seq))
            return series

    def view(self) -> list[dict[str, Any]]:
        with self.sim.lock:
            now = self.sim.now()
            return [series.to_json(now) for series in sorted(self.series.values(), key=lambda s: s.seq)]
