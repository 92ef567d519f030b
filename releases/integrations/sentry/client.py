"""Sentry REST client: release-health session counts and error counts (docs/vendor-apis.md §3.1, §3.2, §3.4),
and the project lookup that turns the slug users write into the numeric id those queries take.

We ask for ``sum(session)`` and ``crash_rate(session)`` grouped by release only, and recover
the crashed count as rate x sessions: one group per release, so a page of 100 groups answers
100 releases in one request. (Grouping by ``session.status`` as well gave exact counts but four
or five groups per release: four requests per 100 releases.) Counts, not Sentry's rate, feed the
gate, so it applies its own minimum-sample rule; a rate is ``null`` only with no sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from releases.core.errors import ProviderError
from releases.integrations.http import (
    DEFAULT_TIMEOUT,
    HttpClient,
    MalformedAnswer,
    as_dict,
    as_int,
    as_list,
    parse_float,
    with_root,
)
from releases.integrations.sentry.incidents import OpenIncident, incidents_from

API_ROOT = "/api/0"
MAX_RELEASES_PER_QUERY = 100  # keeps the query string and the group count modest
MAX_PAGES = 50  # a cursor loop or a runaway answer must end in an error, not a hung worker
SUM_SESSION = "sum(session)"
CRASH_RATE = "crash_rate(session)"
COUNT = "count()"


@dataclass(frozen=True)
class SessionTotals:
    sessions: int = 0
    crashed: int = 0

    @property
    def crash_free_rate(self) -> float | None:
        """Fraction 0-1 like Sentry's ``crash_free_rate(session)``; None without sessions."""
        if self.sessions == 0:
            return None
        return 1 - self.crashed / self.sessions


@dataclass(frozen=True)
class SentryProject:
    """A project as Sentry's API knows it: data queries take the id, alerts name the slug."""

    id: int
    slug: str
    name: str
    moved_from: str | None = None  # the slug asked for, when Sentry answered it had been renamed


