"""GET /healthz: can this process reach its database and its broker? And is the dispatcher running?"""

from __future__ import annotations

import time
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from releases.inbound import spool
from releases.scheduling import stall


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


def _dispatch() -> dict[str, Any]:
    """When the poll dispatcher last ran and which beat holds the lease: ``dispatch_stalled`` is
    the field for tools, ``dispatch`` the sentence for people."""
    try:
        state = stall.dispatch_state()
    except DatabaseError as exc:
        return {"dispatch": f"unknown ({type(exc).__name__})", "dispatch_stalled": None, "beat_leader": None}
    if state.last_run_at is None:
        text = f"stalled: never ran ({state.age:.0f} s)" if state.stalled else "not run yet"
    elif state.stalled:
        text = f"stalled: last ran {state.age:.0f} s ago"
    else:
        text = f"ok ({state.age:.1f} s ago)"
    return {
        "dispatch": text,
        "dispatch_stalled": state.stalled,
        "dispatch_age_s": None if state.last_run_at is None else round(state.age, 1),
        "beat_leader": state.leader or None,
    }


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
    if "database" not in problems:
        body.update(_dispatch())
    # Webhooks kept while PostgreSQL was unreachable, not yet replayed: reported, never a 503 by
    # itself (the worker replays them once the database answers).
    body["spool"] = _spool()
    body["took_ms"] = int((time.monotonic() - started) * 1000)
    # A stalled dispatcher is reported, not answered with 503: this process still takes webhooks,
    # and the web healthcheck and load balancers act on the status code. Out of rotation, web
    # would lose the deliveries that are waiting for beat to come back; the stall pages instead
    # (releases/scheduling/stall.py).
    return JsonResponse(body, status=200 if not problems else 503)
