"""What both webhooks share: the raw body, its HMAC signature, and JSON the database can store.

Status codes: 401 bad or missing signature (or no secret configured), 413 body over the
limit, 400 malformed or unsupported, 200 duplicate or ignored, 202 accepted, 503 PostgreSQL
unreachable (the delivery is kept in the spool and replayed when it returns).

A view verifies (its authentication class), then hands the verified bytes and the headers it
reads, an ``Inbound``, to its source's ``take``: the one handling the spool's replay runs too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from releases.inbound import spool
from releases.inbound.spool import Inbound

logger = logging.getLogger(__name__)

# PostgreSQL unreachable (refused, reset, restarting): the delivery is kept, not lost. Any other
# database error (an IntegrityError, a bug) is not an outage and is not spooled.
DATABASE_DOWN = (OperationalError, InterfaceError)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "body too large"
    default_code = "too_large"


class Malformed(exceptions.ParseError):
    """400 with a sentence naming what is wrong."""


def raw_body(request: HttpRequest) -> bytes:
    limit = settings.WEBHOOK_MAX_BODY
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise PayloadTooLarge(f"body over {limit} bytes") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    return body


class HmacSignature(BaseAuthentication):
    """Signature over the raw body, compared in constant time; no secret means no entry."""

    source = ""
    header = ""
    algorithm: Callable[..., Any] = hashlib.sha256

    def secret(self) -> str:
        raise NotImplementedError

    def authenticate(self, request: Request) -> tuple[None, str]:
        secret = self.secret()
        if not secret:
            logger.error(f"{self.source}.webhook.no_secret")
            raise exceptions.AuthenticationFailed(f"no {self.source} webhook secret is configured")
        if not self.signed(request._request, secret):
            logger.warning(f"{self.source}.webhook.invalid_signature")
            raise exceptions.AuthenticationFailed("signature missing or wrong")
        return (None, self.source)

    @classmethod
    def signed(cls, request: HttpRequest, secret: str) -> bool:
        """Whether the header carries the HMAC of the raw body with ``secret`` (constant time)."""
        given = request.META.get("HTTP_" + cls.header.upper().replace("-", "_"), "")
        return cls.matches(raw_body(request), given, secret)

    @classmethod
    def matches(cls, body: bytes, given: str, secret: str) -> bool:
        """Whether ``given`` is the HMAC of ``body`` with ``secret`` (constant time)."""
        expected = hmac.new(secret.encode("utf-8"), body, cls.algorithm).hexdigest()
        # As bytes: a header with a non-ASCII byte arrives as Latin-1 text, and compare_digest
        # refuses non-ASCII str with a TypeError (a 500) instead of answering False.
        given_bytes = given.strip().lower().encode("utf-8", "replace")
        return bool(given) and hmac.compare_digest(expected.encode(), given_bytes)

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403.
        return f'HMAC header="{self.header}"'


class WebhookView(APIView):
    permission_classes = [AllowAny]
    parser_classes: list[Any] = []  # we parse the verified raw bytes ourselves
    # Senders read JSON: no browsable API on a webhook.
    renderer_classes: list[Any] = [JSONRenderer]
    throttle_classes: list[Any] = []

    source = ""
    # What ``take`` reads besides the body, and the signature the replay checks again.
    kept_headers: tuple[str, ...] = ()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raw_body(request._request)  # 413 before anything else reads or verifies the body
        super().initial(request, *args, **kwargs)

    def take(self, inbound: Inbound) -> Response:
        raise NotImplementedError

    def take_or_keep(self, request: Request) -> Response:
        """Handle the verified delivery; with PostgreSQL unreachable, keep it in the spool."""
        inbound = Inbound(
            source=self.source,
            body=raw_body(request._request),
            headers={name: request.headers[name] for name in self.kept_headers if name in request.headers},
        )
        try:
            return self.take(inbound)
        except DATABASE_DOWN as exc:
            return kept(inbound, exc)


def kept(inbound: Inbound, error: Exception) -> Response:
    """503 either way, with JSON: kept for replay, or (the disk refused too) not kept."""
    try:
        path = spool.keep(inbound)
    except OSError:
        logger.error(
            "spool.write_failed",
            extra={"source": inbound.source, "record": inbound.id, "error": type(error).__name__},
            exc_info=True,
        )
        return Response(
            {"status": "unavailable", "detail": "database unreachable and the delivery could not be kept"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    logger.warning(
        "spool.written",
        extra={
            "source": inbound.source,
            "record": inbound.id,
            "file": path.name,
            "kept_by_process": spool.kept_total(),
            "error": type(error).__name__,
        },
    )
    return Response(
        {
            "status": "spooled",
            "detail": "database unreachable; kept and replayed when it returns",
            "id": inbound.id,
        },
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def read_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object the database can store, or Malformed naming what is wrong."""
    try:
        # NaN/Infinity are not JSON (RFC 8259) and PostgreSQL's jsonb refuses them: a 400, not a 500.
        data = json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
        raise Malformed(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Malformed("body must be a JSON object")
    problem = _unstorable(data)
    if problem:
        raise Malformed(f"body contains {problem}, which cannot be stored")
    return data


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    # 1e999 is valid JSON but no float: Python reads it as inf, which jsonb refuses (a 500).
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


# PostgreSQL's jsonb cannot store U+0000, and a lone surrogate (JSON "\\ud800") has no UTF-8 form.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(data: Any) -> str:
    """What in ``data`` the database would refuse; walked without recursion, as nesting may be deep."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found = _UNSTORABLE.search(value)
            if found:
                char = found.group()
                if char == "\x00":
                    return "a NUL character (\\u0000)"
                return f"a lone surrogate (\\u{ord(char):04x})"
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return ""


class BadPayload(Exception):
    pass
