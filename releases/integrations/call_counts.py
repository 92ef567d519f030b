"""How many calls each provider client made, and how they ended: counted in Redis for /metrics.

Provider calls happen in worker processes, on many machines, and leave no row behind, so a
counter kept in one process would show /metrics (answered by some web process) nothing of them.
prometheus_client's multiprocess mode shares counters only between processes on one host. So
each call adds one to a field of one Redis hash (``HINCRBY``, one round trip), and the metrics
collector reads the hash whole.

Redis is only the broker here and may lose everything at any moment (DESIGN.md, Processes):
losing the hash resets the counters, which Prometheus' ``rate()`` and ``increase()`` read as a
counter reset, as they do a restarted process. Counting never raises and never holds a call up
for long: a 1 s socket timeout, and after a failure no attempt for ``BACKOFF`` seconds, so a
blackholed Redis costs one call a second at most, not every call one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from django.conf import settings

from releases.core.errors import ProviderError, ProviderTimeout

logger = logging.getLogger(__name__)
KEY = "gatekeeper:metrics:provider_calls"
BACKOFF = 30.0
SOCKET_TIMEOUT = 1.0

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
# Until when (time.monotonic) counting is skipped after Redis failed to answer.
_backoff = {"until": 0.0}


def result_of(exc: ProviderError) -> str:
    """A short, bounded label for how a failed call ended (never the vendor's own text)."""
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if exc.status is None:
        return "network_error"
    if exc.status == 429:
        return "rate_limited"
    if exc.status >= 500:
        return "server_error"
    if exc.status >= 400:
        return "client_error"
    return "unexpected_status"


def _client() -> redis.Redis | None:
    url = str(getattr(settings, "CELERY_BROKER_URL", ""))
    # Counting needs Redis; with another broker (RabbitMQ), provider calls are simply not counted.
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
            )
        return _clients[url]


def _field(vendor: str, result: str) -> str:
    return f"{vendor}:{result}"


def record(vendor: str, result: str) -> None:
    """Count one call of ``vendor`` that ended with ``result``. Never raises."""
    if time.monotonic() < _backoff["until"]:
        return
    try:
        client = _client()
        if client is not None:
            client.hincrby(KEY, _field(vendor, result), 1)
    except (redis.RedisError, OSError):
        _backoff["until"] = time.monotonic() + BACKOFF
        logger.warning("metrics.provider_calls.unavailable", extra={"vendor": vendor, "result": result})


def read() -> dict[tuple[str, str], int]:
    """Every (vendor, result) counted so far. Raises redis.RedisError when Redis does not answer."""
    client = _client()
    if client is None:
        return {}
    counts: dict[tuple[str, str], int] = {}
    raw: dict[bytes, bytes] = client.hgetall(KEY)  # type: ignore[assignment]
    for field, value in raw.items():
        vendor, _, result = field.decode(errors="replace").partition(":")
        try:
            counts[(vendor, result)] = int(value)
        except ValueError:
            continue  # not ours: someone wrote the key by hand
    return counts


def reset() -> None:
    """Forget every count and any backoff (tests); a Redis that does not answer has nothing to forget."""
    _backoff["until"] = 0.0
    client = _client()
    if client is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            client.delete(KEY)
