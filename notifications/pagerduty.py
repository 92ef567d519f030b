"""PagerDuty Events API v2 client: alert events on ``/v2/enqueue`` (docs/vendor-apis.md §4.1).

Events are idempotent by ``dedup_key``: a resent trigger updates the open alert instead of
paging twice, so an unclear outcome (read timeout, 5xx) is safe to retry. The client still
reports ``maybe_delivered`` as the base decides; the caller knows PagerDuty tolerates a resend.

The routing key is the only credential (there is no auth header), so it is checked locally,
never echoed in our own messages, and scrubbed from anything PagerDuty sends back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from releases.core.errors import ProviderError
from releases.integrations.http import DEFAULT_TIMEOUT, HttpClient, as_dict, opt_str

EVENTS_PATH = "/v2/enqueue"
ROUTING_KEY_LENGTH = 32
SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_BODY_BYTES = 512 * 1024

# Error text is capped *after* the routing key is scrubbed, so a cut can never leave half a key.
MAX_ERROR_TEXT = 500
REDACTED = "[redacted]"
ELLIPSIS = "…"


class PagerDutyClient(HttpClient):
    provider = "pagerduty"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Accept "https://events.pagerduty.com" and the full ".../v2/enqueue" endpoint alike.
        base = base_url.rstrip("/").removesuffix(EVENTS_PATH)
        super().__init__(base, timeout=timeout, transport=transport, clock=clock)

    # --- vendor conventions --------------------------------------------------------------------

    # retry_after_from is the base's: PagerDuty documents neither a 429 body nor Retry-After
    # (§4.1), so a Retry-After is honoured when one comes and otherwise retry_after stays None
    # and the caller's backoff applies. We do not invent a default wait.

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        # {"status": "invalid event", "message": "Event object is invalid", "errors": [...]}
        # on 400 and 5xx (§4.1, §7.4); a 429 may have an empty body. Not truncated here: the
        # text may echo the routing key, and it is scrubbed before it is capped.
        try:
            body = response.json()
        except ValueError:
            return (response.text or response.reason_phrase, None)
        if not isinstance(body, dict):
            return (response.text or response.reason_phrase, None)
        status = body.get("status")
        message = body.get("message")
        errors = body.get("errors")
        parts = [message] if isinstance(message, str) and message else []
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(error) for error in errors))
        code = status if isinstance(status, str) and status else None
        return (": ".join(parts) or code or response.reason_phrase, code)

    # --- calls -------------------------------------------------------------------------------

    def trigger(
        self,
        routing_key: str,
        *,
        dedup_key: str,
        summary: str,
        source: str,
        severity: str = "critical",
        component: str | None = None,
        group: str | None = None,
        event_class: str | None = None,
        custom_details: dict[str, Any] | None = None,
        links: Sequence[tuple[str, str]] = (),
        client: str = "Gatekeeper",
        client_url: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Open (or update) the alert for ``dedup_key``; returns the dedup key PagerDuty echoes.

        ``links`` are ``(href, text)`` pairs. ``summary`` longer than PagerDuty's 1024
        characters is shortened rather than refused: a page with a cut summary beats no page.
        """
        if severity not in SEVERITIES:
            raise self._refuse(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        if not summary.strip():
            raise self._refuse("summary is empty")
        if not source.strip():
            raise self._refuse("source is empty")
        payload: dict[str, Any] = {
            "summary": _truncated(summary, MAX_SUMMARY),
            "source": source,
            "severity": severity,
        }
        if timestamp is not None:
            if timestamp.tzinfo is None or timestamp.utcoffset() is None:
                raise self._refuse("timestamp must be timezone-aware")
            payload["timestamp"] = timestamp.astimezone(UTC).isoformat(timespec="milliseconds")
        optional = {"component": component, "group": group, "class": event_class}
        payload.update({key: value for key, value in optional.items() if value is not None})
        if custom_details is not None:
            payload["custom_details"] = custom_details
        event: dict[str, Any] = {"payload": payload, "client": client}
        if client_url is not None:
            event["client_url"] = client_url
        if links:
            if any(not href for href, _text in links):
                raise self._refuse("every link needs an href")
            event["links"] = [{"href": href, "text": text} for href, text in links]
        return self._send(routing_key, "trigger", dedup_key, event)

    def resolve(self, routing_key: str, dedup_key: str) -> str:
        return self._send(routing_key, "resolve", dedup_key, {})

    # --- one event -----------------------------------------------------------------------------

    def _send(self, routing_key: str, action: str, dedup_key: str, extra: dict[str, Any]) -> str:
        try:
            body = self._event(routing_key, action, dedup_key, extra)
            response = self.request("POST", EVENTS_PATH, json=body, expect=(202,))
            # 202 means PagerDuty took the event; an unreadable answer is resent, harmlessly,
            # because the resend carries the same dedup_key.
            echoed = self.parse(response, _read_accepted, maybe_delivered=True)
        except ProviderError as exc:
            _scrub(exc, routing_key)
            raise
        return echoed or dedup_key

    def _event(self, routing_key: str, action: str, dedup_key: str, extra: dict[str, Any]) -> dict[str, Any]:
        """The wire body, checked against the limits PagerDuty would answer 400 for (§4.1)."""
        # The length, never the value: the key is a secret.
        if len(routing_key) != ROUTING_KEY_LENGTH:
            raise self._refuse(f"routing_key must be {ROUTING_KEY_LENGTH} characters, got {len(routing_key)}")
        if not dedup_key.strip():
            raise self._refuse("dedup_key is empty")
        if len(dedup_key) > MAX_DEDUP_KEY:
            raise self._refuse(f"dedup_key is {len(dedup_key)} characters, at most {MAX_DEDUP_KEY} allowed")
        body = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key, **extra}
        try:
            # Encoded the way httpx encodes `json=` (0.28), so the size checked is the size sent.
            size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            raise self._refuse(f"event is not JSON-serialisable: {exc}") from exc
        if size > MAX_BODY_BYTES:
            raise self._refuse(f"event is {size} bytes, PagerDuty accepts at most {MAX_BODY_BYTES}")
        return body

    def _refuse(self, problem: str) -> ProviderError:
        """An event PagerDuty would reject with a 400: nothing is sent, and resending cannot help."""
        return ProviderError(f"{EVENTS_PATH}: {problem}", provider=self.provider, permanent=True)


def _read_accepted(data: Any) -> str | None:
    # `dedup_key` is documented in the 202 body; when it is missing the one we sent stands.
    return opt_str(as_dict(data, "enqueue answer"), "dedup_key", "enqueue") or None


def _truncated(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _scrub(exc: ProviderError, routing_key: str) -> None:
    """Keep the routing key out of anything that reaches logs, even if an answer echoed it."""
    message = exc.message.replace(routing_key, REDACTED) if routing_key else exc.message
    exc.message = _truncated(message, MAX_ERROR_TEXT)
    exc.args = (exc.message,)


def routing_key_from_env(name: str) -> str:
    """The routing key in the environment variable ``name`` (keys are never stored): refused for
    good when it is not set."""
    key = os.environ.get(name, "").strip()
    if not key:
        raise ProviderError(
            f"the environment variable {name} (the PagerDuty routing key) is not set",
            provider="pagerduty",
            permanent=True,
        )
    return key
