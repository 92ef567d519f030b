"""Release states and the only ways to move between them.

The table below is the whole lifecycle; read it at a glance. ``transition`` is a
compare-and-set: it moves a release only if it is still in the state the caller saw, and
writes the history row and the side-effect rows (outbox actions) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from releases.models import Action, Release


class ReleaseState(models.TextChoices):
    RECEIVED = "received"
    GATING = "gating"
    PASSED = "passed"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    HELD = "held"
    RAMPING = "ramping"
    CANCELLED = "cancelled"


S = ReleaseState

ALLOWED: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.GATING, S.RAMPING, S.HELD, S.PROMOTED, S.CANCELLED}),
    # gating -> promoted: someone promoted the build in Vercel while we were still judging.
    S.GATING: frozenset({S.PASSED, S.FAILED, S.HELD, S.PROMOTED, S.CANCELLED}),
    S.PASSED: frozenset({S.PROMOTING, S.PROMOTED, S.CANCELLED}),
    # promoting -> held: Vercel refused the promote for good; a human decides.
    S.PROMOTING: frozenset({S.PROMOTED, S.HELD, S.CANCELLED}),
    S.PROMOTED: frozenset({S.SUPERSEDED, S.ROLLING_BACK}),
    # superseded -> promoted: production was rolled back to it and it serves again.
    S.SUPERSEDED: frozenset({S.PROMOTED, S.ROLLING_BACK}),
    # failed stays put when no known-good deployment exists: nothing to roll back to.
    S.FAILED: frozenset({S.ROLLING_BACK, S.PROMOTING, S.CANCELLED}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.HELD}),
    S.ROLLED_BACK: frozenset(),
    # held -> gating: a human resumed the gate or extended its wait.
    S.HELD: frozenset({S.GATING, S.PROMOTING, S.ROLLING_BACK, S.PROMOTED, S.CANCELLED}),
    S.RAMPING: frozenset({S.PROMOTED, S.ROLLING_BACK, S.HELD, S.CANCELLED}),
    S.CANCELLED: frozenset(),
}

FINAL = frozenset(state for state, nexts in ALLOWED.items() if not nexts)
# States in which the release is being judged and a poll chain should be alive.
POLLING = frozenset({S.GATING})


class IllegalTransition(Exception):
    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"a release cannot go from {old} to {new}")
        self.old = old
        self.new = new


def check_allowed(old: str, new: str) -> None:
    if new not in ALLOWED.get(old, frozenset()):
        raise IllegalTransition(old, new)


@dataclass(frozen=True)
class ActionSpec:
    """An intent to do one side effect, written to the outbox with the transition."""

    kind: str
    key: str  # idempotency key: the same intent twice is one row
    payload: dict[str, Any] = field(default_factory=dict)
    skip_reason: str = ""  # set for dry-run: recorded, never performed


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
    from releases.models import Release, ReleaseEvent
    from releases.outbox import enqueue_actions, write_actions

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


def allowed_from(states: Iterable[str], new: str) -> list[str]:
    """The states among ``states`` that may move to ``new`` (for override buttons)."""
    return [state for state in states if new in ALLOWED.get(state, frozenset())]
