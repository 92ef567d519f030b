"""``GET /api/slo/?deployment=<id>``: the drop-in health endpoint for an existing canary cron.

Runs the project's SLO checks for that deployment once, with the same code the canary ramp uses:
200 ``{"ok": true, "checks": [...]}`` when every check passes, 503 ``{"ok": false, ...}``
otherwise, including when a provider cannot be reached. A cron that bumps its canary only on two
200s, 30 s apart, keeps working unchanged and now judges real rates.

Each answer costs provider calls made with Gatekeeper's credentials, so the endpoint serves only
callers with ``SLO_AUTH_TOKEN``, or everyone when ``SLO_PUBLIC`` says so on purpose; a
measurement is kept for ``SLO_CACHE_SECONDS`` per deployment (concurrent callers in one process
wait for the one being made); and each client address is throttled (``SLO_RATE``). A cache that
fails (Redis gone) costs a fresh measurement, never an error.
"""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Any

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from releases.core.production import known_good
from releases.domain.lifecycle import ReleaseState
from releases.models import Release
from releases.workflows.canary.measuring import run_checks, specs_for

logger = logging.getLogger(__name__)
MAX_DEPLOYMENT_ID = 100
_measuring: dict[str, threading.Lock] = {}
_measuring_guard = threading.Lock()


class SloThrottle(SimpleRateThrottle):
    """Per client address. A cache that cannot be reached lets the request through: the
    measurement cache and the token still bound what it costs."""

    scope = "slo"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache backend's own errors (a Redis outage) have no common base
            logger.warning("slo.throttle_unavailable", exc_info=True)
            return True


def _authorised(request: Request) -> bool:
    token = settings.SLO_AUTH_TOKEN
    if not token:
        return bool(settings.SLO_PUBLIC)
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def previous_for(release: Release) -> Release | None:
    """What the deployment is compared with: during a ramp, the deployment it is replacing;
    otherwise the project's known-good deployment."""
    if release.state == ReleaseState.RAMPING and release.rollback_target:
        found = Release.objects.filter(deployment_id=release.rollback_target).first()
        if found is not None:
            return found
    return known_good(release.project, exclude=release)


class SloView(APIView):
    # Its own bearer token (SLO_AUTH_TOKEN), so a cron needs no Gatekeeper user.
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [SloThrottle]
    # No OPTIONS description: it would be the one answer an anonymous caller gets with a token set.
    metadata_class = None

    @extend_schema(
        parameters=[OpenApiParameter("deployment", str, required=True, description="Vercel deployment id")],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="every check passed"),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="no deployment given"),
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="SLO_AUTH_TOKEN is set and was not sent"),
            403: OpenApiResponse(
                OpenApiTypes.OBJECT, description="neither SLO_AUTH_TOKEN nor SLO_PUBLIC is set"
            ),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="this address asked too often (SLO_RATE)"),
            404: OpenApiResponse(OpenApiTypes.OBJECT, description="a deployment Gatekeeper has not seen"),
            503: OpenApiResponse(OpenApiTypes.OBJECT, description="a check failed or could not be measured"),
        },
    )
    def get(self, request: Request) -> Response:
        if not settings.SLO_AUTH_TOKEN and not settings.SLO_PUBLIC:
            return Response(
                {
                    "ok": False,
                    "error": "/api/slo/ is off: set SLO_AUTH_TOKEN (callers send it as a bearer token), "
                    "or SLO_PUBLIC=true to serve anyone",
                },
                status=status.HTTP_403_FORBIDDEN,
            )
        if not _authorised(request):
            return Response(
                {"ok": False, "error": "missing or wrong bearer token"},
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": 'Bearer realm="gatekeeper-slo"'},
            )
        deployment = request.query_params.get("deployment", "").strip()
        if not deployment or len(deployment) > MAX_DEPLOYMENT_ID or "\x00" in deployment:
            return Response(
                {"ok": False, "error": "deployment: a Vercel deployment id is required"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        release = Release.objects.select_related("project").filter(deployment_id=deployment).first()
        if release is None:
            return Response(
                {"ok": False, "error": f"deployment {deployment} is not known to Gatekeeper"},
                status=status.HTTP_404_NOT_FOUND,
            )
        specs = specs_for(release.project)
        if not specs:
            return Response(
                {
                    "ok": False,
                    "deployment": deployment,
                    "error": f"project {release.project.name} has no SLO checks (canary.checks)",
                    "checks": [],
                },
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        body = _measured(release)
        code = status.HTTP_200_OK if body["ok"] else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response(body, status=code, headers={"Cache-Control": "no-store"})


def _measured(release: Release) -> dict[str, Any]:
    """The checks' answer for the deployment: the one kept, or a new measurement kept for
    SLO_CACHE_SECONDS."""
    key = f"slo:{release.deployment_id}"
    with _measuring_guard:
        lock = _measuring.setdefault(key, threading.Lock())
    with lock:  # callers in this process that arrive while it is measured wait for that one
        kept = _cached(key)
        if kept is not None:
            return {**kept, "cached": True}
        result = run_checks(release.project, release, previous_for(release))
        body = result.to_json()
        if not result.ok:
            body["reasons"] = result.reasons
        try:
            cache.set(key, body, timeout=settings.SLO_CACHE_SECONDS)
        except Exception:  # a cache outage costs the next caller a measurement, nothing more
            logger.warning("slo.cache_unavailable", exc_info=True)
        return {**body, "cached": False}


def _cached(key: str) -> dict[str, Any] | None:
    if settings.SLO_CACHE_SECONDS <= 0:
        return None
    try:
        found = cache.get(key)
    except Exception:
        logger.warning("slo.cache_unavailable", exc_info=True)
        return None
    return found if isinstance(found, dict) else None
