"""GET /metrics: Prometheus' text format, read from PostgreSQL at scrape time (releases/ops/metrics.py).

Meant for the internal network, where Prometheus scrapes each web replica over plain HTTP
(settings exempt it from the HTTPS redirect, like /healthz). With ``METRICS_AUTH_TOKEN`` set, a
scrape must send ``Authorization: Bearer <token>``; unset, /metrics is open, which is safe only
where nobody outside that network can reach it. It shows counts of releases and projects' names,
never a credential, a payload or an error text.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from releases.ops.metrics import registry

logger = logging.getLogger(__name__)
_registry = registry()


def _authorized(request: HttpRequest) -> bool:
    token = str(getattr(settings, "METRICS_AUTH_TOKEN", "") or "")
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant time, and over bytes: compare_digest refuses non-ASCII str.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("metrics: bearer token required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        body = generate_latest(_registry)
    except DatabaseError as exc:
        # Prometheus marks the target down (up == 0) on any non-2xx: the alert for that is
        # docs/prometheus-alerts.yml's GatekeeperMetricsDown.
        logger.warning("metrics.database_unavailable", extra={"error": type(exc).__name__})
        return HttpResponse(
            f"metrics: database unavailable ({type(exc).__name__})\n", status=503, content_type="text/plain"
        )
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
