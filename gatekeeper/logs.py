"""Log lines for people (``LOG_FORMAT=text``) and for log pipelines (``LOG_FORMAT=json``).

Gatekeeper logs dotted event keys with their facts in ``extra=``
(``logger.info("sentry.webhook.received", extra={"resource": ..., "outcome": ...})``). The
standard formatter drops those facts; both formatters here keep them: as ``key=value`` after
the message, or as fields of one JSON object per line.

Nothing a record carries may break logging: a value JSON cannot encode is written as its
``repr``. Some extras are never written: Django's ``request`` (headers and cookies), and any
field whose name says it holds a credential.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

# Every attribute a LogRecord has before ``extra=`` is applied, and those formatting adds.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Django's request loggers pass the HttpRequest itself: its headers carry cookies and tokens.
_NEVER = frozenset({"request"})
_SECRET_NAME = re.compile(r"token|secret|password|passwd|authorization|api_key|apikey|cookie", re.I)
REDACTED = "[redacted]"
# Fields of the JSON object itself; an extra of the same name is written as ``extra.<name>``.
_RESERVED = frozenset({"timestamp", "level", "logger", "message", "exception", "stack"})
_BARE = re.compile(r"^[\w.:/@+-]*$")


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ is the object's bug, not a reason to lose the line
        return f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra=`` fields, in the order given, credentials redacted."""
    found: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or key in _NEVER or key.startswith("_"):
            continue
        if value is record.args:
            continue  # Celery passes its message's arguments again as ``data``: already in the line
        found[key] = REDACTED if _SECRET_NAME.search(key) else value
    return found


def release_id(fields: dict[str, Any]) -> Any:
    """The release a record is about, from ``release_id`` or ``release`` (an id or a Release)."""
    for key in ("release_id", "release"):
        value = fields.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int | str):
            return value
        pk = getattr(value, "pk", None)
        if isinstance(pk, int | str):
            return pk
    return None


def _jsonable(value: object) -> Any:
    """``json.dumps``' fallback: ISO dates, lists for sets and tuples, a repr for the rest."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return _safe_repr(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, the extras, the release id,
    and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        fields = extras(record)
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._message(record),
        }
        found = release_id(fields)
        if found is not None:
            line["release_id"] = found
        for key, value in fields.items():
            line[f"extra.{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(line, default=_jsonable, ensure_ascii=False)
        except (TypeError, ValueError):
            # A circular structure, or a dict whose keys are not strings: each extra as its repr.
            for key in fields:
                name = f"extra.{key}" if key in _RESERVED else key
                line[name] = _safe_repr(line[name])
            return json.dumps(line, default=_jsonable, ensure_ascii=False)

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        try:
            return record.getMessage()
        except Exception:  # a format string whose arguments do not fit it: keep both, unformatted
            return f"{record.msg!s} {_safe_repr(record.args)}"


def _text_value(value: object) -> str:
    if isinstance(value, str):
        return value if value and _BARE.match(value) else json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    try:
        return json.dumps(value, default=_jsonable, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return _safe_repr(value)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> <message> key=value ...``, then the traceback if any.

    Values with spaces or quotes are written as JSON strings, so a line splits unambiguously.
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        # dictConfig passes settings.LOGGING's "format" as ``fmt`` (logging.config, configure_formatter).
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(message)s", datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = extras(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
