"""Reading settings from the environment, loudly.

A typo in an environment variable should stop the process at start-up with the variable's
name and what was wrong, not surface an hour later as a gate that never decides.

`load_dotenv` first fills the environment from the project's ``.env`` (written by the first
``make run``), so ``manage.py`` commands typed later reach the same database with no secret
exported by hand. The environment always wins over the file.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

DEFAULT_CONNECT_TIMEOUT = 5  # seconds, psycopg's connect_timeout unless DATABASE_URL sets one
_DOTENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_SINGLE_QUOTED = re.compile(r"'([^']*)'\s*(?:#.*)?")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\s*(?:#.*)?')


def parse_dotenv(text: str, source: str = ".env") -> dict[str, str]:
    """``KEY=VALUE`` lines, the subset of docker compose's .env format that we write and need.

    Blank lines and ``#`` comments are skipped; ``export`` in front is allowed. A value is bare
    (a `` #`` starts a comment), 'single-quoted' (literal) or "double-quoted" (a backslash
    escapes the next character, ``\\n`` is a newline). Nothing is expanded. Any other line is
    refused with its line number, like a bad setting.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:
            raise ImproperlyConfigured(f"{source}:{number}: expected KEY=VALUE, got {raw!r}")
        key, value = match.groups()
        quote = value[:1]
        if quote in ("'", '"'):
            quoted = (_SINGLE_QUOTED if quote == "'" else _DOUBLE_QUOTED).fullmatch(value)
            if quoted is None:
                raise ImproperlyConfigured(f"{source}:{number}: {key}: unbalanced quotes in {value!r}")
            value = quoted[1]
            if quote == '"':
                value = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)
        else:
            value = re.split(r"\s#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


def dotenv_path(base_dir: Path) -> Path:
    """``GATEKEEPER_ENV_FILE`` (relative to the project) or the project's ``.env``."""
    return base_dir / os.environ.get("GATEKEEPER_ENV_FILE", ".env")


def dotenv_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """``GATEKEEPER_DOTENV=0`` turns the file off; so does running under pytest.

    The suite must see only what it sets itself: a developer's ``.env`` (demo URLs, tokens) must
    never change what a test talks to. pytest sets PYTEST_VERSION for the whole session, before
    pytest-django loads the settings, and every process a test starts inherits it.
    ``GATEKEEPER_DOTENV=1`` reads the file anyway (a test of `make run` itself does).
    """
    flag = environ.get("GATEKEEPER_DOTENV", "").strip()
    if flag:
        return flag != "0"
    return "PYTEST_VERSION" not in environ


# What no server may start without once DEBUG is off: Django's signing key (the development key
# in settings.py is public) and the secret of the webhook every workflow starts from. Sentry's is
# needed only for alerts; its endpoint refuses every delivery while it is unset.
REQUIRED_SECRETS = ("SECRET_KEY", "VERCEL_WEBHOOK_SECRET")


def missing_secrets(debug: bool, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The required secrets not set, checked when the settings load, so it holds for gunicorn,
    celery and manage.py alike (system checks run only under manage.py). The test session sets
    its own through the settings (PYTEST_VERSION, as in dotenv_enabled)."""
    if debug or "PYTEST_VERSION" in environ:
        return []
    return [name for name in REQUIRED_SECRETS if not environ.get(name, "").strip()]


def load_dotenv(base_dir: Path) -> dict[str, str]:
    """Copy the ``.env`` settings the environment does not already have into it; return those."""
    path = dotenv_path(base_dir)
    if not dotenv_enabled() or not path.is_file():
        return {}
    missing = {
        key: value
        for key, value in parse_dotenv(path.read_text(), str(path)).items()
        if key not in os.environ  # set, even to "", is the caller's choice: never overwritten
    }
    os.environ.update(missing)
    return missing


def dotenv_exports(path: Path) -> str:
    """Shell ``export`` lines for what `load_dotenv` would add: how scripts/run.sh reads .env."""
    values = parse_dotenv(path.read_text(), str(path))
    return "".join(
        f"export {key}={shlex.quote(value)}\n" for key, value in values.items() if key not in os.environ
    )


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
        db_file = Path(path) if Path(path).is_absolute() else base_dir / (path or "db.sqlite3")
        # Web, worker and beat share the file in `make run`: wait for locks instead of failing,
        # and take the write lock up front so two writers never deadlock upgrading a read lock.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(db_file),
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no database")
        options: dict[str, Any] = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        # Connection options ride in the URL's query string (e.g. ?sslmode=require). psycopg
        # wants prepare_threshold as a number, or None behind a transaction-mode pooler.
        if "prepare_threshold" in options:
            threshold = str(options["prepare_threshold"]).strip().lower()
            if threshold in ("", "none"):
                options["prepare_threshold"] = None
            elif threshold.isdigit():
                options["prepare_threshold"] = int(threshold)
            else:
                raise ImproperlyConfigured(
                    f"DATABASE_URL prepare_threshold must be a number or none, not {threshold!r}"
                )
        # A PostgreSQL that drops packets (a partition, a dead host) would hold each connection
        # attempt for the kernel's TCP timeout, minutes, past gunicorn's: a webhook would be lost
        # instead of spooled. The URL may set its own.
        options.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
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
