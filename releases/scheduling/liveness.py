"""Is a worker consuming, and is the scheduler running? For healthchecks (docker-compose).

A worker process can be alive and still do nothing: its connection to Redis wedged, its pool
children hung, stopped by a debugger or the OOM killer's near miss. Celery's own ``inspect ping``
is answered by the worker's main process even then, so it proves little. ``probe_worker``
sends a real task to the worker's own queue (``worker_direct``) and waits for it to run: the
answer comes back only if the worker fetched a message and a pool process executed it.

``mark_dispatch`` / ``dispatch_age``: the dispatcher notes each run in PostgreSQL (one UPDATE of
one row a second), so a check can tell that beat is sending and that some worker is consuming the
``schedule`` queue. Not in Redis: the broker may lose everything, and a stall must not be
reported (or missed) because it did.
"""

from __future__ import annotations

import socket
import time
import uuid
from datetime import datetime

import redis
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from releases.core.publish import task
from releases.models import Heartbeat

ALIVE_PREFIX = "gatekeeper:alive:"
DISPATCH = "dispatch"  # the dispatcher's Heartbeat
_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One pool per broker URL: a probe polls for its answer every 50 ms.
    url = settings.CELERY_BROKER_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _clients[url]


def default_hostname() -> str:
    """Celery's default node name, as the worker in this container calls itself."""
    return f"celery@{socket.gethostname()}"


def answer(token: str) -> None:
    """Run by the ``releases.ping`` task inside the worker."""
    _redis().set(ALIVE_PREFIX + token, "1", ex=300)


def probe_worker(hostname: str, timeout: float) -> float | None:
    """Seconds until ``hostname`` ran a ping task sent to its own queue; None if it did not."""
    from celery.utils.nodenames import worker_direct

    token = uuid.uuid4().hex
    started = time.monotonic()
    # The message expires with the probe: a wedged worker that wakes up later has nothing to do.
    task("releases.ping").apply_async((token,), queue=worker_direct(hostname), expires=timeout, retry=False)
    client = _redis()
    while time.monotonic() - started < timeout:
        if client.delete(ALIVE_PREFIX + token):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def mark_dispatch(now: datetime | None = None) -> None:
    """Note that the dispatcher ran: called after each run that did not fail."""
    now = now or timezone.now()
    if not Heartbeat.objects.filter(name=DISPATCH).update(last_at=now, runs=F("runs") + 1):
        # A new database's first run. Two at once: one insert wins, the other run goes uncounted.
        Heartbeat.objects.bulk_create([Heartbeat(name=DISPATCH, last_at=now, runs=1)], ignore_conflicts=True)


def dispatch_heartbeat() -> Heartbeat | None:
    return Heartbeat.objects.filter(name=DISPATCH).first()


def dispatch_age(now: datetime | None = None) -> float | None:
    """Seconds since the dispatcher last ran; None if it never did."""
    beat = dispatch_heartbeat()
    if beat is None or beat.last_at is None:
        return None
    return max(0.0, ((now or timezone.now()) - beat.last_at).total_seconds())
