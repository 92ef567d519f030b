"""GET /healthz: can this process reach its database and its broker?"""

from __future__ import annotations

import time
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from releases.inbound import spool


def _database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return f"{type(exc).__name__}"
    return None


def _broker() -> str | None:
    from gatekeeper.celery import app

    try:
        with app.connection_for_write() as conn:
            # One attempt, bounded by the broker's socket timeout (settings, BROKER_SOCKET_TIMEOUT):
            # a Redis that accepts and never answers costs the probe about a second.
            conn.ensure_connection(max_retries=0, timeout=2)
    except Exception as exc:  # kombu raises its own and socket errors; any of them means unreachable
        return f"{type(exc).__name__}"
    return None


def _spool() -> dict[str, Any]:
    try:
        return spool.waiting()
    except OSError as exc:
        return {"waiting": None, "error": type(exc).__name__}


def healthz(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    problems = {name: error for name, error in (("database", _database()), ("broker", _broker())) if error}
    body: dict[str, Any] = {
        "ok": not problems,
        "database": "ok" if "database" not in problems else f"unreachable ({problems['database']})",
        "broker": "ok" if "broker" not in problems else f"unreachable ({problems['broker']})",
    }
    # Webhooks kept while PostgreSQL was unreachable, not yet replayed: reported, never a 503 by
    # itself (the worker replays them once the database answers).
    body["spool"] = _spool()
    body["took_ms"] = int((time.monotonic() - started) * 1000)
    return JsonResponse(body, status=200 if not problems else 503)
