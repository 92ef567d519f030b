"""A synthetic HTTP probe: GET a URL once and report status and latency, never raise.

A failed probe is evidence for the gate, not an error in Gatekeeper, so timeouts, refused
connections and non-200 answers all come back as a result with an ``error`` text. Redirects
are not followed: a health endpoint that redirects (to a login page, to another host) is not
answering for itself, so a 3xx counts as unhealthy.

The ``error`` text ends up in logs, Slack and the release history, so URLs in it lose their
userinfo and query string, where probe credentials and signed tokens live.

A probe's URL may carry webhook data (the deployment's host), so unless the project allows it,
a host that resolves to a private, loopback, link-local or otherwise non-public address is not
asked at all: the check fails, saying why. (A name that resolves differently between this look
and the connection is not caught; the deployment host itself is checked before, in
releases/domain/outbound.py.)
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import httpx

from releases.integrations.http import ssl_context

REDACTED = "[redacted]"


@dataclass(frozen=True)
class HttpCheckResult:
    url: str
    status: int | None  # None when no HTTP answer arrived (timeout, refused, TLS failure)
    elapsed_ms: float
    error: str  # "" when healthy

    @property
    def healthy(self) -> bool:
        return self.status == 200


def addresses_of(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def http_check(
    url: str,
    *,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
    allow_private: bool = False,
    resolve: Callable[[str, int], list[str]] = addresses_of,
) -> HttpCheckResult:
    target = _checked_url(url)
    safe = safe_url(target)
    started = time.perf_counter()

    def result(status: int | None, error: str) -> HttpCheckResult:
        return HttpCheckResult(url, status, (time.perf_counter() - started) * 1000, error)

    if not allow_private:
        refused = _not_public(target, resolve)
        if refused:
            return result(None, f"GET {safe}: {refused}")

    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        transport=transport,
        verify=ssl_context(),
        follow_redirects=False,
    ) as client:
        try:
            # Streamed and never read: the status is the answer, and a large or endless body
            # must not stretch the probe or the worker's memory.
            with client.stream("GET", target, headers=dict(headers or {})) as response:
                status = response.status_code
                location = response.headers.get("Location")
        except httpx.TimeoutException as exc:
            return result(None, f"GET {safe}: timed out after {timeout:g}s ({_scrub(exc, url, target)})")
        except httpx.ConnectError as exc:
            return result(None, f"GET {safe}: cannot connect ({_scrub(exc, url, target)})")
        except httpx.HTTPError as exc:
            return result(None, f"GET {safe}: {type(exc).__name__}: {_scrub(exc, url, target)}")
    if status == 200:
        return result(status, "")
    if 300 <= status < 400:
        where = f" to {_safe_location(target, location)}" if location else ""
        return result(status, f"GET {safe}: HTTP {status}, redirect{where} not followed")
    return result(status, f"GET {safe}: HTTP {status} {_reason(status)}".rstrip())


def _not_public(target: httpx.URL, resolve: Callable[[str, int], list[str]]) -> str:
    """Why ``target`` is not asked (its host is not a public address), or ""."""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        found = resolve(target.host, port)
    except OSError as exc:
        return f"cannot resolve {target.host} ({exc})"
    if not found:
        return f"{target.host} resolves to no address"
    for text in found:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            return (
                f"{target.host} resolves to {address}, not a public address: not asked "
                "(allow_private_addresses: true in the project allows it)"
            )
    return ""


def safe_url(url: httpx.URL) -> str:
    """Scheme, host, port and path only: no userinfo, query or fragment."""
    return str(httpx.URL(scheme=url.scheme, host=url.host, port=url.port, path=url.path))


def _checked_url(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if target.scheme not in {"http", "https"} or not target.host:
        # Without this, a configured `file:` or `ftp:` URL would fail later with a less clear
        # error, and nothing but a web endpoint is a health check.
        raise ValueError(f"only http and https URLs can be checked, got scheme {target.scheme!r}")
    return target


def _safe_location(target: httpx.URL, location: str) -> str:
    try:
        return safe_url(target.join(location))
    except httpx.InvalidURL:
        return REDACTED


def _scrub(exc: Exception, url: str, target: httpx.URL) -> str:
    """The exception's text with the URL's secrets removed, should httpx have quoted them."""
    text = str(exc) or type(exc).__name__
    secrets = [
        url,
        str(target),
        target.userinfo.decode(errors="replace"),
        target.password or "",
        target.query.decode(errors="replace"),
    ]
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
