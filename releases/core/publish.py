"""Sending work to the Celery workers, by task name.

Tasks are defined in ``releases/tasks.py`` alone, the top layer; the code below it publishes
them by name, so no module imports the task module and the layers keep pointing one way.
"""

from __future__ import annotations

from typing import Any

from celery import current_app


def task(name: str) -> Any:
    """The registered task called ``name`` (e.g. ``releases.run_action``), for ``apply_async``.

    Looked up in the app's registry, so eager mode (GATEKEEPER_INLINE_TASKS) and a test that
    replaces a task's ``apply_async`` see the same object the worker runs.
    """
    return current_app.tasks[name]
