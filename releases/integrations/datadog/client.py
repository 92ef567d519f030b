"""Datadog metrics client: timeseries points from ``GET /api/v1/query`` (docs/vendor-apis.md §6.1).

Two Datadog habits differ from the other vendors and drive this module:

* A query Datadog cannot run may still come back as HTTP 200 with ``"status": "error"``; that
  is a refusal of the query itself, so it is permanent like a 400.
* ``X-RateLimit-Reset`` is the number of seconds **remaining** in the window, not an epoch
  second as with Vercel and Sentry (§6.1, §7.3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from releases.core.errors import ProviderError
from releases.integrations.http import (
    DEFAULT_TIMEOUT,
    HttpClient,
    MalformedAnswer,
    as_dict,
    as_list,
    parse_float,
    with_root,
)

API_ROOT = "/api/v1"


class DatadogClient(HttpClient):
    provider = "datadog"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        app_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Querying needs both keys (§6.1): the API key names the org, the application key the
        # user whose permissions the query runs with.
        super().__init__(
            with_root(base_url, API_ROOT),
            timeout=timeout,
            transport=transport,
            headers={"DD-API-KEY": api_key, "DD-APPLICATION-KEY": app_key, "Accept": "application/json"},
            clock=clock,
        )

    # --- vendor conventions --------------------------------------------------------------------

    def retry_after_from(self, response: httpx.Response) -> float | None:
        explicit = super().retry_after_from(response)
        if explicit is not None or response.status_code != 429:
            # The rate-limit headers ride on every response; they only mean "wait" on a 429.
            return explicit
        # Seconds until the window resets, already relative (§6.1): no clock arithmetic.
        return parse_float(response.headers.get("X-RateLimit-Reset"))

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        # {"errors": ["<message>", ...]} (§6.1); Datadog gives no machine-readable code.
        try:
            body = response.json()
        except ValueError:
            return super().error_message(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list):
            texts = [e for e in errors if isinstance(e, str) and e]
            if texts:
                return "; ".join(texts), None
        return super().error_message(response)

    # --- calls -------------------------------------------------------------------------------

    def query_points(self, query: str, start: datetime, end: datetime) -> list[float]:
        """Every non-null value of every series over [start, end], series after series (§6.1).

        ``series: []`` (no matching data) is ``[]``: the caller decides what too few points mean.
        """
        if not query.strip():
            raise ValueError("empty Datadog query")
        start_s, end_s = _epoch_seconds(start), _epoch_seconds(end)
        if end_s <= start_s:
            raise ValueError(f"empty window: from {start_s} is not before to {end_s}")
        path = "/query"
        params = [("from", str(start_s)), ("to", str(end_s)), ("query", query)]
        response = self.request("GET", path, params=params)
        status, problem, points = self.parse(response, _points_from)
        if status != "ok":
            # Datadog read the query and refused it; resending the same query cannot help.
            raise ProviderError(
                self.scrub(
                    f"GET {response.request.url.path}: query failed: {problem or f'status {status!r}'}"
                ),
                provider=self.provider,
                permanent=True,
                status=response.status_code,
                code=status,
            )
        return points


def _epoch_seconds(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return math.floor(moment.timestamp())


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "null" if value is None else type(value).__name__
        raise MalformedAnswer(f"{where}: expected a number, got {kind}")
    if not math.isfinite(value):
        raise MalformedAnswer(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _points_from(data: Any) -> tuple[str, str, list[float]]:
    """(status, error text, values). Series are only read when the status is ``ok``."""
    body = as_dict(data, "query answer")
    status = body.get("status")
    if not isinstance(status, str) or not status:
        # Without a status we cannot tell a refusal from data: a broken answer, not a verdict.
        raise MalformedAnswer(f"status: expected a non-empty string, got {status!r}")
    if status != "ok":
        for key in ("error", "message"):
            text = body.get(key)
            if isinstance(text, str) and text:
                return status, text, []
        return status, "", []
    values: list[float] = []
    for index, raw in enumerate(as_list(body.get("series"), "series")):
        where = f"series[{index}]"
        series = as_dict(raw, where)
        for position, point in enumerate(as_list(series.get("pointlist"), f"{where}.pointlist")):
            at = f"{where}.pointlist[{position}]"
            pair = as_list(point, at)
            if len(pair) != 2:
                raise MalformedAnswer(f"{at}: expected [timestamp, value], got {len(pair)} items")
            _number(pair[0], f"{at}[0]")
            if pair[1] is not None:  # a bucket without data; not a zero
                values.append(_number(pair[1], f"{at}[1]"))
    return status, "", values
