"""Provider clients built from settings, so a test or demo changes only the base URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from notifications.pagerduty import PagerDutyClient
from notifications.slack import SlackClient
from releases.providers.sentry import SentryClient
from releases.providers.vercel import VercelClient

if TYPE_CHECKING:
    from releases.models import Project


def vercel(project: Project) -> VercelClient:
    return VercelClient(
        settings.VERCEL_API_URL,
        settings.VERCEL_TOKEN,
        team_id=project.vercel_team_id or None,
        timeout=settings.PROVIDER_TIMEOUT,
    )


def sentry() -> SentryClient:
    return SentryClient(
        settings.SENTRY_API_URL, settings.SENTRY_AUTH_TOKEN, timeout=settings.PROVIDER_TIMEOUT
    )


def slack() -> SlackClient:
    return SlackClient(settings.SLACK_API_URL, settings.SLACK_BOT_TOKEN, timeout=settings.PROVIDER_TIMEOUT)


def pagerduty() -> PagerDutyClient:
    return PagerDutyClient(settings.PAGERDUTY_EVENTS_URL, timeout=settings.PROVIDER_TIMEOUT)
