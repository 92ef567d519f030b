"""Sentry's release-health sessions query (docs/vendor-apis.md §3.2), over simulated traffic.

Parsing and computing are kept apart from HTTP so the semantics that Gatekeeper depends on
(rounding of the range, zero-filled status groups, null rates without data) read in one place.
The 400 messages are Sentry's own where the contract quotes them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator.traffic import STATUSES, Counts, Traffic
from simulator.wire import iso_z

SUM = "sum(session)"
USERS = "count_unique(user)"
RATE_FIELDS = (
    "crash_rate(session)",
    "crash_rate(user)",
    "crash_free_rate(session)",
    "crash_free_rate(user)",
    "anr_rate()",
    "foreground_anr_rate()",
)
DURATION_FIELDS = tuple(f"{fn}(session.duration)" for fn in ("avg", "p50", "p75", "p90", "p95", "p99", "max"))
FIELDS = (SUM, USERS, *RATE_FIELDS, *DURATION_FIELDS)
GROUP_BYS = ("project", "release", "environment", "session.status")
FILTER_KEYS = ("release", "environment", "project", "session.status")
MAX_POINTS = 10_000
DEFAULT_PER_PAGE = 100
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DAY = 86400


class SessionsError(Exception):
    """A 400 with ``{"detail": message}``."""


@dataclass(frozen=True)
class Term:
    key: str
    values: tuple[str, ...]
    negated: bool

    def matches(self, value: str) -> bool:
        return (value in self.values) != self.negated


@dataclass(frozen=True)
class SessionsQuery:
    fields: tuple[str, ...]
    group_by: tuple[str, ...]
    clauses: tuple[tuple[Term, ...], ...]  # OR of ANDs; () = everything
    raw_query: str
    projects: tuple[str, ...]
    environments: tuple[str, ...]
    start: int
    end: int
    interval: int
    order_by: str | None
    per_page: int
    offset: int
    include_totals: bool
    include_series: bool


def parse_duration(text: str, what: str) -> int:
    found = _DURATION.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise SessionsError(f"Invalid {what}: {text!r}")
    return int(found.group(1)) * _UNITS[found.group(2)]


def parse_date(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        raise SessionsError(f"{text} is not a valid ISO8601 date query") from None
    if moment.tzinfo is None:  # Sentry reads naive timestamps as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_query(
    text: str, keys: tuple[str, ...] = FILTER_KEYS, wildcards: bool = False
) -> tuple[tuple[Term, ...], ...]:
    """Sentry search syntax, the subset the sessions endpoint (or, with other ``keys`` and
    ``wildcards``, the events endpoint) accepts."""
    clauses: list[tuple[Term, ...]] = []
    current: list[Term] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        word = re.match(r"[^\s:]+", text[pos:])
        bare = word.group(0) if word else ""
        if bare in ("OR", "AND") and (pos + len(bare) == len(text) or text[pos + len(bare)].isspace()):
            if bare == "OR":
                clauses.append(tuple(current))
                current = []
            pos += len(bare)
            continue
        negated = text[pos] == "!"
        pos += negated
        key_match = re.match(r"([A-Za-z_.]+):", text[pos:])
        if not key_match:
            raise SessionsError(
                f"Invalid search filter: {text[pos:].split(maxsplit=1)[0]!r} (free text is not supported)"
            )
        key = key_match.group(1)
        if key not in keys:
            raise SessionsError(f"Invalid search filter: {key}")
        pos += len(key_match.group(0))
        values, pos = _read_value(text, pos)
        if not wildcards and any("*" in value for value in values):
            raise SessionsError("Invalid condition: wildcard search is not supported")
        current.append(Term(key, tuple(values), negated))
    clauses.append(tuple(current))
    return tuple(clause for clause in clauses if clause) if any(clauses) else ()


def _read_value(text: str, pos: int) -> tuple[list[str], int]:
    if pos < len(text) and text[pos] == "[":
        values: list[str] = []
        pos += 1
        while True:
            while pos < len(text) and text[pos] in " ,":
                pos += 1
            if pos >= len(text):
                raise SessionsError("Invalid query: unterminated list")
            if text[pos] == "]":
                return values, pos + 1
            value, pos = _read_scalar(text, pos, stop=",]")
            values.append(value)
    value, pos = _read_scalar(text, pos, stop="")
    return [value], pos


def _read_scalar(text: str, pos: int, stop: str) -> tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        out, pos = [], pos + 1
        while pos < len(text) and text[pos] != '"':
            if text[pos] == "\\" and pos + 1 < len(text):
                pos += 1
            out.append(text[pos])
            pos += 1
        if pos >= len(text):
            raise SessionsError("Invalid query: unterminated quoted value")
        return "".join(out), pos + 1
    start = pos
    while pos < len(text) and not text[pos].isspace() and text[pos] not in stop:
        pos += 1
    if pos == start:
        raise SessionsError("Invalid query: empty value")
    return text[start:pos], pos


def parse(query: dict[str, list[str]], now: float) -> SessionsQuery:
    fields = tuple(query.get("field", []))
    if not fields:
        raise SessionsError('Request is missing a "field"')
    for name in fields:
        if name not in FIELDS:
            raise SessionsError(f'Invalid field: "{name}"')
    group_by = tuple(query.get("groupBy", []))
    for name in group_by:
        if name not in GROUP_BYS:
            raise SessionsError(f'Invalid groupBy: "{name}"')
    raw_query = (query.get("query") or [""])[0]
    clauses = parse_query(raw_query)
    by_status = "session.status" in group_by
    filters_status = any(term.key == "session.status" for clause in clauses for term in clause)
    for name in fields:
        if name in RATE_FIELDS and by_status:
            raise SessionsError(f"Cannot group field {name} by session.status")
        if name in RATE_FIELDS and filters_status:
            raise SessionsError(f"Cannot filter field {name} by session.status")
    order_by = _order_by(query.get("orderBy", []), fields, by_status)
    interval = parse_duration((query.get("interval") or ["1h"])[0], "interval")
    if interval > DAY:
        raise SessionsError("The interval has to be less than one day.")
    if DAY % interval:
        raise SessionsError("The interval should divide one day without a remainder.")
    start, end = time_range(query, now)
    start_rounded = math.floor(start / interval) * interval
    end_rounded = max(math.ceil(end / interval) * interval, start_rounded + interval)
    if (end_rounded - start_rounded) // interval > MAX_POINTS:
        raise SessionsError(
            "Your interval and date range would create too many results. "
            "Use a larger interval, or a smaller date range."
        )
    per_page = int_param(query, "per_page", DEFAULT_PER_PAGE)
    return SessionsQuery(
        fields=fields,
        group_by=group_by,
        clauses=clauses,
        raw_query=raw_query,
        projects=tuple(query.get("project", [])),
        environments=tuple(query.get("environment", [])),
        start=start_rounded,
        end=end_rounded,
        interval=interval,
        order_by=order_by,
        per_page=max(1, min(per_page, 100)),
        offset=cursor_offset(query),
        include_totals=(query.get("includeTotals") or ["1"])[0] != "0",
        include_series=(query.get("includeSeries") or ["1"])[0] != "0",
    )


def _order_by(values: list[str], fields: tuple[str, ...], by_status: bool) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise SessionsError("Cannot order by multiple fields")
    if by_status:
        raise SessionsError("Cannot use 'orderBy' when grouping by sessions.status")
    name = values[0]
    if name.lstrip("-") not in (*fields, "release.timestamp"):
        raise SessionsError("'orderBy' must be one of the provided 'fields'")
    return name


def time_range(
    query: dict[str, list[str]], now: float, default: float = 0.0, error: type[Exception] = SessionsError
) -> tuple[float, float]:
    """``statsPeriod`` or ``start``+``end`` (both), else the last ``default`` seconds (a day)."""
    period = (query.get("statsPeriod") or [None])[0]
    if period:
        return now - parse_duration(period, "statsPeriod"), now
    start, end = (query.get("start") or [None])[0], (query.get("end") or [None])[0]
    if start is None and end is None:
        return now - (default or DAY), now
    if start is None or end is None:
        raise error("start and end are both required")
    start_at, end_at = parse_date(start), parse_date(end)
    if start_at >= end_at:
        raise error("start must be before end")
    return start_at, end_at


def int_param(
    query: dict[str, list[str]], name: str, default: int, error: type[Exception] = SessionsError
) -> int:
    raw = (query.get(name) or [None])[0]
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise error(f"Invalid {name}: {raw!r}") from None


def cursor_offset(query: dict[str, list[str]], error: type[Exception] = SessionsError) -> int:
    # Sentry's offset cursors read "<value>:<row offset>:<is_prev>" (value 0 for these endpoints).
    raw = (query.get("cursor") or [None])[0]
    if not raw:
        return 0
    parts = raw.split(":")
    if len(parts) != 3 or not all(re.fullmatch(r"-?\d+", part) for part in parts):
        raise error("Invalid cursor parameter.")
    return max(0, int(parts[1]))


# --- computing ---------------------------------------------------------------------------------


def _statuses_for(traffic: Traffic, q: SessionsQuery) -> set[str]:
    """Which session statuses of this traffic the query counts (empty: none)."""
    if q.environments and traffic.environment not in q.environments:
        return set()
    if (
        q.projects
        and "-1" not in q.projects
        and not (traffic.project in q.projects or str(traffic.project_id) in q.projects)
    ):
        return set()
    if not q.clauses:
        return set(STATUSES)
    counted: set[str] = set()
    attributes = {
        "release": (traffic.release,),
        "environment": (traffic.environment,),
        "project": (traffic.project, str(traffic.project_id)),
    }
    for clause in q.clauses:
        statuses = set(STATUSES)
        for term in clause:
            if term.key == "session.status":
                statuses = {s for s in statuses if term.matches(s)}
            elif not any(term.matches(value) for value in attributes[term.key]):
                statuses = set()
        counted |= statuses
    return counted


def _masked(counts: Counts, statuses: set[str]) -> Counts:
    return Counts(**{s: counts.by_status(s) if s in statuses else 0 for s in STATUSES})


def _value(name: str, counts: Counts, status: str | None) -> int | float | None:
    if name == SUM:
        return counts.by_status(status) if status else counts.sessions
    if name == USERS:
        return 0  # the simulator does not model users
    if counts.sessions and name == "crash_rate(session)":
        return counts.crashed / counts.sessions
    if counts.sessions and name == "crash_free_rate(session)":
        return (counts.sessions - counts.crashed) / counts.sessions
    return None  # user rates, durations and ANR rates have no simulated data


def compute(traffic: list[Traffic], q: SessionsQuery, now: float) -> tuple[dict[str, Any], bool, bool]:
    """The response body for the requested page, plus (has_previous, has_next)."""
    n = (q.end - q.start) // q.interval
    edges = [min(q.start + k * q.interval, now) for k in range(n + 1)]
    dims = [g for g in q.group_by if g != "session.status"]
    buckets: dict[tuple[Any, ...], list[Counts]] = {}
    first_seen: dict[tuple[Any, ...], float] = {}
    if not dims:
        buckets[()] = [Counts()] * n
    for entry in traffic:
        statuses = _statuses_for(entry, q)
        if not statuses:
            continue
        cumulative = [entry.cumulative(t) for t in edges]
        series = [_masked(cumulative[k + 1] - cumulative[k], statuses) for k in range(n)]
        if dims and not any(c.sessions for c in series):
            continue
        values = {"release": entry.release, "environment": entry.environment, "project": entry.project_id}
        key = tuple(values[d] for d in dims)
        existing = buckets.get(key, [Counts()] * n)
        buckets[key] = [a + b for a, b in zip(existing, series, strict=True)]
        first_seen[key] = min(first_seen.get(key, entry.start), entry.start)

    groups = []
    for key, series in buckets.items():
        total = sum(series, Counts())
        for status in STATUSES if "session.status" in q.group_by else (None,):
            by: dict[str, Any] = dict(zip(dims, key, strict=True))
            if status:
                by["session.status"] = status
            group: dict[str, Any] = {"by": {g: by[g] for g in q.group_by}}
            if q.include_totals:
                group["totals"] = {f: _value(f, total, status) for f in q.fields}
            if q.include_series:
                group["series"] = {f: [_value(f, c, status) for c in series] for f in q.fields}
            groups.append((key, status, total, group))

    groups.sort(key=lambda row: (tuple(str(v) for v in row[0]), STATUSES.index(row[1]) if row[1] else 0))
    if q.order_by:
        name = q.order_by.lstrip("-")
        descending = q.order_by.startswith("-")
        if name == "release.timestamp":
            groups.sort(key=lambda row: first_seen.get(row[0], 0.0), reverse=descending)
        else:
            groups.sort(key=lambda row: _sort_value(_value(name, row[2], row[1]), descending))
    ordered = [row[3] for row in groups]
    if q.include_series:
        ordered = ordered[: max(1, MAX_POINTS // max(1, n))]
    first = q.offset
    page = ordered[first : first + q.per_page]
    body = {
        "start": iso_z(q.start),
        "end": iso_z(q.end),
        "intervals": [iso_z(q.start + k * q.interval) for k in range(n)] if q.include_series else [],
        "groups": page,
        "query": q.raw_query,
    }
    return body, q.offset > 0, first + q.per_page < len(ordered)


def _sort_value(value: int | float | None, descending: bool) -> tuple[int, float]:
    if value is None:
        return (1, 0.0)  # groups without data sort last either way
    return (0, -value if descending else value)
