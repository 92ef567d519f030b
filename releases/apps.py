from __future__ import annotations

from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the outbox handlers and system checks.
        from releases import checks, executors, ramp, ramp_moves  # noqa: F401
