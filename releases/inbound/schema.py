"""OpenAPI pieces the API, /api/slo/ and the webhooks share, so /api/schema/ documents every
status code they answer and how each endpoint is authenticated (checked by schemathesis in
tests/fuzz/test_schema.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class WebhookAnswerSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="accepted, ignored, duplicate, spooled or unavailable")
    detail = serializers.CharField(required=False)
    id = serializers.CharField(required=False, help_text="the delivery id")


def detail(description: str) -> OpenApiResponse:
    return OpenApiResponse(DetailSerializer, description=description)


INVALID = OpenApiResponse(OpenApiTypes.OBJECT, description="the body or a query parameter is invalid")
REFUSED = {
    401: detail("no credentials, or a wrong token"),
    403: detail("authenticated by session without a CSRF token"),
}
NOT_FOUND = {404: detail("no such release")}
CONFLICT = {409: detail("the override is not allowed in the release's current state")}

# DRF answers a body it has no parser for (a missing or unknown Content-Type) with a 415.
UNSUPPORTED = {415: detail("the body is not JSON, a form or multipart")}


def webhook_responses() -> dict[int, Any]:
    answer = OpenApiResponse(WebhookAnswerSerializer, description="ignored or duplicate")
    return {
        200: answer,
        202: OpenApiResponse(WebhookAnswerSerializer, description="accepted: a gate or an action follows"),
        400: detail("malformed, or an event or resource Gatekeeper does not take"),
        401: detail("signature missing or wrong, no secret configured, or (Sentry) a stale timestamp"),
        413: detail("body over WEBHOOK_MAX_BODY"),
        503: OpenApiResponse(
            WebhookAnswerSerializer,
            description="PostgreSQL unreachable: spooled (kept, replayed when it returns) or unavailable",
        ),
    }


class _SignatureScheme(OpenApiAuthenticationExtension):
    header = ""
    description = ""

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": self.header, "description": self.description}


class VercelSignatureScheme(_SignatureScheme):
    target_class = "releases.inbound.vercel.VercelSignature"
    name = "vercelSignature"
    header = "x-vercel-signature"
    description = "hex HMAC-SHA1 of the raw body with VERCEL_WEBHOOK_SECRET"


class SentrySignatureScheme(_SignatureScheme):
    target_class = "releases.inbound.sentry.SentrySignature"
    name = "sentrySignature"
    header = "Sentry-Hook-Signature"
    description = "hex HMAC-SHA256 of the raw body with SENTRY_WEBHOOK_SECRET (and Sentry-Hook-Timestamp)"
