"""``on_no_traffic: promote_after_checks``: a held build without traffic, judged by its gate checks.

The gate said there was too little traffic to judge and held the build with a ``checks`` action.
That action runs the project's ``gate.checks`` (the canary checks' grammar) against the staged
deployment, ``confirmations`` times ``interval`` apart, as the outbox runs any side effect: at
most once per intent, again after a worker dies. All passing every time promotes the build;
anything else (a failed check, no data, a sequential check that cannot decide without sessions)
leaves it held for a human, and says why in Slack.
"""

from __future__ import annotations

from django.db import transaction

from notifications.intents import facts_for, slack_spec
from releases.core.outbox import Confirming, Done, Handler, enqueue_actions, register, write_actions
from releases.core.transitions import GATEKEEPER
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Release
from releases.workflows.canary.measuring import run_checks, specs_from
from releases.workflows.promotion import start_promotion

S = ReleaseState


def _check(action: Action) -> Done | Confirming:
    release = action.release
    if release.state != S.HELD:
        return Done({"ok": False, "moved_on": release.state})  # a human decided meanwhile
    project = release.project
    specs = specs_from({"checks": action.payload.get("checks") or []}, project.name)
    previous = (
        Release.objects.filter(deployment_id=release.rollback_target).first()
        if release.rollback_target
        else None
    )
    result = run_checks(project, release, previous, specs=specs)
    runs = [*action.result.get("runs", []), {"ok": result.ok, "reasons": result.reasons}]
    if not result.ok:
        return Done({"ok": False, "runs": runs, "reasons": result.reasons})
    if len(runs) < int(action.payload.get("confirmations", 2)):
        return Confirming({"runs": runs}, recheck_in=float(action.payload.get("interval", 30.0)))
    return Done({"ok": True, "runs": runs})


def _checked(action: Action, done: Done) -> None:
    """In the action's transaction: promote a still-held build whose checks passed, or say why not."""
    release = Release.objects.select_for_update().select_related("project").get(pk=action.release_id)
    if release.state != S.HELD:
        return
    runs = done.result.get("runs", [])
    if done.result.get("ok"):
        start_promotion(
            release,
            actor=GATEKEEPER,
            reason=f"promote_after_checks: no traffic to judge; its gate checks passed {len(runs)} times",
            reasons=(
                "no session evidence (too little traffic); promoted because on_no_traffic is "
                f"promote_after_checks and its gate checks passed {len(runs)} times in a row",
            ),
        )
        return
    reasons = tuple(done.result.get("reasons") or ["the gate checks did not pass"])
    facts = facts_for(
        release,
        outcome="inconclusive",
        headline="still held: too little traffic, and its gate checks did not pass; a human decides",
        reasons=reasons,
    )
    enqueue_actions(
        write_actions(release, slack_spec(release, facts, key=f"slack:{release.pk}:checks-failed"))
    )


def _failed(action: Action, error: str) -> None:
    """The checks could not be run at all: the build stays held; say so once."""
    with transaction.atomic():
        release = Release.objects.select_for_update().select_related("project").get(pk=action.release_id)
        if release.state != S.HELD:
            return
        facts = facts_for(
            release,
            outcome="inconclusive",
            headline="still held: too little traffic, and its gate checks could not be run; a human decides",
            reasons=(error,),
        )
        enqueue_actions(
            write_actions(release, slack_spec(release, facts, key=f"slack:{release.pk}:checks-failed"))
        )


register(
    Action.Kind.CHECKS, Handler(perform=_check, idempotent=True, on_success=_checked, on_failure=_failed)
)
