"""Sentry's events table query (docs/vendor-apis.md §3.4, ``listOrganizationEvents``) over error events.

Error events come from the release traffic (``errors_per_minute``, see traffic.py) and are
counted in ``[start, end)`` as a difference of cumulatives, so a repeated query only ever sees
more. Rows follow Discover: the non-aggregate fields group, ``count()`` counts; with no grouping
field there is always exactly one row, with one only the groups that have events.

The simulator knows the columns ``count()``, ``release``, ``environment`` and ``project`` and the
filters ``release``, ``environment``, ``project`` and ``event.type``; anything else is a 400
rather than a silently empty answer, so a typo in a client's query shows up in its tests.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from simulator.sessions import (
    SessionsError,
    Term,
    cursor_offset,
    int_param,
    parse_query,
    time_range,
)
from simulator.traffic import Traffic

DATASETS = ("discover", "errors", "transactions", "issuePlatform", "spans", "logs", "metricsEnhanced")
ERROR_DATASETS = ("discover", "errors")  # the datasets that hold error events
COLUMNS = {"count()": "integer", "release": "string", "environment": "string", "project": "string"}
AGGREGATES = ("count()",)
FILTER_KEYS = ("release", "environment", "project", "event.type")
MAX_FIELDS = 20
DEFAULT_PER_PAGE = 50
DEFAULT_PERIOD = 14 * 86400  # Sentry's default range when neither statsPeriod nor start/end
ERROR_EVENT_TYPES = ("error",)


class EventsError(Exception):
    """A 400 with ``{"detail": message}``."""


@dataclass(frozen=True)
class EventsQuery:
    dataset: str
    fields: tuple[str, ...]
    clauses: tuple[tuple[Term, ...], ...]
    projects: tuple[str, ...]
    environments: tuple[str, ...]
    start: float
    end: float
    sort: str | None
    per_page: int
    offset: int

    @property
    def group_by(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in AGGREGATES)


def parse(query: dict[str, list[str]], now: float) -> EventsQuery:
    dataset = (query.get("dataset") or [""])[0]
    if not dataset:
        raise EventsError('Request is missing a "dataset"')
    if dataset not in DATASETS:
        raise EventsError(f"dataset must be one of: {', '.join(DATASETS)}")
    fields = tuple(dict.fromkeys(query.get("field", [])))  # a repeated field is one column
    if not fields:
        raise EventsError("No columns selected")
    if len(fields) > MAX_FIELDS:
        raise EventsError("You can view up to 20 fields at a time. Please delete some and try again.")
    for name in fields:
        if name not in COLUMNS:
            raise EventsError(f"Invalid field: {name}")
    try:
        clauses = parse_query((query.get("query") or [""])[0], FILTER_KEYS, wildcards=True)
        start, end = time_range(query, now, DEFAULT_PERIOD, EventsError)
    except SessionsError as invalid:
        raise EventsError(str(invalid)) from None
    sort = (query.get("sort") or [None])[0] or None
    if sort is not None and sort.lstrip("-") not in fields:
        raise EventsError("Cannot sort by a field that is not selected.")
    return EventsQuery(
        dataset=dataset,
        fields=fields,
        clauses=clauses,
        projects=tuple(query.get("project", [])),
        environments=tuple(query.get("environment", [])),
        start=start,
        end=end,
        sort=sort,
        per_page=max(1, min(int_param(query, "per_page", DEFAULT_PER_PAGE, EventsError), 100)),
        offset=cursor_offset(query, EventsError),
    )


# --- computing ---------------------------------------------------------------------------------


def _term_holds(term: Term, values: tuple[str, ...]) -> bool:
    """A negated term holds when *no* value of the attribute matches (a project has a slug and
    an id: ``!project:shop-web`` must not hold just because the id differs)."""
    hit = any(fnmatch.fnmatchcase(value, wanted) for value in values for wanted in term.values)
    return hit != term.negated


def _counted(traffic: Traffic, q: EventsQuery) -> bool:
    if q.dataset not in ERROR_DATASETS:
        return False
    if q.environments and traffic.environment not in q.environments:
        return False
    if (
        q.projects
        and "-1" not in q.projects
        and not (traffic.project in q.projects or str(traffic.project_id) in q.projects)
    ):
        return False
    attributes = {
        "release": (traffic.release,),
        "environment": (traffic.environment,),
        "project": (traffic.project, str(traffic.project_id)),
        "event.type": ERROR_EVENT_TYPES,
    }
    return not q.clauses or any(
        all(_term_holds(term, attributes[term.key]) for term in clause) for clause in q.clauses
    )


def compute(traffic: list[Traffic], q: EventsQuery, now: float) -> tuple[dict[str, Any], bool, bool]:
    """The response body for the requested page, plus (has_previous, has_next)."""
    end = min(q.end, now)  # events from the future have not happened yet
    counts: dict[tuple[str, ...], int] = {}
    if not q.group_by:
        counts[()] = 0
    for entry in traffic:
        if not _counted(entry, q):
            continue
        errors = entry.errors_between(q.start, end)
        values = {"release": entry.release, "environment": entry.environment, "project": entry.project}
        key = tuple(values[name] for name in q.group_by)
        if q.group_by and errors == 0 and key not in counts:
            continue  # Discover only returns groups that have events
        counts[key] = counts.get(key, 0) + errors

    rows = []
    for key, count in sorted(counts.items()):
        row: dict[str, Any] = dict(zip(q.group_by, key, strict=True))
        if "count()" in q.fields:
            row["count()"] = count
        rows.append({name: row[name] for name in q.fields})
    if q.sort:
        name = q.sort.lstrip("-")
        rows.sort(key=lambda r: r[name], reverse=q.sort.startswith("-"))
    first = q.offset
    body = {
        "data": rows[first : first + q.per_page],
        "meta": {
            "fields": {name: COLUMNS[name] for name in q.fields},
            "units": dict.fromkeys(q.fields),
            "isMetricsData": False,
            "tips": {},
        },
    }
    return body, q.offset > 0, first + q.per_page < len(rows)
