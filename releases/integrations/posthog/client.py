"""PostHog query client: HogQL over ``POST /api/projects/{id}/query/`` (docs/vendor-apis.md §6.2).

We ask with ``refresh: "blocking"``, so PostHog normally answers with the rows. It may still
hand back an unfinished ``query_status`` (a 202); then we poll the query for at most the
client's timeout, and cancel it if we give up, because PostHog runs at most three queries per
project at once and an abandoned one would hold a slot (§6.2).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx

from releases.core.errors import ProviderError, ProviderTimeout
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

logger = logging.getLogger(__name__)
API_ROOT = "/api"

# First wait between polls, doubling up to the cap: a blocking query that spilled over into
# async mode usually finishes within a second, and the query endpoint allows 240 calls a minute.
POLL_FIRST = 0.1
POLL_MAX = 1.0

# A property path as HogQL reads it after `properties.`: `$app_version`, `release`, `a.b`.
# Anything else (spaces, quotes, brackets) could change the query, so it is refused.
PROPERTY = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# DRF's throttled text (§6.2), the fallback when a 429 has no Retry-After.
THROTTLED_WAIT = re.compile(r"available in (\d+(?:\.\d+)?) seconds?")


@dataclass(frozen=True)
class HogQLResult:
    columns: list[str] = field(hash=False)
    rows: list[list[Any]] = field(hash=False)


class PostHogClient(HttpClient):
    provider = "posthog"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            with_root(base_url, API_ROOT),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            clock=clock,
        )
        self.timeout = timeout
        self.sleep = sleep

    # --- vendor conventions --------------------------------------------------------------------

    def retry_after_from(self, response: httpx.Response) -> float | None:
        explicit = super().retry_after_from(response)
        if explicit is not None or response.status_code != 429:
            return explicit
        # Retry-After is only observed, not documented, for PostHog (§6.2, §8); the detail
        # text always states the wait.
        detail, _ = self.error_message(response)
        found = THROTTLED_WAIT.search(detail)
        return parse_float(found.group(1)) if found else None

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        try:
            body = response.json()
        except ValueError:
            return super().error_message(response)
        if not isinstance(body, dict):
            return super().error_message(response)
        # {"type", "code", "detail", "attr"} (§6.2).
        detail, code = body.get("detail"), body.get("code")
        if isinstance(detail, str) and detail:
            return detail, code if isinstance(code, str) else None
        # A failed async query is reported by the poll as its status (400 or 500), not as DRF.
        status = body.get("query_status")
        message = status.get("error_message") if isinstance(status, dict) else None
        if isinstance(message, str) and message:
            return message, None
        return super().error_message(response)

    # --- calls -------------------------------------------------------------------------------

    def hogql(self, project_id: str, query: str, name: str = "") -> HogQLResult:
        """Run one HogQL query and return its columns and rows (§6.2)."""
        base = f"/projects/{_seg(project_id)}/query/"
        body = {"query": {"kind": "HogQLQuery", "query": query}, "name": name, "refresh": "blocking"}
        # 202 is PostHog's answer when the query went async despite `blocking`.
        response = self.request("POST", base, json=body, expect=(200, 202))
        answer = self.parse(response, _answer_from)
        deadline = self.clock() + self.timeout
        wait = POLL_FIRST
        while isinstance(answer, _Pending):
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._cancel(base, answer.query_id)
                raise ProviderTimeout(
                    f"GET {base}{answer.query_id}/: query not complete after {self.timeout:g}s",
                    provider=self.provider,
                    code="query_incomplete",
                )
            self.sleep(min(wait, remaining))
            wait = min(wait * 2, POLL_MAX)
            response = self.request("GET", f"{base}{_seg(answer.query_id)}/", expect=(200, 202))
            answer = self.parse(response, _answer_from)
        return answer

    def exception_count(self, project_id: str, prop: str, value: str, window: timedelta) -> int:
        """``$exception`` events in the last ``window`` whose property ``prop`` equals ``value``.

        The query has the shape of §6.2's example, without the GROUP BY: one row, one count.
        """
        if not PROPERTY.fullmatch(prop):
            raise ValueError(f"not a property name HogQL can take as-is: {prop!r}")
        amount, unit = _interval(window)
        # Safe to compose: `prop` matched PROPERTY, `value` is an escaped literal, the interval
        # is an integer and a keyword of ours.
        query = (
            "SELECT count() AS exceptions FROM events"  # noqa: S608
            " WHERE event = '$exception'"
            f" AND timestamp > now() - INTERVAL {amount} {unit}"
            f" AND properties.{prop} = {hogql_string(value)}"
        )
        result = self.hogql(project_id, query, name=f"gatekeeper exceptions {prop}={value}")
        try:
            return _single_count(result)
        except MalformedAnswer as exc:
            raise ProviderError(
                f"POST {API_ROOT}/projects/{_seg(project_id)}/query/: malformed answer: {exc}",
                provider=self.provider,
            ) from exc

    def _cancel(self, base: str, query_id: str) -> None:
        # Best effort: the query is abandoned either way; the give-up error is what matters.
        try:
            self.request("DELETE", f"{base}{_seg(query_id)}/", expect=(200, 202, 204))
        except ProviderError as exc:
            logger.warning("posthog.query.cancel_failed", extra={"query_id": query_id, "error": str(exc)})


def hogql_string(value: str) -> str:
    """A HogQL string literal. HogQL reads backslash escapes inside quotes, so escaping the
    backslash first and then the quote leaves no way to end the literal early."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _interval(window: timedelta) -> tuple[int, str]:
    micros = window // timedelta(microseconds=1)
    if micros <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if micros % 60_000_000 == 0:
        return micros // 60_000_000, "MINUTE"
    # Rounded up: a window never shrinks below what was asked for.
    return math.ceil(micros / 1_000_000), "SECOND"


