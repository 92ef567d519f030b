"""Slack Web API (docs/vendor-apis.md §5.1): ``chat.postMessage`` and ``chat.update``.

Slack answers logical errors with HTTP 200 and ``{"ok": false, "error": ...}``; only rate
limiting (429 + Retry-After) and outages use other status codes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from simulator.service import Service
from simulator.wire import ControlError, Request, Response, as_text, json_response

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.state import Simulator

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")
_TOKEN = re.compile(r"^xox[abpe]-[A-Za-z0-9-]+$")
MAX_TEXT = 40_000
BOT_ID, APP_ID = "B0SIMBOT0001", "A0SIMAPP0001"
BOT_USER, TEAM_ID = "U0SIMBOT0001", "T0SIMTEAM001"
# What ``manage.py doctor`` asks: who the token is, and whether the bot is in a channel.
LOOKUPS = {
    "auth.test": "auth_test",
    "conversations.info": "conversation_info",
    "conversations.list": "conversations",
}


def ok(payload: dict[str, Any], status: int = 200) -> Response:
    return json_response(status, {"ok": True, **payload})


def fail(error: str, status: int = 200, **extra: Any) -> Response:
    return json_response(status, {"ok": False, "error": error, **extra})


def channel_id_for(name: str) -> str:
    """A stable fake ID per channel name, so tests can predict it across restarts."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest().upper()
    return "C0" + digest[:9]


@dataclass
class Channel:
    id: str
    name: str
    missing: bool = False
    archived: bool = False
    member: bool = True


@dataclass
class SlackState:
    channels: dict[str, Channel] = field(default_factory=dict)  # by id
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_ts_us: int = 0


