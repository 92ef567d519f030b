"""Release states and the moves between them: the whole lifecycle as one table.

Pure: no Django. ``releases/core/transitions.py`` is the only code that moves a release.
"""

from __future__ import annotations

from enum import StrEnum


class ReleaseState(StrEnum):
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

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs for a model field, labelled as Django's TextChoices would be."""
        return [(state.value, state.name.replace("_", " ").title()) for state in cls]


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


class IllegalTransition(Exception):
    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"a release cannot go from {old} to {new}")
        self.old = old
        self.new = new


def check_allowed(old: str, new: str) -> None:
    if new not in ALLOWED.get(old, frozenset()):
        raise IllegalTransition(old, new)
