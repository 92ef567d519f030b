"""Inbound webhooks: verify, record, enqueue, answer. Nothing outbound happens in the request.

Status codes: 401 bad or missing signature (or no secret configured), 413 body over the
limit, 400 malformed or unsupported, 200 duplicate or ignored, 202 accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from releases import sentry_events, vercel_events
from releases.models import WebhookDelivery
from releases.schema import webhook_responses

logger = logging.getLogger(__name__)


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
        body = raw_body(request)
        given = request.META.get("HTTP_" + cls.header.upper().replace("-", "_"), "")
        expected = hmac.new(secret.encode("utf-8"), body, cls.algorithm).hexdigest()
        # As bytes: a header with a non-ASCII byte arrives as Latin-1 text, and compare_digest
        # refuses non-ASCII str with a TypeError (a 500) instead of answering False.
        given_bytes = given.strip().lower().encode("utf-8", "replace")
        return bool(given) and hmac.compare_digest(expected.encode(), given_bytes)

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403.
        return f'HMAC header="{self.header}"'


class VercelSignature(HmacSignature):
    source = "vercel"
    header = "x-vercel-signature"
    algorithm = hashlib.sha1  # Vercel signs with HMAC-SHA1 (api-contracts.md §1.2)

    def secret(self) -> str:
        return settings.VERCEL_WEBHOOK_SECRET


class SentrySignature(HmacSignature):
    source = "sentry"
    header = "sentry-hook-signature"
    algorithm = hashlib.sha256  # HMAC-SHA256 of the raw body with the client secret (§3.5)
    # The timestamp is not signed (§3.5), so this only dampens replays of captured deliveries.
    window = 300.0

    def secret(self) -> str:
        return settings.SENTRY_WEBHOOK_SECRET

    def authenticate(self, request: Request) -> tuple[None, str]:
        identity = super().authenticate(request)
        raw = request.META.get("HTTP_SENTRY_HOOK_TIMESTAMP", "")
        try:
            sent = float(raw)
        except ValueError:
            sent = float("nan")
        if not abs(time.time() - sent) <= self.window:  # also refuses NaN
            logger.warning("sentry.webhook.stale_timestamp")
            raise exceptions.AuthenticationFailed("Sentry-Hook-Timestamp missing or outside +/-5 minutes")
        return identity


class WebhookView(APIView):
    permission_classes = [AllowAny]
    parser_classes: list[Any] = []  # we parse the verified raw bytes ourselves
    # Senders read JSON: no browsable API on a webhook.
    renderer_classes: list[Any] = [JSONRenderer]
    throttle_classes: list[Any] = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raw_body(request._request)  # 413 before anything else reads or verifies the body
        super().initial(request, *args, **kwargs)

    def parse_json(self, request: Request) -> dict[str, Any]:
        return read_json(raw_body(request._request))


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


class VercelWebhookView(WebhookView):
    authentication_classes = [VercelSignature]

    @extend_schema(request={"application/json": OpenApiTypes.OBJECT}, responses=webhook_responses())
    def post(self, request: Request) -> Response:
        envelope = self.parse_json(request)
        try:
            event = vercel_events.read_envelope(envelope)
            outcome = vercel_events.record(event, envelope)
        except vercel_events.BadPayload as exc:
            raise Malformed(str(exc)) from exc
        if outcome is None:
            return Response({"status": "duplicate", "id": event.id}, status=status.HTTP_200_OK)
        logger.info(
            "vercel.webhook.received", extra={"event": event.type, "id": event.id, "outcome": outcome.status}
        )
        code = status.HTTP_202_ACCEPTED if outcome.accepted else status.HTTP_200_OK
        return Response({"status": outcome.status, "detail": outcome.detail, "id": event.id}, status=code)


class SentryWebhookView(WebhookView):
    """Sentry's budget is one second and it never retries: record, enqueue on commit, answer."""

    authentication_classes = [SentrySignature]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses=webhook_responses(),
        parameters=[
            OpenApiParameter("Sentry-Hook-Resource", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("Sentry-Hook-Timestamp", str, OpenApiParameter.HEADER, required=True),
        ],
    )
    def post(self, request: Request) -> Response:
        resource = request.META.get("HTTP_SENTRY_HOOK_RESOURCE", "").strip()
        data = self.parse_json(request)
        if resource in sentry_events.IGNORED_RESOURCES:
            # Keyed by the signed bytes, not the Request-ID: a retry or a replayed capture carries
            # a new Request-ID over the same body, and each one would otherwise write a row.
            key = hashlib.sha256(raw_body(request._request)).hexdigest()
            _, created = WebhookDelivery.objects.get_or_create(
                source="sentry",
                delivery_id=f"{resource}:{key}",
                defaults={
                    "event_type": resource,
                    "outcome": WebhookDelivery.Outcome.IGNORED,
                    "payload": data,
                    "note": f"{resource}: not used by Gatekeeper",
                },
            )
            return Response({"status": "ignored" if created else "duplicate"}, status=status.HTTP_200_OK)
        reader = sentry_events.READERS.get(resource)
        if reader is None:
            raise Malformed(f"Sentry-Hook-Resource: unsupported resource {resource!r}")
        try:
            alert = reader(data)
        except vercel_events.BadPayload as exc:
            raise Malformed(str(exc)) from exc
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    source="sentry",
                    delivery_id=alert.delivery_id,
                    event_type=f"{resource}.{alert.action}",
                    outcome=WebhookDelivery.Outcome.IGNORED,
                    payload=data,
                )
                outcome = sentry_events.HANDLERS[resource](alert, delivery)
        except IntegrityError:
            return Response({"status": "duplicate", "id": alert.delivery_id}, status=status.HTTP_200_OK)
        logger.info(
            "sentry.webhook.received",
            extra={"resource": resource, "action": alert.action, "outcome": outcome.status},
        )
        code = status.HTTP_202_ACCEPTED if outcome.accepted else status.HTTP_200_OK
        return Response(
            {"status": outcome.status, "detail": outcome.detail, "id": alert.delivery_id}, status=code
        )
