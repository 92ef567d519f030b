"""The bake watch: a release that just went live is kept under watch for ``watch_after_promotion``.

It is polled with the gate's evidence (``releases/workflows/polls.py``); a breach rolls it back
through ``releases/workflows/rollback.py``, so a regression is caught even when Sentry's alert
webhook, which is never retried, is lost.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from releases.core.transitions import GATEKEEPER
from releases.domain.lifecycle import ReleaseState
from releases.domain.verdict import Policy
from releases.models import Release, ReleaseEvent

S = ReleaseState


def watch_policy(release: Release) -> Policy:
    """The gate's policy with the post-promotion bar and no deadline of its own (the watch has one)."""
    policy = release.policy()
    project = release.project
    return replace(
        policy,
        crash_free_threshold=project.watch_threshold or project.crash_free_threshold,
        max_wait=project.watch_after_promotion.total_seconds() + release.elapsed() + 86400.0,
    )


def start_watch(release: Release) -> None:
    """Keep polling a release that just went live, for the project's watch_after_promotion."""
    project = release.project
    if not release.version or project.watch_after_promotion <= timedelta(0) or project.dry_run:
        return
    now = timezone.now()
    generation = release.generation + 1
    Release.objects.filter(pk=release.pk).update(
        watch_until=now + project.watch_after_promotion,
        next_poll_at=now + project.poll_interval,
        generation=generation,
        consecutive_errors=0,
    )
    release.generation, release.watch_until = generation, now + project.watch_after_promotion


def watch_if_new(release: Release | None) -> None:
    """Watch a release that ``mark_live`` says went live for the first time."""
    if release is not None:
        start_watch(release)


def end_watch(release: Release, generation: int) -> str:
    with transaction.atomic():
        ended = Release.objects.filter(pk=release.pk, state=S.PROMOTED, generation=generation).update(
            watch_until=None, next_poll_at=None, generation=generation + 1
        )
        if ended:
            ReleaseEvent.objects.create(
                release=release,
                kind=ReleaseEvent.Kind.NOTE,
                actor=GATEKEEPER,
                reason="bake watch ended: no breach while watched",
                data={"sessions": release.sessions, "crash_free_rate": release.crash_free_rate},
            )
    return "watch-ended" if ended else "stale"
