"""Slack Web API client: ``chat.postMessage`` (docs/vendor-apis.md §5.1).

Posting is not idempotent: a resend after an unclear outcome can post the message twice.
So every error says whether Slack may have posted it (``maybe_delivered``), and the outbox
only resends when it certainly did not.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from releases.core.errors import ProviderError
from releases.integrations.http import (
    DEFAULT_TIMEOUT,
    MAX_RETRY_AFTER,
    HttpClient,
    MalformedAnswer,
    as_dict,
    as_list,
    req_str,
    with_root,
)

API_ROOT = "/api"

# Slack's refusals that a later attempt can get past; every other code (channel_not_found,
# invalid_auth, invalid_blocks, msg_too_long, missing_scope, ...) needs a person to fix
# configuration or content, so retrying would only repeat it.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

# What the official SDK waits when a 429 has no Retry-After (§5.1).
DEFAULT_RETRY_AFTER = 1.0
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")
MAX_CHANNEL_PAGES = 50  # 10,000 channels at 200 a page: past that, say we could not find it
REDACTED = "[redacted]"


@dataclass(frozen=True)
class PostedMessage:
    channel: str  # the channel id Slack resolved a name to
    ts: str  # the message id within the channel; keep it as a string ("1767258971.004200")


@dataclass(frozen=True)
class _Refused:
    """``{"ok": false, "error": code}``: Slack read the request and did not post it."""

    code: str | None
    detail: str


class SlackClient(HttpClient):
    provider = "slack"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            with_root(base_url, API_ROOT),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
            clock=clock,
        )
        self._token = token

    # --- vendor conventions --------------------------------------------------------------------

    def retry_after_from(self, response: httpx.Response) -> float | None:
        explicit = super().retry_after_from(response)
        if explicit is None and response.status_code == 429:
            return DEFAULT_RETRY_AFTER
        return explicit

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        # A 429 still carries {"ok": false, "error": "ratelimited"}; anything else non-200
        # (a proxy, a wrong base URL) is whatever text came back.
        try:
            body = response.json()
        except ValueError:
            return super().error_message(response)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str) and error:
            return error, error
        return super().error_message(response)

    # --- calls -------------------------------------------------------------------------------

    def post_message(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> PostedMessage:
        try:
            return self._post_message(channel, text, blocks)
        except ProviderError as exc:
            self._scrub(exc)
            raise

    def _post_message(self, channel: str, text: str, blocks: list[dict[str, Any]] | None) -> PostedMessage:
        payload: dict[str, Any] = {"channel": channel, "text": text}
        if blocks is not None:
            payload["blocks"] = blocks
        response = self.request(
            "POST",
            "/chat.postMessage",
            json=payload,
            # Without the charset Slack accepts the body but adds a missing_charset warning.
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        # Slack answers HTTP 200 for success *and* for refusals; only `ok` tells (§5.1).
        # A 200 we cannot read may well have been posted, hence maybe_delivered=True.
        answer = self.parse(response, _read_answer, maybe_delivered=True)
        if isinstance(answer, PostedMessage):
            return answer
        transient = answer.code is None or answer.code in TRANSIENT_ERRORS
        retry_after = None
        if answer.code in ("ratelimited", "rate_limited"):
            asked = self.retry_after_from(response)
            retry_after = DEFAULT_RETRY_AFTER if asked is None else max(0.0, min(asked, MAX_RETRY_AFTER))
        raise ProviderError(
            f"POST /chat.postMessage: {answer.detail}",
            provider=self.provider,
            permanent=not transient,
            retry_after=retry_after,
            status=response.status_code,
            maybe_delivered=False,  # Slack said no: nothing was posted
            code=answer.code,
        )

    def lookup(self, method: str, **args: str) -> dict[str, Any]:
        """A read-only Web API call (``auth.test``, ``conversations.info``...): its answer, or a
        ProviderError whose ``code`` is Slack's error (``channel_not_found``, ``missing_scope``)."""
        try:
            response = self.request("POST", f"/{method}", data=args)
            body = self.parse(response, lambda data: as_dict(data, f"{method} answer"))
        except ProviderError as exc:
            self._scrub(exc)
            raise
        if body.get("ok") is True:
            return body
        code = body.get("error") if isinstance(body.get("error"), str) else None
        detail = code or "refused without an error code"
        if code == "missing_scope":
            detail += f" (needed {body.get('needed')!r})"
        raise ProviderError(f"{method}: {detail}", provider=self.provider, permanent=True, code=code)

    def find_channel(self, channel: str) -> dict[str, Any] | None:
        """The channel's ``conversations`` record (``is_member``, ``is_archived``), by id or
        ``#name``; None when the bot cannot see it (private and not invited, or no such channel)."""
        if CHANNEL_ID.match(channel):
            try:
                return dict(self.lookup("conversations.info", channel=channel)["channel"])
            except ProviderError as exc:
                if exc.code == "channel_not_found":
                    return None
                raise
        name, cursor = channel.lstrip("#"), ""
        for _ in range(MAX_CHANNEL_PAGES):
            page = self.lookup(
                "conversations.list", types="public_channel,private_channel", limit="200", cursor=cursor
            )
            for found in as_list(page.get("channels"), "channels"):
                if isinstance(found, dict) and found.get("name") == name:
                    return dict(found)
            cursor = str(
                as_dict(page.get("response_metadata") or {}, "response_metadata").get("next_cursor") or ""
            )
            if not cursor:
                return None
        return None

    def _scrub(self, exc: ProviderError) -> None:
        """Keep the token out of anything that reaches logs, even if a body echoed it."""
        if self._token and self._token in exc.message:
            exc.message = exc.message.replace(self._token, REDACTED)
            exc.args = (exc.message,)


def _read_answer(data: Any) -> PostedMessage | _Refused:
    body = as_dict(data, "chat.postMessage answer")
    ok = body.get("ok")
    if ok is True:
        return PostedMessage(
            channel=req_str(body, "channel", "chat.postMessage"),
            ts=req_str(body, "ts", "chat.postMessage"),
        )
    if ok is not False:
        raise MalformedAnswer(f"chat.postMessage.ok: expected true or false, got {ok!r}")
    code = body.get("error")
    if not isinstance(code, str) or not code:
        # Refused without saying why: not posted, and nothing suggests a resend will fail.
        return _Refused(code=None, detail="refused without an error code")
    detail = code
    if code == "missing_scope":  # name the scope an admin must grant
        detail += f" (needed {body.get('needed')!r}, provided {body.get('provided')!r})"
    return _Refused(code=code, detail=detail)
