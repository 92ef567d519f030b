"""Reading settings from the environment, loudly.

A typo in an environment variable should stop the process at start-up with the variable's
name and what was wrong, not surface an hour later as a gate that never decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str) -> str:
    value = env_str(name, default)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def database_from_url(url: str, base_dir: Path) -> dict[str, Any]:
    """Django DATABASES entry from ``postgres://user:pw@host:port/name`` or ``sqlite:///path``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as dj-database-url reads them
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        name = Path(path) if Path(path).is_absolute() else base_dir / (path or "db.sqlite3")
        # Web, worker and beat share the file in `make run`: wait for locks instead of failing,
        # and take the write lock up front so two writers never deadlock upgrading a read lock.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(name),
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no database")
        options: dict[str, Any] = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        # Parameters bound by the server, not quoted in Python: our rows carry JSON (payloads,
        # messages), and quoting it client-side was the largest cost of a webhook request.
        options.setdefault("server_side_binding", True)
        # Prepared statements: planning the hot queries (a claim joins three wide tables) costs
        # PostgreSQL more than running them. Django turns them off for transaction-mode poolers;
        # behind PgBouncer < 1.21 set ?prepare_threshold=none in DATABASE_URL.
        threshold = str(options.get("prepare_threshold", "2")).strip().lower()
        if threshold in ("", "none"):
            options["prepare_threshold"] = None
        elif threshold.isdigit():
            options["prepare_threshold"] = int(threshold)
        else:
            raise ImproperlyConfigured(
                f"DATABASE_URL prepare_threshold must be a number or none, not {threshold!r}"
            )
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            # Keep connections across requests/tasks; health-checked so a restarted
            # PostgreSQL costs one failed query, not a dead worker.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported (use postgres:// or sqlite:///)"
    )