class SentryClient(HttpClient):
    provider = "sentry"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            with_root(base_url, API_ROOT),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            clock=clock,
        )

    # --- vendor conventions --------------------------------------------------------------------

    def retry_after_from(self, response: httpx.Response) -> float | None:
        # Sentry sends no Retry-After; X-Sentry-Rate-Limit-Reset is the epoch second the next
        # window opens (§3.1). It rides on every response, so it only means "wait" on a 429.
        explicit = super().retry_after_from(response)
        if explicit is not None or response.status_code != 429:
            return explicit
        reset = parse_float(response.headers.get("X-Sentry-Rate-Limit-Reset"))
        return None if reset is None else reset - self.clock()

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        # DRF's {"detail": "..."}; the 429 carries it as text/html (§3.1), so decode the bytes
        # whatever the content type says.
        try:
            body = response.json()
        except ValueError:
            return super().error_message(response)
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, str) and detail:
            return detail, None
        if isinstance(detail, dict):  # DRF ErrorDetail with a code: {"message", "code"}
            message, code = detail.get("message"), detail.get("code")
            if isinstance(message, str) and message:
                return message, code if isinstance(code, str) else None
        return super().error_message(response)

    # --- calls -------------------------------------------------------------------------------

    def release_sessions(  # noqa: PLR0917 - the agreed signature; callers pass these in order
        self,
        org: str,
        project: str,
        environment: str | None,
        releases: Sequence[str],
        start: datetime,
        end: datetime,
        interval: str = "1h",
    ) -> dict[str, SessionTotals]:
        """Session counts per release over [start, end); every requested release is a key."""
        start_at, end_at = iso_z(start), iso_z(end)
        if end <= start:
            raise ValueError(f"empty window: start {start_at} is not before end {end_at}")
        wanted = list(dict.fromkeys(releases))  # de-duplicated, order kept
        totals = dict.fromkeys(wanted, SessionTotals())
        path = f"/organizations/{quote(org, safe='')}/sessions/"
        for first in range(0, len(wanted), MAX_RELEASES_PER_QUERY):
            chunk = wanted[first : first + MAX_RELEASES_PER_QUERY]
            params = [
                ("field", SUM_SESSION),
                ("field", CRASH_RATE),
                ("groupBy", "release"),
                ("query", release_query(chunk)),
                ("project", project),
                *([("environment", environment)] if environment is not None else []),
                ("start", start_at),
                ("end", end_at),
                ("interval", interval),
                ("includeSeries", "0"),  # totals are all we read
                ("per_page", str(MAX_RELEASES_PER_QUERY)),  # one group per release: one page
            ]
            for response in self._pages("GET", path, params):
                for release, counted in self.parse(response, _group_totals):
                    if release not in totals:
                        continue  # Sentry matched a release we did not ask for: not ours to count
                    before = totals[release]
                    totals[release] = SessionTotals(
                        sessions=before.sessions + counted.sessions, crashed=before.crashed + counted.crashed
                    )
        return totals

    def error_count(  # noqa: PLR0917 - the agreed signature; callers pass these in order
        self,
        org: str,
        project: str,
        environment: str | None,
        release: str,
        start: datetime,
        end: datetime,
    ) -> int:
        """Error events of one release over [start, end) from the events table (§3.4)."""
        start_at, end_at = iso_z(start), iso_z(end)
        if end <= start:
            raise ValueError(f"empty window: start {start_at} is not before end {end_at}")
        params = [
            ("field", COUNT),
            # Required by the current spec (§3.4).
            ("dataset", "errors"),
            ("query", f"{release_query([release])} event.type:error"),
            ("project", project),
            *([("environment", environment)] if environment is not None else []),
            ("start", start_at),
            ("end", end_at),
            # An aggregate without a group-by is one row; asking for one keeps it that way.
            ("per_page", "1"),
        ]
        response = self.request("GET", f"/organizations/{quote(org, safe='')}/events/", params=params)
        return self.parse(response, _error_count_from)

    def project(self, org: str, id_or_slug: str) -> SentryProject:
        """``GET /api/0/projects/{org}/{id_or_slug}/`` (needs ``project:read``).

        A renamed project's old slug answers 302 with the new slug in the body (Sentry keeps a
        redirect per rename); the new one is asked once, on the configured host."""
        response = self.request("GET", _project_path(org, id_or_slug), expect=(200, 302))
        if response.status_code == 302:
            moved_to = self.parse(response, _moved_slug)
            response = self.request("GET", _project_path(org, moved_to))
            found = self.parse(response, _project_from)
            return SentryProject(found.id, found.slug, found.name, moved_from=id_or_slug)
        return self.parse(response, _project_from)

    def environments(self, org: str, id_or_slug: str) -> list[str]:
        """The names of a project's environments, hidden ones included."""
        response = self.request("GET", _project_path(org, id_or_slug) + "environments/")
        return self.parse(response, _environment_names)

    def organization(self, org: str) -> str:
        """The organisation's name, if the token can see it (``org:read``)."""
        response = self.request("GET", f"/organizations/{quote(org, safe='')}/")
        return self.parse(response, lambda data: str(as_dict(data, "organization").get("name") or org))

    def latest_release(self, org: str, project: str, environment: str | None) -> tuple[str, int] | None:
        """The newest release with sessions in the last day, and its session count; None when
        release health has no sessions at all (the SDK's session tracking off, or no traffic)."""
        params = [
            ("field", SUM_SESSION),
            ("groupBy", "release"),
            ("orderBy", "-release.timestamp"),
            ("project", project),
            *([("environment", environment)] if environment is not None else []),
            ("statsPeriod", "24h"),
            ("interval", "1d"),
            ("includeSeries", "0"),
            ("per_page", "1"),
        ]
        response = self.request("GET", f"/organizations/{quote(org, safe='')}/sessions/", params=params)
        groups = self.parse(
            response, lambda data: as_list(as_dict(data, "sessions answer").get("groups"), "groups")
        )
        for group in groups:
            body = as_dict(group, "groups[0]")
            release = as_dict(body.get("by"), "groups[0].by").get("release")
            sessions = as_dict(body.get("totals"), "groups[0].totals").get(SUM_SESSION)
            if isinstance(release, str) and isinstance(sessions, int) and sessions > 0:
                return release, sessions
        return None

    def open_incidents(self, org: str, projects: Sequence[str]) -> list[OpenIncident]:
        """The organisation's metric-alert incidents not yet closed, for these project ids
        (``GET /api/0/organizations/{org}/incidents/?status=open``, needs ``org:read``; §3.6)."""
        params = [("status", "open"), *(("project", p) for p in projects), ("per_page", "100")]
        found: list[OpenIncident] = []
        for response in self._pages("GET", f"/organizations/{quote(org, safe='')}/incidents/", params):
            found.extend(self.parse(response, incidents_from))
        return found

    def _pages(self, method: str, path: str, params: list[tuple[str, str]]) -> Iterator[httpx.Response]:
        """Follow ``Link: <...>; rel="next"; results="true"; cursor="..."`` (§3.1).

        The next page is requested with our own params plus ``cursor`` rather than the URL in
        the header, so it always goes to the configured host with the same query.
        """
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page_params = params if cursor is None else [*params, ("cursor", cursor)]
            response = self.request(method, path, params=page_params)
            yield response
            cursor = _next_cursor(response)
            if cursor is None:
                return
            if cursor in seen:
                raise self.malformed(response, f"pagination cursor {cursor!r} repeats")
            seen.add(cursor)
        raise ProviderError(
            f"{method} {path}: more than {MAX_PAGES} pages of results",
            provider=self.provider,
            code="too_many_pages",
        )


