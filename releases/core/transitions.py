"""The only way a release changes state: a compare-and-set that writes its history and outbox rows.

``transition`` moves a release only if it is still in the state the caller saw (the table is
``releases/domain/lifecycle.py``), and writes the history row and the side-effect rows (outbox
actions) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from releases.core.outbox import ActionSpec, enqueue_actions, write_actions
from releases.domain.lifecycle import ReleaseState, check_allowed
from releases.models import Action, Analysis, Release, ReleaseEvent

S = ReleaseState
# The analysis each state keeps running; leaving the state stops it.
ANALYSED_IN: dict[str, str] = {
    S.GATING: Analysis.Kind.GATE,
    S.PROMOTED: Analysis.Kind.BAKE,
    S.RAMPING: Analysis.Kind.CANARY,
}


def transition(
    release: Release,
    new: str,
    *,
    actor: str,
    reason: str,
    data: dict[str, Any] | None = None,
    actions: Sequence[ActionSpec] = (),
    fields: dict[str, Any] | None = None,
    expected: str | None = None,
) -> list[Action] | None:
    """Move ``release`` from ``expected`` (default: its current state) to ``new``.

    Returns the outbox actions written (possibly empty) or ``None`` when another process moved
    the release first. Raises :class:`IllegalTransition` for a move the table forbids.
    Actions are dispatched to workers only after the surrounding transaction commits.
    """
    old = expected if expected is not None else release.state
    check_allowed(old, new)
    now = timezone.now()
    updates: dict[str, Any] = {"state": new, "updated_at": now, **(fields or {})}
    # No savepoint of its own: a transition is part of its caller's decision, all or nothing.
    with transaction.atomic(savepoint=False):
        moved = Release.objects.filter(pk=release.pk, state=old).update(**updates)
        if moved != 1:
            release.__dict__.pop("_intent_counts", None)
            return None  # another worker decided first; nothing to do
        for name, value in updates.items():
            setattr(release, name, value)
        stop_analyses(release, keep=ANALYSED_IN.get(new), now=now)
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.TRANSITION,
            from_state=old,
            to_state=new,
            actor=actor,
            reason=reason,
            data=data or {},
        )
        written = write_actions(release, actions)
        enqueue_actions(written)
    return written


def stop_analyses(release: Release, *, keep: str | None = None, now: Any = None) -> int:
    """Stop the release's open analysis unless it is of kind ``keep``: one that decided closed
    itself with its own phase first, so what is left was ended from outside (an override, an
    alert, a newer release)."""
    open_ = Analysis.objects.filter(release=release, phase__in=Analysis.OPEN)
    if keep is not None:
        open_ = open_.exclude(kind=keep)
    now = now or timezone.now()
    return open_.update(phase=Analysis.Phase.STOPPED, next_check_at=None, ended_at=now, updated_at=now)


def enter(
    release: Release, new: str, *, actor: str, reason: str, fields: dict[str, Any] | None = None
) -> None:
    """Write a new release straight into ``new``, a state a received release may move to, with
    the history row of that first move: what ``transition`` from received would write, less the
    update of a row written a moment before."""
    check_allowed(ReleaseState.RECEIVED, new)
    now = timezone.now()
    for name, value in {"state": new, "updated_at": now, **(fields or {})}.items():
        setattr(release, name, value)
    with transaction.atomic(savepoint=False):
        release.save(force_insert=True)
        ReleaseEvent.objects.create(
            release=release,
            kind=ReleaseEvent.Kind.TRANSITION,
            from_state=ReleaseState.RECEIVED,
            to_state=new,
            actor=actor,
            reason=reason,
            data={},
            created_at=now,
        )


GATEKEEPER = "gatekeeper"
