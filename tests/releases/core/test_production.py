"""The rollback target: the latest release promoted and never rolled back, other than the live one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from releases.core.production import known_good, live_and_known_good
from releases.models import Project
from tests.factories import make_project, make_release

pytestmark = pytest.mark.django_db


def live(project: Project, deployment_id: str) -> Project:
    Project.objects.filter(pk=project.pk).update(live_deployment_id=deployment_id)
    project.refresh_from_db()
    return project


@pytest.mark.parametrize(
    "history",
    [
        # (name, promoted minutes ago or None, rolled back?)
        [("a", 30, False), ("b", 20, False), ("live", 5, False)],
        [("a", 30, False), ("b", 20, True), ("live", 5, False)],
        [("a", 30, True), ("live", 5, False)],
        [("live", 5, False)],
        [("a", 30, False), ("staged", None, False), ("live", 5, False)],
        [("a", 30, False), ("live", 40, False), ("b", 10, False)],  # live is older than b
        [("a", 30, False), ("b", 30, False), ("live", 5, False)],  # a tie: the newer row wins
    ],
)
def test_the_one_query_agrees_with_known_good(history: list[tuple[str, int | None, bool]]) -> None:
    project = make_project()
    now = timezone.now()
    releases = {}
    for name, minutes, rolled_back in history:
        releases[name] = make_release(
            project,
            deployment_id=f"dpl_{name}_{project.pk}",
            promoted_at=None if minutes is None else now - timedelta(minutes=minutes),
            rolled_back_at=now if rolled_back else None,
        )
    project = live(project, releases["live"].deployment_id)
    found_live, target = live_and_known_good(project)
    assert found_live == releases["live"]
    assert target == known_good(project, exclude=releases["live"])


def test_no_live_release_known() -> None:
    project = make_project()
    make_release(project, promoted_at=timezone.now())
    assert live_and_known_good(project) == (None, None)
    project = live(project, "dpl_unknown_to_us")
    live_release, target = live_and_known_good(project)
    assert live_release is None and target is not None
