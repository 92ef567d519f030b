"""Inbound webhooks: verify, record, enqueue, answer. Nothing outbound happens in the request.

Status codes: 401 bad or missing signature (or no secret configured), 413 body over the
limit, 400 malformed or unsupported, 200 duplicate or ignored, 202 accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from releases import vercel_events
from releases.models import WebhookDelivery

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
        body = raw_body(request._request)
        given = request.META.get("HTTP_" + self.header.upper().replace("-", "_"), "")
        expected = hmac.new(secret.encode("utf-8"), body, self.algorithm).hexdigest()
        if not given or not hmac.compare_digest(expected, given.strip().lower()):
            logger.warning(f"{self.source}.webhook.invalid_signature")
            raise exceptions.AuthenticationFailed("signature missing or wrong")
        return (None, self.source)

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 rather than 403.
        return f'HMAC header="{self.header}"'


class VercelSignature(HmacSignature):
    source = "vercel"
    header = "x-vercel-signature"
    algorithm = hashlib.sha1  # Vercel signs with HMAC-SHA1 (api-contracts.md §1.2)

    def secret(self) -> str:
        return settings.VERCEL_WEBHOOK_SECRET


class WebhookView(APIView):
    permission_classes = [AllowAny]
    parser_classes: list[Any] = []  # we parse the verified raw bytes ourselves
    throttle_classes: list[Any] = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raw_body(request._request)  # 413 before anything else reads or verifies the body
        super().initial(request, *args, **kwargs)

    def parse_json(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(raw_body(request._request))
        except (ValueError, UnicodeDecodeError) as exc:
            raise Malformed(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise Malformed("body must be a JSON object")
        return data


class VercelWebhookView(WebhookView):
    authentication_classes = [VercelSignature]

    def post(self, request: Request) -> Response:
        envelope = self.parse_json(request)
        try:
            event = vercel_events.read_envelope(envelope)
        except vercel_events.BadPayload as exc:
            raise Malformed(str(exc)) from exc
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    source="vercel",
                    delivery_id=event.id,
                    event_type=event.type,
                    outcome=WebhookDelivery.Outcome.IGNORED,
                    payload=envelope,
                )
                outcome = vercel_events.handle(event, delivery)
        except IntegrityError:
            return Response({"status": "duplicate", "id": event.id}, status=status.HTTP_200_OK)
        except vercel_events.BadPayload as exc:
            raise Malformed(str(exc)) from exc
        logger.info(
            "vercel.webhook.received", extra={"event": event.type, "id": event.id, "outcome": outcome.status}
        )
        code = status.HTTP_202_ACCEPTED if outcome.accepted else status.HTTP_200_OK
        return Response({"status": outcome.status, "detail": outcome.detail, "id": event.id}, status=code)
