"""Outbound signed webhook deliveries to Gatekeeper (Vercel docs/vendor-apis.md §1, Sentry §3.5).

The signature is computed over the exact bytes that go on the wire and nothing touches them
afterwards; that is the property a receiver's raw-body verification depends on.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from simulator.wire import ControlError

if TYPE_CHECKING:
    from simulator.state import Simulator

VERCEL_TIMEOUT = 30.0  # Vercel aborts a delivery after 30 s (§1.1)
SENTRY_TIMEOUT = 1.0  # Sentry's response budget for integration webhooks (§3.5)
TAMPERING = ("bad_signature", "no_signature")
MAX_LOGGED_DELIVERIES = 5_000
RETRY_ATTEMPTS = 6  # first try plus retries after 1, 2, 4, 8 and 16 s
RETRY_BACKOFF = 1.0
_BODY_PREVIEW = 4_000

# The simulator talks to a local Gatekeeper: an HTTP(S) proxy from the environment would only
# get in the way (or swallow deliveries), so the opener ignores proxy settings.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Delivery:
    event_id: str
    type: str
    url: str
    status: int | None
    body: str | None
    error: str | None
    attempt: int
    at: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "status": self.status,
            "body": self.body,
            "error": self.error,
        }


def vercel_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


def sentry_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None, str | None]:
    """(status, response text, error) for one POST; never raises for HTTP or network failures."""
    if not url.startswith(("http://", "https://")):
        return None, None, f"not an http(s) URL: {url!r}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked above
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.status, answer.read(_BODY_PREVIEW).decode("utf-8", errors="replace"), None
    except urllib.error.HTTPError as failure:
        text = failure.read(_BODY_PREVIEW).decode("utf-8", errors="replace")
        return failure.code, text, None
    except (urllib.error.URLError, OSError, ValueError) as failure:
        reason = getattr(failure, "reason", failure)
        return None, None, f"{type(failure).__name__}: {reason}"


def check_tamper(value: Any) -> str | None:
    if value is not None and value not in TAMPERING:
        raise ControlError(f"tamper: one of {', '.join(TAMPERING)}")
    return value


class WebhookSender:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._log: list[Delivery] = []
        self._lock = threading.Lock()

    def deliver(
        self,
        *,
        url: str,
        body: bytes,
        headers: dict[str, str],
        event_id: str,
        event_type: str,
        timeout: float,
        repeat: int = 1,
        parallel: bool = False,
        attempt: int = 1,
    ) -> list[Delivery]:
        """Send the same bytes ``repeat`` times, at once from threads when ``parallel``
        (a duplicate-delivery race), else one after another."""
        if repeat < 1:
            raise ControlError("repeat: at least 1")

        def once() -> Delivery:
            status, text, error = post(url, body, headers, timeout)
            delivery = Delivery(event_id, event_type, url, status, text, error, attempt, self.sim.now())
            self._record(delivery)
            return delivery

        if not parallel or repeat == 1:
            return [once() for _ in range(repeat)]
        results: list[Delivery | None] = [None] * repeat
        barrier = threading.Barrier(repeat)

        def worker(index: int) -> None:
            barrier.wait()
            results[index] = once()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(repeat)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [result for result in results if result is not None]

    def deliver_later(
        self,
        *,
        build: Callable[[], tuple[str, bytes, dict[str, str], str, str]],
        timeout: float,
        first_attempt: int = 1,
        last_attempt: int = RETRY_ATTEMPTS,
        backoff: float = RETRY_BACKOFF,
    ) -> None:
        """Deliver from a background thread, retrying non-2xx answers with exponential backoff
        as Vercel does (for up to a day there; about half a minute here, enough to ride out a
        Gatekeeper that is still starting). A reset abandons the retries."""
        generation, wake = self.sim.generation, self.sim.wake

        def run() -> None:
            url, body, headers, event_id, event_type = build()
            for attempt in range(first_attempt, last_attempt + 1):
                if attempt > 1:
                    wake.wait(backoff * 2 ** (attempt - 2))
                if self.sim.generation != generation:
                    return
                [delivery] = self.deliver(
                    url=url,
                    body=body,
                    headers=headers,
                    event_id=event_id,
                    event_type=event_type,
                    timeout=timeout,
                    attempt=attempt,
                )
                if delivery.ok:
                    return

        threading.Thread(target=run, daemon=True, name="webhook-delivery").start()

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self._log.append(delivery)
            del self._log[:-MAX_LOGGED_DELIVERIES]

    def list(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(d) for d in self._log if event_type is None or d.type == event_type]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()


def target_url(sim: Simulator, override: Any, path: str) -> str:
    if override is not None:
        if not isinstance(override, str) or not override:
            raise ControlError("target: a URL")
        return override
    base = sim.options.gatekeeper_url
    if not base:
        raise ControlError("no gatekeeper URL configured (--gatekeeper-url) and no target given")
    return base.rstrip("/") + path
