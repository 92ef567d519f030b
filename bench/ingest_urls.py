"""Production's routes plus ``bench/bare/``: the floor bench/ingest.py compares the webhook with."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from gatekeeper.urls import urlpatterns as production

BARE_TABLE = "bench_ingest_bare"  # created by bench/ingest.py with raw SQL


@csrf_exempt  # as the webhook views are (DRF's APIView.as_view)
@require_POST
def bare(request: HttpRequest) -> JsonResponse:
    """One INSERT of the raw body, autocommitted: what any request that records something pays."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {BARE_TABLE} (body) VALUES (%s)", [request.body])  # noqa: S608
    return JsonResponse({"status": "stored"}, status=202)


urlpatterns = [*production, path("bench/bare/", bare, name="bench-bare")]
