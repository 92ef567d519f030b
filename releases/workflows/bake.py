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
from releases.domain.gate_policy import Method, Policy
from releases.domain.policy import GATE
from releases.models import Analysis, Project, Release, ReleaseEvent


def watch_policy(project: Project) -> Policy:
    """The gate's policy with the post-promotion bar and no deadline of its own (the watch has one)."""
    policy = project.policy()
    threshold = project.watch_threshold or project.crash_free_threshold
    if policy.method == Method.SEQUENTIAL:
        # "Has it become bad?", with at most watch_false_alarm of good releases ever alarmed.
        return replace(
            policy,
            method=Method.WATCH,
            crash_free_threshold=threshold,
            false_alarm=project.watch_false_alarm,
            max_wait=project.watch_after_promotion.total_seconds() + 86400.0,
            no_traffic_after=None,  # a live release's traffic is production's; the watch ends by time
        )
    return replace(
        policy,
        min_sessions=policy.min_sessions or GATE.fixed_min_sessions,
        crash_free_threshold=threshold,
        max_wait=project.watch_after_promotion.total_seconds() + 86400.0,
        no_traffic_after=None,
    )


def start_watch(release: Release) -> Analysis | None:
    """Keep polling a release that just went live, for the project's watch_after_promotion."""
    project = release.project
    if not release.version or project.watch_after_promotion <= timedelta(0) or project.dry_run:
        return None
    if release.analyses.filter(phase__in=Analysis.OPEN).exists():
        return None  # already watched: mark_live said "new" twice
    now = timezone.now()
    return Analysis.objects.create(
        release=release,
        kind=Analysis.Kind.BAKE,
        policy=watch_policy(project).to_json(),
        generation=1,
        next_check_at=now + project.poll_interval,
        started_at=now,
        ends_at=now + project.watch_after_promotion,
        created_at=now,
        updated_at=now,
    )


def watch_if_new(release: Release | None) -> None:
    """Watch a release that ``mark_live`` says went live for the first time."""
    if release is not None:
        start_watch(release)


def end_watch(analysis: Analysis) -> str:
    """The watch ran its course without a breach: it passed."""
    release = analysis.release
    with transaction.atomic():
        now = timezone.now()
        ended = Analysis.objects.filter(
            pk=analysis.pk, phase=Analysis.Phase.RUNNING, generation=analysis.generation
        ).update(
            phase=Analysis.Phase.PASSED,
            next_check_at=None,
            ended_at=now,
            updated_at=now,
            generation=analysis.generation + 1,
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
