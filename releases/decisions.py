"""From a verdict (or a human override) to state changes and the side effects they imply.

Everything here runs inside the caller's transaction: a decision is its transitions, its
history rows and its outbox rows, committed together or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from notifications.messages import Facts, admin_url, sentry_release_url, verdict_message
from releases.gate import OnTimeout, Outcome, Verdict
from releases.models import Action, Project, Release, ReleaseEvent
from releases.states import ActionSpec, ReleaseState, transition

S = ReleaseState
GATEKEEPER = "gatekeeper"
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


def next_key(release: Release, kind: str) -> str:
    """A fresh intent key, e.g. ``rollback:42:2`` for the release's second rollback.

    Transitions are compare-and-set, so two decisions for one release cannot both get here for
    the same state: counting existing intents gives each decision its own stable key. The counts
    are read once per decision (one query) and dropped when its actions are written.
    """
    counts: dict[str, int] | None = getattr(release, "_intent_counts", None)
    if counts is None:
        counts = dict(Action.objects.filter(release=release).values_list("kind").annotate(n=Count("id")))
        release._intent_counts = counts  # type: ignore[attr-defined]
    counts[kind] = counts.get(kind, 0) + 1
    return f"{kind}:{release.pk}:{counts[kind]}"


def facts_for(
    release: Release,
    *,
    outcome: str,
    headline: str,
    reasons: tuple[str, ...] = (),
    figures: dict[str, Any] | None = None,
) -> Facts:
    project = release.project
    figures = figures or {}
    return Facts(
        project=project.name,
        release=release.version or release.deployment_id,
        deployment_id=release.deployment_id,
        outcome=outcome,
        headline=headline,
        reasons=reasons,
        sessions=figures.get("sessions", release.sessions),
        crashed=figures.get("crashed", release.crashed),
        crash_free_rate=figures.get("crash_free_rate", release.crash_free_rate),
        threshold=figures.get("threshold", project.crash_free_threshold),
        elapsed=figures.get("elapsed", release.elapsed()),
        sentry_url=sentry_release_url(project.sentry_org, release.version, project.sentry_project),
        vercel_url=release.inspector_url,
        admin_url=admin_url(release.pk),
        dry_run=project.dry_run,
    )


def slack_spec(release: Release, facts: Facts, key: str = "") -> list[ActionSpec]:
    channel = release.project.slack_channel
    if not channel:
        return []
    text, blocks = verdict_message(facts)
    return [
        ActionSpec(
            kind=Action.Kind.SLACK,
            key=key or next_key(release, Action.Kind.SLACK),
            payload={"channel": channel, "text": text, "blocks": blocks},
        )
    ]


def _dry(release: Release) -> str:
    return "dry run: decided and reported, not performed" if release.project.dry_run else ""


def promote_specs(release: Release, facts: Facts) -> list[ActionSpec]:
    promote = ActionSpec(
        kind=Action.Kind.PROMOTE,
        key=next_key(release, Action.Kind.PROMOTE),
        payload={"deployment_id": release.deployment_id},
        skip_reason=_dry(release),
    )
    return [promote, *slack_spec(release, facts)]


def rollback_specs(release: Release, target: Release, facts: Facts) -> list[ActionSpec]:
    rollback = ActionSpec(
        kind=Action.Kind.ROLLBACK,
        key=next_key(release, Action.Kind.ROLLBACK),
        payload={
            "deployment_id": target.deployment_id,
            "from_deployment_id": release.deployment_id,
            "target_release_id": target.pk,
        },
        skip_reason=_dry(release),
    )
    return [rollback, *slack_spec(release, facts)]


def decide(release: Release, verdict: Verdict) -> None:
    """Record a gate's verdict: pass -> promote, fail -> keep/restore the known-good deployment,
    inconclusive -> hold for a human or roll back, per policy."""
    figures = verdict.figures.as_dict()
    decided = {
        "verdict": verdict.outcome.value,
        "verdict_rule": verdict.rule,
        "verdict_reasons": list(verdict.reasons),
        "decided_at": timezone.now(),
    }
    data = {"rule": verdict.rule, "figures": figures}
    reason = "; ".join(verdict.reasons) or verdict.rule
    if verdict.outcome == Outcome.PASS:
        if transition(release, S.PASSED, actor=GATEKEEPER, reason=reason, data=data, fields=decided) is None:
            return
        start_promotion(
            release,
            actor=GATEKEEPER,
            reason="gate passed",
            outcome="pass",
            reasons=verdict.reasons,
            figures=figures,
        )
    elif verdict.outcome == Outcome.FAIL or verdict.on_inconclusive == OnTimeout.ROLLBACK:
        outcome = "fail" if verdict.outcome == Outcome.FAIL else "inconclusive"
        if transition(release, S.FAILED, actor=GATEKEEPER, reason=reason, data=data, fields=decided) is None:
            return
        start_rollback(
            release,
            actor=GATEKEEPER,
            reason="gate failed",
            outcome=outcome,
            reasons=verdict.reasons,
            figures=figures,
        )
    else:
        facts = facts_for(
            release,
            outcome="inconclusive",
            headline="held: a human decides (approve or reject in Gatekeeper)",
            reasons=verdict.reasons,
            figures=figures,
        )
        transition(
            release,
            S.HELD,
            actor=GATEKEEPER,
            reason=reason,
            data=data,
            fields=decided,
            actions=slack_spec(release, facts),
        )


def start_promotion(
    release: Release,
    *,
    actor: str,
    reason: str,
    outcome: str = "pass",
    reasons: tuple[str, ...] = (),
    figures: dict[str, Any] | None = None,
) -> bool:
    """Move a release that may be promoted into ``promoting`` with its promote action.

    In dry-run the promote is recorded as skipped and the release stays where it is.
    """
    dry = release.project.dry_run
    headline = "would promote to production" if dry else "promoting to production"
    facts = facts_for(release, outcome=outcome, headline=headline, reasons=reasons, figures=figures)
    specs = promote_specs(release, facts)
    if dry:
        from releases.outbox import enqueue_actions, write_actions

        enqueue_actions(write_actions(release, specs))
        return True
    return transition(release, S.PROMOTING, actor=actor, reason=reason, actions=specs) is not None


def start_rollback(
    release: Release,
    *,
    actor: str,
    reason: str,
    outcome: str = "fail",
    reasons: tuple[str, ...] = (),
    figures: dict[str, Any] | None = None,
) -> bool:
    """Restore the previous known-good deployment; with none known, say so and touch nothing."""
    from releases.outbox import enqueue_actions, write_actions

    target = known_good(release.project, exclude=release)
    dry = release.project.dry_run
    if target is None:
        headline = "no known-good deployment to roll back to: production left as it is"
        facts = facts_for(release, outcome=outcome, headline=headline, reasons=reasons, figures=figures)
        enqueue_actions(write_actions(release, slack_spec(release, facts)))
        return False
    verb = "would keep" if dry else "keeping"
    headline = f"{verb} production on {target.version or target.deployment_id} ({target.deployment_id})"
    facts = facts_for(release, outcome=outcome, headline=headline, reasons=reasons, figures=figures)
    specs = rollback_specs(release, target, facts)
    if dry:
        enqueue_actions(write_actions(release, specs))
        return True
    return (
        transition(
            release,
            S.ROLLING_BACK,
            actor=actor,
            reason=reason,
            actions=specs,
            fields={"rollback_target": target.deployment_id},
        )
        is not None
    )


def lock_project(project_id: int) -> None:
    """Take the project's row lock, first: before any of its releases' rows.

    ``mark_live`` locks the project and then writes its releases. A transaction that had locked
    or written a release first and then reached ``mark_live`` (a rollback's or a canary move's
    success, a deployment.promoted webhook with its history row) deadlocked against another
    doing it the other way round (seen twice in one bench/chaos.py run). One order for all: the
    project, then its releases.
    """
    list(Project.objects.select_for_update().filter(pk=project_id).values_list("pk", flat=True))


def mark_live(
    project: Project, deployment_id: str, *, actor: str, reason: str, since: datetime | None = None
) -> Release | None:
    """Record that ``deployment_id`` serves production now; the one before it is superseded.

    ``since`` is when it went live by the vendor's account (Vercel's event time, or when we asked
    for the switch), not when we heard of it: alerts are judged stale against it.
    """
    now = min(since, timezone.now()) if since is not None else timezone.now()
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
        restored = release.state == S.SUPERSEDED  # a rollback target: it was watched when it first went live
        if transition(release, S.PROMOTED, actor=actor, reason=reason) is not None and not restored:
            from releases.polling import start_watch

            start_watch(release)
    if previous and previous != deployment_id:
        old = Release.objects.filter(deployment_id=previous, state=S.PROMOTED).first()
        if old is not None:
            transition(old, S.SUPERSEDED, actor=actor, reason=f"{deployment_id} now serves production")
    Project.objects.filter(pk=project.pk).update(live_deployment_id=deployment_id, live_since=now)
    return release
