"""Shared simulator state: options, clock, request log and the vendor services.

One re-entrant lock guards everything. The simulator is small and its handlers are quick, so a
single lock costs nothing measurable and rules out lock-ordering bugs between vendors.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from simulator.datadog import DatadogService
from simulator.faults import FaultStore
from simulator.pagerduty import PagerDutyService
from simulator.posthog import PostHogService
from simulator.sentry import SentryService
from simulator.sentry_incidents import IncidentStore
from simulator.sentry_projects import SentryDirectory
from simulator.slack import SlackService
from simulator.traffic import TrafficStore
from simulator.vercel import VercelService
from simulator.webhooks import WebhookSender
from simulator.wire import Request

# Enough for a long demo; old entries fall off so a simulator left running does not grow forever.
MAX_LOGGED_REQUESTS = 50_000
REDACTED = "[redacted]"


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 8900
    gatekeeper_url: str | None = None
    vercel_webhook_secret: str | None = None
    sentry_webhook_secret: str | None = None
    alias_delay: float = 0.5
    scenario: str | None = None
    required_tokens: dict[str, str] = field(default_factory=dict)
    verbose: bool = False


class RequestLog:
    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._seq = 0

    def start(self, request: Request, at: float) -> dict[str, Any]:
        self._seq += 1
        entry: dict[str, Any] = {
            "seq": self._seq,
            "at": at,
            "service": request.service,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": _redacted(request.logged_body()),
            "status": None,
            "fault": None,
            # Set only by an ``apply`` fault: the answer the vendor would have sent, had it not
            # been lost. Whether a faulted request changed anything is read from here.
            "applied_status": None,
        }
        self._entries.append(entry)
        return entry

    def select(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        since_seq: int = 0,
    ) -> list[dict[str, Any]]:
        return [
            dict(entry)
            for entry in self._entries
            if entry["seq"] > since_seq
            and (service is None or entry["service"] == service)
            and (method is None or entry["method"] == method.upper())
            and (path_contains is None or path_contains in entry["path"])
        ]

    def clear(self) -> None:
        # Sequence numbers keep rising across resets so a test's `since_seq` never goes stale.
        self._entries.clear()


def _redacted(body: Any) -> Any:
    """Tokens never reach the log: Slack form/JSON `token`, PagerDuty `routing_key` (suffix kept)."""
    if not isinstance(body, dict):
        return body
    clean = dict(body)
    if "token" in clean:
        clean["token"] = REDACTED
    key = clean.get("routing_key")
    if isinstance(key, str):
        clean["routing_key"] = "****" + key[-4:]
    return clean


class Simulator:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.lock = threading.RLock()
        self.clock_offset = 0.0
        # Bumped by reset: timers, retries and scenario timelines from before a reset see the
        # change and stop instead of mutating the fresh state.
        self.generation = 0
        # Hanging "timeout" faults wait on this so a reset or shutdown releases them.
        self.wake = threading.Event()
        self.log = RequestLog()
        self.inflight: dict[str, int] = {}
        self.faults = FaultStore()
        self.webhooks = WebhookSender(self)
        self.traffic = TrafficStore(self)
        self.sentry_projects = SentryDirectory(self)
        self.sentry_incidents = IncidentStore(self)
        self.vercel = VercelService(self)
        self.sentry = SentryService(self)
        self.slack = SlackService(self)
        self.pagerduty = PagerDutyService(self)
        self.datadog = DatadogService(self)
        self.posthog = PostHogService(self)
        self.services = {
            "vercel": self.vercel,
            "sentry": self.sentry,
            "slack": self.slack,
            "pagerduty": self.pagerduty,
            "datadog": self.datadog,
            "posthog": self.posthog,
        }

    def now(self) -> float:
        return time.time() + self.clock_offset

    def reset(self) -> None:
        with self.lock:
            self.generation += 1
            self.clock_offset = 0.0
            self.log.clear()
            self.faults.clear()
            self.webhooks.clear()
            self.traffic.clear()
            self.sentry_projects.clear()
            self.sentry_incidents.clear()
            for service in self.services.values():
                service.reset()
            self.wake.set()
            self.wake = threading.Event()

    def required_token(self, service: str) -> str | None:
        return self.options.required_tokens.get(service)
