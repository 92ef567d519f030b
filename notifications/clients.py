"""The Slack and PagerDuty clients built from settings, shared per process like the vendors' (see
releases/integrations/clients.py)."""

from __future__ import annotations

from django.conf import settings

from notifications.pagerduty import PagerDutyClient
from notifications.slack import SlackClient
from releases.integrations.clients import shared


def slack() -> SlackClient:
    url, token, timeout = settings.SLACK_API_URL, settings.SLACK_BOT_TOKEN, settings.PROVIDER_TIMEOUT
    return shared(("slack", url, token, timeout), lambda: SlackClient(url, token, timeout=timeout))


def pagerduty() -> PagerDutyClient:
    url, timeout = settings.PAGERDUTY_EVENTS_URL, settings.PROVIDER_TIMEOUT
    return shared(("pagerduty", url, timeout), lambda: PagerDutyClient(url, timeout=timeout))