def _project_path(org: str, id_or_slug: str) -> str:
    return f"/projects/{quote(org, safe='')}/{quote(id_or_slug, safe='')}/"


def _project_from(data: Any) -> SentryProject:
    body = as_dict(data, "project")
    raw_id = body.get("id")
    # Sentry serialises ids as strings; a number is read the same.
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).isdigit():
        raise MalformedAnswer(f"id: expected a numeric id, got {raw_id!r}")
    slug = body.get("slug")
    if not isinstance(slug, str) or not slug:
        raise MalformedAnswer("slug: expected a string")
    name = body.get("name")
    return SentryProject(int(raw_id), slug, name if isinstance(name, str) else slug)


def _moved_slug(data: Any) -> str:
    detail = as_dict(as_dict(data, "moved answer").get("detail"), "detail")
    slug = as_dict(detail.get("extra"), "detail.extra").get("slug")
    if not isinstance(slug, str) or not slug:
        raise MalformedAnswer("detail.extra.slug: expected the project's new slug")
    return slug


def _environment_names(data: Any) -> list[str]:
    names = []
    for index, raw in enumerate(as_list(data, "environments")):
        name = as_dict(raw, f"[{index}]").get("name")
        if not isinstance(name, str):
            raise MalformedAnswer(f"[{index}].name: expected a string")
        names.append(name)
    return names


def release_query(releases: Sequence[str]) -> str:
    """``release:"a"`` or ``release:["a","b"]``; quoting keeps commas, spaces, brackets and
    ``:`` in version strings (``web@1.4.2+build,7``) from being read as search syntax."""
    quoted = [_quote(release) for release in releases]
    if len(quoted) == 1:
        return f"release:{quoted[0]}"
    return f"release:[{','.join(quoted)}]"


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def iso_z(moment: datetime) -> str:
    """UTC with a ``Z``, whole seconds: the form Sentry documents and echoes back (§3.2)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_cursor(response: httpx.Response) -> str | None:
    link = response.links.get("next")
    if not link or link.get("results") != "true":
        return None
    return link.get("cursor") or None


def _group_totals(data: Any) -> list[tuple[str, SessionTotals]]:
    """(release, its sessions and crashed sessions) per group."""
    body = as_dict(data, "sessions answer")
    rows = []
    for index, raw in enumerate(as_list(body.get("groups"), "groups")):
        where = f"groups[{index}]"
        group = as_dict(raw, where)
        by = as_dict(group.get("by"), f"{where}.by")
        release = by.get("release")
        if not isinstance(release, str):
            raise MalformedAnswer(f"{where}.by.release: expected a string")
        totals = as_dict(group.get("totals"), f"{where}.totals")
        # sum(session) defaults to 0, never null (§3.2); a null here is a broken answer.
        sessions = as_int(totals.get(SUM_SESSION), f"{where}.totals.{SUM_SESSION}")
        if sessions < 0:
            raise MalformedAnswer(f"{where}.totals.{SUM_SESSION}: negative count {sessions}")
        rate = totals.get(CRASH_RATE)
        if rate is None:
            if sessions:  # a rate is null only without data (§3.2)
                raise MalformedAnswer(f"{where}.totals.{CRASH_RATE}: null with {sessions} sessions")
            crashed = 0
        else:
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise MalformedAnswer(f"{where}.totals.{CRASH_RATE}: expected a fraction 0-1, got {rate!r}")
            # Sentry computes the rate as crashed / sessions: rounding gives the count back.
            crashed = round(rate * sessions)
        rows.append((release, SessionTotals(sessions=sessions, crashed=crashed)))
    return rows


def _error_count_from(data: Any) -> int:
    body = as_dict(data, "events answer")
    rows = as_list(body.get("data"), "data")
    if not rows:  # no matching events: Sentry may answer with no row rather than a zero
        return 0
    count = as_int(as_dict(rows[0], "data[0]").get(COUNT), f"data[0].{COUNT}")
    if count < 0:
        raise MalformedAnswer(f"data[0].{COUNT}: negative count {count}")
    return count
