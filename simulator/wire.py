"""The request/response values passed between the HTTP plumbing and the vendor modules.

Vendor modules never see the socket: they get a parsed :class:`Request` and return a
:class:`Response`, which keeps them testable and keeps the HTTP details in one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Request:
    method: str
    service: str
    path: str  # without the service prefix, e.g. "/v13/deployments/dpl_x"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    full_path: str  # as received, prefix and query string included (for Link headers)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def params(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def bearer(self) -> str | None:
        value = self.header("authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))

    def logged_body(self) -> Any:
        """What the request log keeps: parsed JSON, else text, else None."""
        if not self.body:
            return None
        try:
            return self.json()
        except (ValueError, UnicodeDecodeError):
            return self.body.decode("utf-8", errors="replace")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Drop the connection without answering (the "reset" fault).
    abort: bool = False


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Response(status, body, {"Content-Type": JSON_TYPE, **(headers or {})})


def empty_response(status: int) -> Response:
    # Vercel's promote/rollback answers carry no body and no content type at all.
    return Response(status)


class ControlError(Exception):
    """A bad control-API or scenario request; becomes ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def iso_z(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def as_number(body: dict[str, Any], key: str, default: float | None = None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(f"{key}: expected a number")
    return float(value)


def start_stop(body: dict[str, Any], now: float) -> tuple[float, float | None]:
    """A control call's ``start`` (default: now) and optional ``stop``, which must come after it."""
    start = as_number(body, "start")
    start = now if start is None else start
    stop = as_number(body, "stop")
    if stop is not None and stop <= start:
        raise ControlError("stop: must be after start")
    return start, stop


def as_text(body: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ControlError(f"{key}: expected a string")
    return value


def require_text(body: dict[str, Any], key: str) -> str:
    value = as_text(body, key)
    if not value:
        raise ControlError(f"{key}: required")
    return value


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlError(f"{what}: expected a JSON object")
    return value
