"""Who may see and move which project's releases.

A project is operated by the Django groups in ``Project.operators``: their members see its
releases in the REST API and the admin, and those who also hold ``releases.override_release``
may approve, reject, pause, resume or extend them. Superusers see and may do everything; any
other login sees nothing of a project it does not operate (not even that it exists).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from releases.models import Project, Release

OVERRIDE = "releases.override_release"


def visible_projects(user: Any) -> QuerySet[Project]:
    if getattr(user, "is_superuser", False):
        return Project.objects.all()
    if not getattr(user, "is_authenticated", False):
        return Project.objects.none()
    return Project.objects.filter(operators__user=user).distinct()


def visible_releases(user: Any, releases: QuerySet[Release]) -> QuerySet[Release]:
    if getattr(user, "is_superuser", False):
        return releases
    return releases.filter(project__in=visible_projects(user))


def may_override(user: Any, release: Release) -> bool:
    """Only for a release the user can see (the caller looked it up through visible_releases)."""
    return bool(user.has_perm(OVERRIDE))
