"""Distinctive secret values and where to look for them: logs, messages, admin pages."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from gatekeeper.logs import TextFormatter
from releases.models import Action, Incident, Project, Release, WebhookDelivery


def distinctive() -> dict[str, str]:
    """One value per credential, each unmistakable in any text it leaks into."""

    def mark(name: str) -> str:
        return f"{name}-{secrets.token_hex(10)}-LEAK"

    return {
        "VERCEL_TOKEN": mark("vrcl"),
        "VERCEL_WEBHOOK_SECRET": mark("vhook"),
        "SENTRY_AUTH_TOKEN": mark("sntrys"),
        "SENTRY_WEBHOOK_SECRET": mark("shook"),
        "SLACK_BOT_TOKEN": "xoxb-" + mark("slack"),
        "DD_API_KEY": mark("ddapi"),
        "DD_APP_KEY": mark("ddapp"),
        "POSTHOG_API_KEY": mark("phx"),
        "SLO_AUTH_TOKEN": mark("slo"),
        # PagerDuty wants exactly 32 characters; still nothing else looks like it.
        "PAGERDUTY_ROUTING_KEY": "pdkey" + secrets.token_hex(11) + "LEAKS",
    }


def leaks(values: dict[str, str], texts: dict[str, str]) -> list[str]:
    """Which secret (by name) shows up where (by label); empty when nothing leaked."""
    return sorted(
        f"{name} in {label}"
        for label, text in texts.items()
        for name, value in values.items()
        if value in text
    )


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the process logs at DEBUG, formatted as production prints it (tracebacks too)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    # The production formatter, extra fields included: a secret passed as extra= is a leak too.
    handler.setFormatter(TextFormatter(settings.LOGGING["formatters"]["plain"]["format"]))
    handler.setLevel(logging.DEBUG)
    # httpx and httpcore too, though settings keep them at WARNING: an operator chasing a
    # problem turns them up, and then every request URL and line is logged.
    loggers = [logging.getLogger(name) for name in ("", "httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    loggers[0].addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        loggers[0].removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def admin_pages(client: Client) -> dict[str, str]:
    """Every change list and change page of what Gatekeeper stores, as a superuser sees them."""
    user, _ = User.objects.get_or_create(
        username="leak-auditor", defaults={"is_staff": True, "is_superuser": True}
    )
    client.force_login(user)
    pages: dict[str, str] = {}
    for model in (Project, Release, Action, WebhookDelivery, Incident):
        base = f"/admin/releases/{model._meta.model_name}/"
        paths = [base] + [f"{base}{pk}/change/" for pk in model.objects.values_list("pk", flat=True)]
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            pages[path] = response.content.decode()
    return pages


def stored_text() -> dict[str, str]:
    """What the database keeps that people read: errors, reasons, results, payloads."""
    texts: dict[str, str] = {}
    for action in Action.objects.all():
        texts[f"action {action.pk}"] = f"{action.last_error} {action.result} {action.payload}"
    for release in Release.objects.prefetch_related("events", "checks"):
        texts[f"release {release.pk} events"] = " ".join(f"{e.reason} {e.data}" for e in release.events.all())
        texts[f"release {release.pk} checks"] = " ".join(
            f"{c.error} {c.reasons}" for c in release.checks.all()
        )
    for incident in Incident.objects.all():
        texts[f"incident {incident.pk}"] = f"{incident.reason} {incident.description}"
    return texts


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)
