"""The small HTTP base every provider client stands on.

One client per outbound service (Vercel, Sentry, Slack, PagerDuty, ...). The base owns the
``httpx.Client`` (injectable, so unit tests pass ``httpx.MockTransport``), the timeout, and the
mapping of every failure to :class:`ProviderError` with two facts the caller acts on:

* ``permanent``: retrying the same request cannot help (400, 401, 403, 404, ...).
* ``retry_after``: seconds the vendor asked us to wait (rate limits), when it said so.

and one fact the outbox needs for at-most-once delivery:

* ``maybe_delivered``: the request may have reached the vendor (read timeout, dropped
  connection after sending). Idempotent calls retry anyway; non-idempotent ones (Slack) must not.

Vendors disagree on how they announce a rate-limit reset (absolute epoch seconds, seconds
remaining, ``Retry-After``), so each client says how via :meth:`HttpClient.retry_after_from`.
"""

from __future__ import annotations

import functools
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

import certifi
import httpx

from releases.core.errors import ProviderError, ProviderTimeout
from releases.integrations import call_counts

logger = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 10.0

# Headers whose values are credentials: kept out of every error message (see HttpClient.scrub).
SECRET_HEADERS = frozenset({"authorization", "dd-api-key", "dd-application-key", "x-api-key"})
REDACTED = "[redacted]"
MAX_ERROR_BODY = 300
MIN_SECRET = 6

# A vendor asking us to wait longer than this is treated as "retry much later"; the caller's
# scheduler (outbox next_attempt_at) handles long waits, never a sleeping worker.
MAX_RETRY_AFTER = 3600.0
T = TypeVar("T")


def parse_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    # "nan" and "inf" parse as floats but are no wait a scheduler can act on.
    return number if math.isfinite(number) else None


class MalformedAnswer(ValueError):
    """A vendor answer does not have the documented shape."""


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def as_dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedAnswer(f"{where}: expected an object, got {_kind(value)}")
    return value


def as_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedAnswer(f"{where}: expected a list, got {_kind(value)}")
    return value


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedAnswer(f"{where}.{key}: expected a non-empty string, got {_kind(value)}")
    return value


def opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedAnswer(f"{where}.{key}: expected a string or null, got {_kind(value)}")
    return value


def as_int(value: object, where: str) -> int:
    """A JSON number with an integral value (``5`` or ``5.0``); booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedAnswer(f"{where}: expected a number, got {_kind(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise MalformedAnswer(f"{where}: expected a whole number, got {value!r}")
    return int(value)


def req_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    return as_int(obj.get(key), f"{where}.{key}")


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One CA bundle per process: loading it costs tens of milliseconds, far more than a request."""
    return ssl.create_default_context(cafile=certifi.where())


def with_root(base_url: str, root: str) -> str:
    """Accept a base URL with or without the API root ("https://sentry.io" or ".../api/0")."""
    base = base_url.rstrip("/")
    return base if base.endswith(root) else base + root


