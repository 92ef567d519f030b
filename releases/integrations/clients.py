"""Provider clients built from settings, so a test or demo changes only the base URLs.

Clients are kept per process and reused: each holds a connection pool, so an action does not pay
for a new TCP and TLS handshake with the vendor (tens of milliseconds on the rollback path).
A client is keyed by everything it was built from, so changed settings get a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from releases.integrations.datadog.client import DatadogClient
from releases.integrations.http import HttpClient
from releases.integrations.posthog.client import PostHogClient
from releases.integrations.sentry.client import SentryClient
from releases.integrations.vercel.client import VercelClient
from releases.models import Project

C = TypeVar("C", bound=HttpClient)
_clients: dict[tuple[object, ...], HttpClient] = {}
_lock = threading.Lock()


def shared(key: tuple[object, ...], make: Callable[[], C]) -> C:
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make()
    return client  # type: ignore[return-value]


def vercel(project: Project) -> VercelClient:
    team = project.vercel_team_id or None
    key = ("vercel", settings.VERCEL_API_URL, settings.VERCEL_TOKEN, team, settings.PROVIDER_TIMEOUT)
    return shared(
        key,
        lambda: VercelClient(
            settings.VERCEL_API_URL, settings.VERCEL_TOKEN, team_id=team, timeout=settings.PROVIDER_TIMEOUT
        ),
    )


def sentry(timeout: float | None = None) -> SentryClient:
    url, token = settings.SENTRY_API_URL, settings.SENTRY_AUTH_TOKEN
    timeout = timeout or settings.PROVIDER_TIMEOUT
    return shared(("sentry", url, token, timeout), lambda: SentryClient(url, token, timeout=timeout))


def datadog(timeout: float | None = None) -> DatadogClient:
    """``timeout``: a canary check's own, instead of PROVIDER_TIMEOUT."""
    url, timeout = settings.DATADOG_API_URL, timeout or settings.PROVIDER_TIMEOUT
    api_key, app_key = settings.DD_API_KEY, settings.DD_APP_KEY
    return shared(
        ("datadog", url, api_key, app_key, timeout),
        lambda: DatadogClient(url, api_key, app_key, timeout=timeout),
    )


def posthog(timeout: float | None = None) -> PostHogClient:
    url, key = settings.POSTHOG_API_URL, settings.POSTHOG_API_KEY
    timeout = timeout or settings.PROVIDER_TIMEOUT
    return shared(("posthog", url, key, timeout), lambda: PostHogClient(url, key, timeout=timeout))
