"""Provider clients built from settings, so a test or demo changes only the base URLs.

Clients are kept per process and reused: each holds a connection pool, so an action does not pay
for a new TCP and TLS handshake with the vendor (tens of milliseconds on the rollback path).
A client is keyed by everything it was built from, so changed settings get a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings

from notifications.pagerduty import PagerDutyClient
from notifications.slack import SlackClient
from releases.providers.base import HttpClient
from releases.providers.datadog import DatadogClient
from releases.providers.posthog import PostHogClient
from releases.providers.sentry import SentryClient
from releases.providers.vercel import VercelClient

if TYPE_CHECKING:
    from releases.models import Project

C = TypeVar("C", bound=HttpClient)
_clients: dict[tuple[object, ...], HttpClient] = {}
_lock = threading.Lock()


def _shared(key: tuple[object, ...], make: Callable[[], C]) -> C:
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make()
    return client  # type: ignore[return-value]


def vercel(project: Project) -> VercelClient:
    team = project.vercel_team_id or None
    key = ("vercel", settings.VERCEL_API_URL, settings.VERCEL_TOKEN, team, settings.PROVIDER_TIMEOUT)
    return _shared(
        key,
        lambda: VercelClient(
            settings.VERCEL_API_URL, settings.VERCEL_TOKEN, team_id=team, timeout=settings.PROVIDER_TIMEOUT
        ),
    )


def sentry(timeout: float | None = None) -> SentryClient:
    url, token = settings.SENTRY_API_URL, settings.SENTRY_AUTH_TOKEN
    timeout = timeout or settings.PROVIDER_TIMEOUT
    return _shared(("sentry", url, token, timeout), lambda: SentryClient(url, token, timeout=timeout))


def datadog(timeout: float | None = None) -> DatadogClient:
    """``timeout``: a canary check's own, instead of PROVIDER_TIMEOUT."""
    url, timeout = settings.DATADOG_API_URL, timeout or settings.PROVIDER_TIMEOUT
    api_key, app_key = settings.DD_API_KEY, settings.DD_APP_KEY
    return _shared(
        ("datadog", url, api_key, app_key, timeout),
        lambda: DatadogClient(url, api_key, app_key, timeout=timeout),
    )


def posthog(timeout: float | None = None) -> PostHogClient:
    url, key = settings.POSTHOG_API_URL, settings.POSTHOG_API_KEY
    timeout = timeout or settings.PROVIDER_TIMEOUT
    return _shared(("posthog", url, key, timeout), lambda: PostHogClient(url, key, timeout=timeout))


def slack() -> SlackClient:
    url, token, timeout = settings.SLACK_API_URL, settings.SLACK_BOT_TOKEN, settings.PROVIDER_TIMEOUT
    return _shared(("slack", url, token, timeout), lambda: SlackClient(url, token, timeout=timeout))


def pagerduty() -> PagerDutyClient:
    url, timeout = settings.PAGERDUTY_EVENTS_URL, settings.PROVIDER_TIMEOUT
    return _shared(("pagerduty", url, timeout), lambda: PagerDutyClient(url, timeout=timeout))