class HttpClient:
    """Base for one outbound service. Subclasses set ``provider`` and override hooks."""

    provider = "http"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            verify=ssl_context(),
            headers=dict(headers or {}),
            follow_redirects=False,
        )
        self._secrets = _credentials(headers or {})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- hooks -------------------------------------------------------------------------------

    def retry_after_from(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying, from this vendor's rate-limit headers."""
        return parse_float(response.headers.get("Retry-After"))

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        """(human message, vendor error code) from an error body; vendors shape these differently."""
        # Scrubbed before it is cut, so a cut can never leave half a token behind.
        return (self.scrub(response.text)[:MAX_ERROR_BODY] or response.reason_phrase, None)

    def scrub(self, text: str) -> str:
        """``text`` without this client's credentials. A vendor (or a proxy in front of it) may echo
        the request's Authorization header in an error body, and error text is stored on the
        action or check, shown in the admin and the API, logged and sent to Slack."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def is_permanent(self, response: httpx.Response) -> bool:
        return response.status_code < 500 and response.status_code not in (408, 409, 425, 429)

    # --- the one way requests are made ---------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """``data``: a form body, for the vendor methods that read no JSON."""
        try:
            response = self._request(
                method, path, params=params, json=json, data=data, headers=headers, expect=expect
            )
        except ProviderError as exc:
            call_counts.record(self.provider, call_counts.result_of(exc))
            exc.message = self.scrub(exc.message)
            exc.args = (exc.message,)
            raise
        call_counts.record(self.provider, "ok")
        return response

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any,
        json: Any,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        expect: tuple[int, ...],
    ) -> httpx.Response:
        try:
            response = self._client.request(
                method, path, params=params, json=json, data=data, headers=headers
            )
        except httpx.TimeoutException as exc:
            # A connect timeout means nothing was sent; any later timeout may have delivered it.
            sent = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            raise ProviderTimeout(
                f"{method} {path} timed out", provider=self.provider, maybe_delivered=sent
            ) from exc
        except httpx.ConnectError as exc:
            raise ProviderError(f"{method} {path}: cannot connect ({exc})", provider=self.provider) from exc
        except httpx.HTTPError as exc:
            # Connection dropped mid-exchange: the vendor may have acted on the request.
            raise ProviderError(
                f"{method} {path}: {type(exc).__name__}: {exc}",
                provider=self.provider,
                maybe_delivered=True,
            ) from exc
        if response.status_code in expect:
            return response
        raise self.to_error(method, path, response)

    def to_error(self, method: str, path: str, response: httpx.Response) -> ProviderError:
        if response.is_success:
            # A 2xx we did not expect breaks the contract, but the vendor accepted the request:
            # it may have acted, and a later look at its state may show the expected outcome.
            return ProviderError(
                f"{method} {path}: unexpected status {response.status_code}",
                provider=self.provider,
                status=response.status_code,
                maybe_delivered=True,
            )
        message, code = self.error_message(response)
        retry_after = None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = self.retry_after_from(response)
            if retry_after is not None:
                retry_after = max(0.0, min(retry_after, MAX_RETRY_AFTER))
        if response.status_code == 429:
            message = f"rate limited: {message}"
        return ProviderError(
            f"{method} {path}: {message}",
            provider=self.provider,
            permanent=self.is_permanent(response),
            retry_after=retry_after,
            status=response.status_code,
            # A 5xx may have been half-done by the vendor; a 4xx was refused outright.
            maybe_delivered=response.status_code >= 500,
            code=code,
        )

    def malformed(
        self, response: httpx.Response, problem: str, *, maybe_delivered: bool = False
    ) -> ProviderError:
        """A success answer we cannot read. Transient: a vendor hiccup or a proxy page, not a
        refusal; if it persists, the message names the field to look at."""
        request = response.request
        return ProviderError(
            self.scrub(f"{request.method} {request.url.path}: malformed answer: {problem}"),
            provider=self.provider,
            status=response.status_code,
            maybe_delivered=maybe_delivered,
        )

    def json_of(self, response: httpx.Response, *, maybe_delivered: bool = False) -> Any:
        try:
            return response.json()
        except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
            raise self.malformed(response, "not JSON", maybe_delivered=maybe_delivered) from exc

    def parse(
        self, response: httpx.Response, parser: Callable[[Any], T], *, maybe_delivered: bool = False
    ) -> T:
        """Decode the JSON body and read it with ``parser``, which raises MalformedAnswer."""
        data = self.json_of(response, maybe_delivered=maybe_delivered)
        try:
            return parser(data)
        except MalformedAnswer as exc:
            raise self.malformed(response, str(exc), maybe_delivered=maybe_delivered) from exc


def _credentials(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values in ``headers``: whole values, and the token after a scheme ("Bearer x")."""
    found: set[str] = set()
    for name, value in headers.items():
        if name.lower() not in SECRET_HEADERS:
            continue
        scheme, _, token = value.strip().partition(" ")
        secret = token.strip() if scheme.lower() in ("bearer", "token", "basic") else value.strip()
        # An unset credential ("Bearer ") is nothing to hide; a very short one would redact words.
        if len(secret) >= MIN_SECRET:
            found.add(secret)
    # Longest first, so a token inside a longer value is replaced as part of it.
    return tuple(sorted(found, key=len, reverse=True))
