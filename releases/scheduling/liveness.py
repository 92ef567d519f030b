"""Is a worker consuming, and is the scheduler running? For healthchecks (docker-compose).

A worker process can be alive and still do nothing: its connection to Redis wedged, its pool
children hung, stopped by a debugger or the OOM killer's near miss. Celery's own ``inspect ping``
is answered by the worker's main process even then, so it proves little. ``probe_worker``
sends a real task to the worker's own queue (``worker_direct``) and waits for it to run: the
answer comes back only if the worker fetched a message and a pool process executed it.

``mark_dispatch`` / ``dispatch_age``: the dispatcher notes each run, so a check can tell that
beat is sending and that some worker is consuming the ``schedule`` queue.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid

import redis
from django.conf import settings

from releases.core.publish import task

ALIVE_PREFIX = "gatekeeper:alive:"
DISPATCH_KEY = "gatekeeper:dispatch:last"
_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One pool per broker URL: the dispatcher notes every run, once a second.
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


def mark_dispatch() -> None:
    """Note that the dispatcher ran (one SET a second; losing it with Redis costs nothing)."""
    # The dispatch itself already failed or succeeded; this is only for healthchecks.
    with contextlib.suppress(redis.RedisError):
        _redis().set(DISPATCH_KEY, repr(time.time()), ex=3600)


def dispatch_age() -> float | None:
    """Seconds since the dispatcher last ran; None if never (or Redis forgot)."""
    raw = _redis().get(DISPATCH_KEY)
    return None if raw is None else max(0.0, time.time() - float(raw))
