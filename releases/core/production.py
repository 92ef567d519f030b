"""What serves production, by our records, and the known-good deployment to fall back to.

"Known good" = the project's latest release that was promoted and never rolled back.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from releases.core.transitions import transition
from releases.domain.lifecycle import ReleaseState
from releases.models import Project, Release, ReleaseEvent

S = ReleaseState

# States from which "now serves production" makes a release promoted.
LIVE_FROM = frozenset({S.PROMOTING, S.PASSED, S.HELD, S.RECEIVED, S.SUPERSEDED, S.RAMPING})


def known_good(project: Project, *, exclude: Release | None = None) -> Release | None:
    """The project's latest release that was promoted and never rolled back, other than ``exclude``."""
    candidates = Release.objects.filter(
        project=project, promoted_at__isnull=False, rolled_back_at__isnull=True
    ).order_by("-promoted_at", "-id")
    if exclude is not None:
        candidates = candidates.exclude(Q(pk=exclude.pk) | Q(deployment_id=exclude.deployment_id))
    return candidates.first()


def live_and_known_good(project: Project) -> tuple[Release | None, Release | None]:
    """The release production serves (by our records) and the rollback target from it: what an
    alert needs before it can roll back."""
    live_id = project.live_deployment_id
    if not live_id:
        return None, None
    live = Release.objects.filter(deployment_id=live_id).first()
    target = (
        Release.objects.filter(project=project, promoted_at__isnull=False, rolled_back_at__isnull=True)
        .exclude(deployment_id=live_id)
        .order_by("-promoted_at", "-id")
        .first()
    )
    return live, target


def lock_project(project_id: int) -> None:
    """Take the project's row lock, first: before any of its releases' rows.

    ``mark_live`` locks the project and then writes its releases. A transaction that locked or
    wrote a release first and then reached ``mark_live`` (a rollback's or a canary move's
    success, a deployment.promoted webhook with its history row) would deadlock against another
    doing it the other way round. One order for all: the project, then its releases
    (tests/releases/core/test_lock_order.py).
    """
    list(Project.objects.select_for_update().filter(pk=project_id).values_list("pk", flat=True))


def mark_live(
    project: Project, deployment_id: str, *, actor: str, reason: str, since: datetime | None = None
) -> Release | None:
    """Record that ``deployment_id`` serves production now; the one before it is superseded.

    ``since`` is when it went live by the vendor's account (Vercel's event time, or when we asked
    for the switch), not when we heard of it: alerts are judged stale against it.

    Returns the release when it went live for the first time (promoted now): the caller starts
    its bake watch. A rollback target serving again was watched when it first went live.
    """
    now = min(since, timezone.now()) if since is not None else timezone.now()
    first_time = None
    project = Project.objects.select_for_update().get(pk=project.pk)
    release = Release.objects.filter(deployment_id=deployment_id).first()
    previous = project.live_deployment_id
    if release is not None and release.promoted_at is None:
        release.promoted_at = now
        Release.objects.filter(pk=release.pk).update(promoted_at=now)
    if release is not None and release.state == S.GATING:
        # Live before its verdict (auto-assigned domains, or promoted by hand in Vercel): the
        # gate keeps judging it, and a failure rolls production back for real.
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.NOTE,
            actor=actor,
            reason=f"{reason}; serves production before its verdict, gate continues",
        )
    elif release is not None and release.state in LIVE_FROM:
        restored = release.state == S.SUPERSEDED
        if transition(release, S.PROMOTED, actor=actor, reason=reason) is not None and not restored:
            first_time = release
    if previous and previous != deployment_id:
        old = Release.objects.filter(deployment_id=previous, state=S.PROMOTED).first()
        if old is not None:
            transition(old, S.SUPERSEDED, actor=actor, reason=f"{deployment_id} now serves production")
    Project.objects.filter(pk=project.pk).update(live_deployment_id=deployment_id, live_since=now)
    return first_time