def _seg(value: str) -> str:
    """One path segment: an id must not be able to add path or query."""
    return quote(value, safe="")


@dataclass(frozen=True)
class _Pending:
    query_id: str


def _answer_from(data: Any) -> HogQLResult | _Pending:
    body = as_dict(data, "query answer")
    if "query_status" not in body:
        return _hogql_result(body, "query answer")
    status = as_dict(body.get("query_status"), "query_status")
    complete = status.get("complete")
    if not isinstance(complete, bool):
        raise MalformedAnswer(f"query_status.complete: expected a boolean, got {complete!r}")
    if not complete:
        query_id = status.get("id")
        if not isinstance(query_id, str) or not query_id:
            raise MalformedAnswer(f"query_status.id: expected a non-empty string, got {query_id!r}")
        return _Pending(query_id)
    # Finished: the status carries the query's whole answer under `results`.
    return _hogql_result(as_dict(status.get("results"), "query_status.results"), "query_status.results")


def _hogql_result(body: dict[str, Any], where: str) -> HogQLResult:
    columns = as_list(body.get("columns"), f"{where}.columns")
    for index, column in enumerate(columns):
        if not isinstance(column, str):
            raise MalformedAnswer(f"{where}.columns[{index}]: expected a string, got {column!r}")
    rows = []
    for index, raw in enumerate(as_list(body.get("results"), f"{where}.results")):
        row = as_list(raw, f"{where}.results[{index}]")
        if len(row) != len(columns):
            raise MalformedAnswer(f"{where}.results[{index}]: {len(row)} values for {len(columns)} columns")
        rows.append(row)
    return HogQLResult(columns=list(columns), rows=rows)


def _single_count(result: HogQLResult) -> int:
    if not result.rows:  # count() always yields a row, but an empty table answer means none
        return 0
    if len(result.rows) != 1 or len(result.columns) != 1:
        raise MalformedAnswer(
            f"results: expected one row with one count, got {len(result.rows)} rows"
            f" of {len(result.columns)} columns"
        )
    count = as_int(result.rows[0][0], "results[0][0]")
    if count < 0:
        raise MalformedAnswer(f"results[0][0]: negative count {count}")
    return count
