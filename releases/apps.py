from __future__ import annotations

from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # What registers itself on import: the admin's model pages, the system checks, the
        # outbox handlers for promote, rollback, traffic moves and gate checks, and the Celery
        # tasks (so that publishing a task by name finds it in every process, not only in workers).
        from releases import tasks  # noqa: F401
        from releases.ops import admin, checks, token_admin  # noqa: F401
        from releases.workflows import learn_production, no_traffic, promotion  # noqa: F401
        from releases.workflows.canary import moves  # noqa: F401
