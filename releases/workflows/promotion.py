"""Promoting and rolling back a release: the intents, and what follows when Vercel has done them.

The requests themselves (checked against Vercel before they are sent) are
``releases/integrations/vercel/aliasing.py``; this module registers them as the outbox's
``promote`` and ``rollback`` handlers with what a success or a refusal means for the release.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from notifications.intents import facts_for, slack_spec
from notifications.messages import Facts
from releases.core.outbox import ActionSpec, Done, Handler, enqueue_actions, next_key, register, write_actions
from releases.core.production import known_good, lock_project, mark_live
from releases.core.transitions import GATEKEEPER, transition
from releases.domain.lifecycle import ReleaseState
from releases.integrations import clients
from releases.integrations.vercel.aliasing import perform
from releases.models import Action, Release
from releases.workflows.bake import watch_if_new

S = ReleaseState


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


def held_after_failure(action: Action, error: str, what: str, fields: dict[str, Any] | None = None) -> None:
    """A vendor refused for good: the release waits for a human, and the channel is told why."""
    release = Release.objects.select_related("project").get(pk=action.release_id)
    facts = facts_for(release, outcome="fail", headline=f"{what} failed: a human decides", reasons=(error,))
    transition(
        release,
        S.HELD,
        actor=GATEKEEPER,
        reason=f"{what} failed: {error}",
        actions=slack_spec(release, facts),
        fields=fields,
    )


def _promoted(action: Action, done: Done) -> None:
    if done.result.get("untouched"):
        return  # it went live and was replaced since; the webhook that said so recorded both
    release = Release.objects.select_related("project").get(pk=action.release_id)
    if release.state == S.SUPERSEDED:
        # Vercel's deployment.promoted came before this answer and made it live, and a newer
        # deployment's replaced it since: production is not taken back.
        return
    watch_if_new(
        mark_live(
            release.project,
            release.deployment_id,
            actor=GATEKEEPER,
            reason="promoted: Vercel finished re-aliasing production",
            since=_requested(done),
        )
    )


def _rolled_back(action: Action, done: Done) -> None:
    release = Release.objects.select_related("project").get(pk=action.release_id)
    lock_project(release.project_id)  # before the release's row: mark_live's order
    target = str(action.payload["deployment_id"])
    # Marked even if a human moved the release meanwhile: it must never be a rollback target.
    Release.objects.filter(pk=release.pk, rolled_back_at__isnull=True).update(rolled_back_at=timezone.now())
    if done.result.get("untouched"):
        # Kept out of production without a call: what serves now is newer, and stays.
        transition(
            release, S.ROLLED_BACK, actor=GATEKEEPER, reason=done.result["note"], expected=S.ROLLING_BACK
        )
        return
    transition(
        release,
        S.ROLLED_BACK,
        actor=GATEKEEPER,
        reason=f"production serves {target}",
        expected=S.ROLLING_BACK,
    )
    watch_if_new(
        mark_live(
            release.project,
            target,
            actor=GATEKEEPER,
            reason=f"rolled back from {release.deployment_id}",
            since=_requested(done),
        )
    )


def _requested(done: Done) -> datetime | None:
    """When we asked Vercel for the switch: production changed no earlier than that."""
    requested = done.result.get("requested_at")
    return datetime.fromisoformat(requested) if requested else None


def _promote_failed(action: Action, error: str) -> None:
    if Release.objects.filter(pk=action.release_id, state=S.PROMOTING).exists():
        held_after_failure(action, error, "promote")


def _rollback_failed(action: Action, error: str) -> None:
    if Release.objects.filter(pk=action.release_id, state=S.ROLLING_BACK).exists():
        held_after_failure(action, error, "rollback")


register(
    Action.Kind.PROMOTE,
    Handler(
        perform=lambda a: perform(a, "promote", clients.vercel(a.release.project)),
        idempotent=True,
        on_success=_promoted,
        on_failure=_promote_failed,
    ),
)


register(
    Action.Kind.ROLLBACK,
    Handler(
        perform=lambda a: perform(a, "rollback", clients.vercel(a.release.project)),
        idempotent=True,
        on_success=_rolled_back,
        on_failure=_rollback_failed,
    ),
)
