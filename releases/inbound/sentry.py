"""Sentry's integration webhook: verify (signature and timestamp), read, record, hand off, answer.

Sentry waits one second and never retries, so nothing outbound happens here: the alert is
decided in the request's transaction (``releases/workflows/alert_rollback.py``) and its
rollback is dispatched when that commits. Dispatch is on ``Sentry-Hook-Resource`` through a
table: ``metric_alert`` is read, the other resources Sentry sends are acknowledged and ignored,
anything else is a 400. Sentry gives each delivery a fresh Request-ID, so repeats are
recognised by the incident and the action instead: a delivery kept in the spool while PostgreSQL
was down and replayed twice is a duplicate the second time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from releases.core.deliveries import Outcome
from releases.inbound.common import BadPayload, HmacSignature, Malformed, WebhookView, read_json
from releases.inbound.schema import webhook_responses
from releases.inbound.spool import Inbound
from releases.models import WebhookDelivery
from releases.workflows.alert_rollback import Alert, decide_once

logger = logging.getLogger(__name__)


class SentrySignature(HmacSignature):
    source = "sentry"
    header = "sentry-hook-signature"
    # HMAC-SHA256 of the raw body with the client secret (docs/vendor-apis.md §3.5).
    algorithm = hashlib.sha256
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


class SentryWebhookView(WebhookView):
    """Sentry's budget is one second and it never retries: record, enqueue on commit, answer."""

    authentication_classes = [SentrySignature]
    source = "sentry"
    kept_headers = ("sentry-hook-resource", "sentry-hook-timestamp", "sentry-hook-signature", "request-id")

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses=webhook_responses(),
        parameters=[
            OpenApiParameter("Sentry-Hook-Resource", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("Sentry-Hook-Timestamp", str, OpenApiParameter.HEADER, required=True),
        ],
    )
    def post(self, request: Request) -> Response:
        return self.take_or_keep(request)

    def take(self, inbound: Inbound) -> Response:
        return take(inbound)


def take(inbound: Inbound) -> Response:
    """Handle a delivery whose signature was checked: the live request's path and the replay's."""
    resource = inbound.headers.get("sentry-hook-resource", "").strip()
    if not resource:
        raise Malformed("Sentry-Hook-Resource: the header is missing")
    data = read_json(inbound.body)
    if resource in IGNORED_RESOURCES or resource not in READERS:
        # A resource Sentry adds later is acknowledged like the ones we know we do not use:
        # Sentry marks an integration whose webhook answers errors as failing.
        note = (
            f"{resource}: not used by Gatekeeper"
            if resource in IGNORED_RESOURCES
            else f"{resource}: a resource Gatekeeper does not know; acknowledged"
        )
        # Keyed by the signed bytes, not the Request-ID: a retry or a replayed capture carries
        # a new Request-ID over the same body, and each one would otherwise write a row.
        key = hashlib.sha256(inbound.body).hexdigest()
        _, created = WebhookDelivery.objects.get_or_create(
            source="sentry",
            delivery_id=f"{resource}:{key}",
            defaults={
                "event_type": resource,
                "outcome": WebhookDelivery.Outcome.IGNORED,
                "payload": data,
                "note": note,
            },
        )
        return Response({"status": "ignored" if created else "duplicate"}, status=status.HTTP_200_OK)
    try:
        alert = READERS[resource](data)
    except BadPayload as exc:
        raise Malformed(str(exc)) from exc
    outcome = HANDLERS[resource](alert, data)
    if outcome is None:
        return Response({"status": "duplicate", "id": alert.delivery_id}, status=status.HTTP_200_OK)
    logger.info(
        "sentry.webhook.received",
        extra={"resource": resource, "action": alert.action, "outcome": outcome.status},
    )
    code = status.HTTP_202_ACCEPTED if outcome.accepted else status.HTTP_200_OK
    return Response(
        {"status": outcome.status, "detail": outcome.detail, "id": alert.delivery_id}, status=code
    )


IGNORED_RESOURCES = frozenset(
    {"installation", "event_alert", "issue", "error", "comment", "seer", "preprod_artifact"}
)
ACTIONS = frozenset({"critical", "warning", "resolved"})


def _text(value: Any, field: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (required and str(value) == ""):
        raise BadPayload(f"{field}: must be a string")
    return str(value)


def read_metric_alert(data: dict[str, Any]) -> Alert:
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:  # a list or object is unhashable
        raise BadPayload(f"action: must be one of {', '.join(sorted(ACTIONS))}")
    body = data.get("data")
    if not isinstance(body, dict) or not isinstance(body.get("metric_alert"), dict):
        raise BadPayload("data.metric_alert: must be an object")
    incident = body["metric_alert"]
    rule = incident.get("alert_rule") if incident.get("alert_rule") is not None else {}
    if not isinstance(rule, dict):
        raise BadPayload("data.metric_alert.alert_rule: must be an object")
    projects = incident.get("projects", rule.get("projects"))
    if not isinstance(projects, list) or not projects or not all(isinstance(p, str) for p in projects):
        raise BadPayload("data.metric_alert.projects: must be a list of project slugs")
    started_raw = incident.get("date_started")
    started = None
    if started_raw is not None:
        try:
            started = parse_datetime(started_raw) if isinstance(started_raw, str) else None
        except ValueError:  # well formed but impossible, e.g. month 13: a 400, not a 500
            started = None
        if started is None or started.tzinfo is None:
            raise BadPayload("data.metric_alert.date_started: must be an ISO-8601 time with a zone")
    environment = rule.get("environment")
    if environment is not None and not isinstance(environment, str):
        raise BadPayload("data.metric_alert.alert_rule.environment: must be a string or null")
    query = rule.get("query") or ""
    if not isinstance(query, str):
        raise BadPayload("data.metric_alert.alert_rule.query: must be a string")
    web_url = body.get("web_url") or ""
    if not isinstance(web_url, str) or (web_url and not web_url.startswith(("https://", "http://"))):
        raise BadPayload("data.web_url: must be a URL")
    return Alert(
        action=action,
        sentry_id=_text(incident.get("id"), "data.metric_alert.id")[:100],
        identifier=_text(incident.get("identifier"), "data.metric_alert.identifier", required=False)[:100],
        title=_text(incident.get("title"), "data.metric_alert.title", required=False)[:500],
        projects=tuple(projects),
        started_at=started,
        environment=environment or None,
        query=query,
        description=_text(body.get("description_text"), "data.description_text", required=False)[:2000],
        web_url=web_url[:500],
    )


HANDLERS: dict[str, Callable[[Alert, dict[str, Any]], Outcome | None]] = {"metric_alert": decide_once}
READERS: dict[str, Callable[[dict[str, Any]], Alert]] = {"metric_alert": read_metric_alert}
