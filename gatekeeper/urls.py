from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from gatekeeper.health import healthz
from releases.inbound.sentry import SentryWebhookView
from releases.inbound.vercel import VercelWebhookView
from releases.ops.api import ReleaseViewSet
from releases.ops.metrics_api import metrics
from releases.ops.slo_api import SloView

router = DefaultRouter()
router.register("releases", ReleaseViewSet, basename="release")

admin.site.site_header = "Gatekeeper"
admin.site.site_title = "Gatekeeper"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/slo/", SloView.as_view(), name="slo"),
    path("api/", include(router.urls)),
    path("webhooks/vercel/", VercelWebhookView.as_view(), name="webhook-vercel"),
    path("webhooks/sentry/", SentryWebhookView.as_view(), name="webhook-sentry"),
    path("healthz", healthz, name="healthz"),
    path("healthz/", healthz),
    path("metrics", metrics, name="metrics"),
    path("metrics/", metrics),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """An API client gets JSON for a path no route matches (e.g. /api/releases/1.5/), as the schema says."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found
