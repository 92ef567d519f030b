from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from gatekeeper.health import healthz
from releases.api import ReleaseViewSet
from releases.slo_api import SloView
from releases.webhooks import SentryWebhookView, VercelWebhookView

router = DefaultRouter()
router.register("releases", ReleaseViewSet, basename="release")

admin.site.site_header = "Gatekeeper"
admin.site.site_title = "Gatekeeper"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/slo/", SloView.as_view(), name="slo"),
    path("api/", include(router.urls)),
    path("webhooks/vercel/", VercelWebhookView.as_view(), name="webhook-vercel"),
    path("webhooks/sentry/", SentryWebhookView.as_view(), name="webhook-sentry"),
    path("healthz", healthz, name="healthz"),
    path("healthz/", healthz),
]
