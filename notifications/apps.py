from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # Registers the Slack and PagerDuty outbox handlers.
        from notifications import delivery  # noqa: F401