class SlackService(Service):
    name = "slack"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.state = SlackState()

    def reset(self) -> None:
        self.state = SlackState()

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return fail("invalid_request", 405)
        method = request.path.removeprefix("/api/")
        if method not in ("chat.postMessage", "chat.update", *LOOKUPS):
            return fail("unknown_method", 404)
        args, warning = self._arguments(request)
        if args is None:
            return fail(warning or "invalid_arguments")
        token = request.bearer() or (args.get("token") if isinstance(args.get("token"), str) else None)
        if not token:
            return fail("not_authed")
        required = self.sim.required_token("slack")
        if (required is not None and token != required) or (required is None and not _TOKEN.match(token)):
            return fail("invalid_auth")
        with self.sim.lock:
            if method in LOOKUPS:
                response = getattr(self, LOOKUPS[method])(args)
            else:
                response = self.post(args) if method == "chat.postMessage" else self.update(args)
        if warning and response.status == 200:
            _add_warning(response, warning)
        return response

    def _arguments(self, request: Request) -> tuple[dict[str, Any] | None, str | None]:
        """Arguments from a JSON or form body, plus a warning Slack would attach."""
        content_type = (request.header("content-type") or "").lower()
        if content_type.startswith("application/json"):
            try:
                body = request.json()
            except (ValueError, UnicodeDecodeError):
                return None, "invalid_json"
            if not isinstance(body, dict):
                return None, "invalid_json"
            return body, None if "charset" in content_type else "missing_charset"
        pairs = dict(parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True))
        form: dict[str, Any] = dict(pairs)
        for key in ("blocks", "attachments"):  # URL-encoded JSON strings in form bodies
            if isinstance(form.get(key), str):
                try:
                    form[key] = json.loads(form[key])
                except ValueError:
                    form[key] = "invalid"
        return form, None

    def channel(self, ref: str) -> Channel | None:
        """Known channel, a new one for a fresh name or ID, or None for a channel that does not
        exist (registered missing, or named like ``#does-not-exist``)."""
        name = ref.lstrip("#")
        for known in self.state.channels.values():
            if ref == known.id or name == known.name:
                return None if known.missing else known
        if "does-not-exist" in name or "not-found" in name:
            return None
        if _CHANNEL_ID.match(ref):
            created = Channel(id=ref, name=ref)
        else:
            created = Channel(id=channel_id_for(name), name=name)
        self.state.channels[created.id] = created
        return created

    def next_ts(self) -> str:
        now_us = int(self.sim.now() * 1_000_000)
        self.state.last_ts_us = max(now_us, self.state.last_ts_us + 1)  # unique and increasing
        seconds, micros = divmod(self.state.last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _content(self, args: dict[str, Any]) -> tuple[str | None, Any, str | None]:
        text, blocks = args.get("text"), args.get("blocks")
        if blocks is not None and (
            not isinstance(blocks, list)
            or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
        ):
            return None, None, "invalid_blocks"
        if not (isinstance(text, str) and text) and not blocks and not args.get("attachments"):
            return None, None, "no_text"
        if isinstance(text, str) and len(text) > MAX_TEXT:
            return None, None, "msg_too_long"
        return text if isinstance(text, str) else None, blocks, None

    def _target(self, args: dict[str, Any]) -> tuple[Channel | None, str | None]:
        ref = args.get("channel")
        channel = self.channel(ref) if isinstance(ref, str) and ref else None
        if channel is None:
            return None, "channel_not_found"
        if channel.archived:
            return None, "is_archived"
        if not channel.member:
            return None, "not_in_channel"
        return channel, None

    def post(self, args: dict[str, Any]) -> Response:
        channel, error = self._target(args)
        if channel is None:
            return fail(error or "channel_not_found")
        text, blocks, error = self._content(args)
        if error:
            return fail(error)
        ts = self.next_ts()
        stored = {
            "channel": channel.id,
            "channel_name": f"#{channel.name}" if channel.name != channel.id else channel.id,
            "ts": ts,
            "text": text,
            "blocks": blocks,
            "attachments": args.get("attachments"),
            "thread_ts": args.get("thread_ts"),
            "edited": False,
        }
        self.state.messages.append(stored)
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": text or "",
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "ts": ts,
        }
        if blocks:
            message["blocks"] = blocks
        if stored["thread_ts"]:
            message["thread_ts"] = stored["thread_ts"]
        return ok({"channel": channel.id, "ts": ts, "message": message})

    def update(self, args: dict[str, Any]) -> Response:
        channel, error = self._target(args)
        if channel is None:
            return fail(error or "channel_not_found")
        ts = args.get("ts")
        stored = next((m for m in self.state.messages if m["channel"] == channel.id and m["ts"] == ts), None)
        if stored is None:
            return fail("message_not_found")
        text, blocks, error = self._content(args)
        if error:
            return fail(error)
        stored.update(text=text, blocks=blocks, edited=True)
        message = {"text": text or "", "bot_id": BOT_ID, **({"blocks": blocks} if blocks else {})}
        return ok({"channel": channel.id, "ts": ts, "text": text or "", "message": message})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            response = fail("ratelimited", 429)
            # Slack always says how long to wait; its SDK falls back to 1 s without it.
            response.headers["Retry-After"] = str(
                int(fault.retry_after if fault.retry_after is not None else 1)
            )
        elif fault.kind == "timeout":
            response = fail("request_timeout", 504)
        else:
            status = fault.status or 503
            response = fail("service_unavailable" if status >= 500 else "invalid_request", status)
        if fault.empty_body:
            response.body = b""
            response.headers.pop("Content-Type", None)
        return response

    # --- control -------------------------------------------------------------------------------

    def auth_test(self, args: dict[str, Any]) -> Response:
        return ok(
            {
                "url": "https://sim-workspace.slack.com/",
                "team": "Sim Workspace",
                "user": "gatekeeper",
                "team_id": TEAM_ID,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        )

    def _channel_json(self, channel: Channel) -> dict[str, Any]:
        return {
            "id": channel.id,
            "name": channel.name,
            "is_channel": True,
            "is_private": False,
            "is_archived": channel.archived,
            "is_member": channel.member,
            "created": 1_700_000_000,
        }

    def conversation_info(self, args: dict[str, Any]) -> Response:
        ref = args.get("channel")
        if not isinstance(ref, str) or not ref:
            return fail("invalid_arguments")
        # Unlike chat.postMessage, conversations.info takes an id only, and knows no new ones.
        known = self.state.channels.get(ref)
        if known is None or known.missing:
            return fail("channel_not_found")
        return ok({"channel": self._channel_json(known)})

    def conversations(self, args: dict[str, Any]) -> Response:
        listed = [self._channel_json(c) for c in self.state.channels.values() if not c.missing]
        return ok({"channels": listed, "response_metadata": {"next_cursor": ""}})

    def register_channel(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (as_text(body, "name") or "").lstrip("#")
        if not name:
            raise ControlError("name: required")
        with self.sim.lock:
            channel = Channel(
                id=as_text(body, "id") or channel_id_for(name),
                name=name,
                missing=bool(body.get("missing", False)),
                archived=bool(body.get("archived", False)),
                member=not body.get("not_in_channel", False),
            )
            self.state.channels = {k: v for k, v in self.state.channels.items() if v.name != name}
            self.state.channels[channel.id] = channel
            return {
                "id": channel.id,
                "name": f"#{name}",
                "missing": channel.missing,
                "archived": channel.archived,
            }

    def messages(self, channel: str | None) -> list[dict[str, Any]]:
        with self.sim.lock:
            wanted = channel.lstrip("#") if channel else None
            return [
                dict(m)
                for m in self.state.messages
                if wanted is None or wanted in (m["channel"], m["channel_name"].lstrip("#"))
            ]


def _add_warning(response: Response, warning: str) -> None:
    payload = json.loads(response.body)
    payload["warning"] = warning
    payload["response_metadata"] = {"warnings": [warning]}
    response.body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
