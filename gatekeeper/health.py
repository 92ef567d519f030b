"""GET /healthz: can this process reach its database and its broker?"""

from __future__ import annotations

import time

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse


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
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=1, timeout=2)
    except Exception as exc:  # kombu raises its own and socket errors; any of them means unreachable
        return f"{type(exc).__name__}"
    return None


def healthz(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    problems = {name: error for name, error in (("database", _database()), ("broker", _broker())) if error}
    body = {
        "ok": not problems,
        "database": "ok" if "database" not in problems else f"unreachable ({problems['database']})",
        "broker": "ok" if "broker" not in problems else f"unreachable ({problems['broker']})",
        "took_ms": int((time.monotonic() - started) * 1000),
    }
    return JsonResponse(body, status=200 if not problems else 503)
