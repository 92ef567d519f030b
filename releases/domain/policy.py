"""The policies a project is judged by, each with its one set of defaults.

``gatekeeper.yaml`` (releases/ops/config.py), the Project model's field defaults and the
workflows all take their defaults from here, so a default is written once. Pure: no Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class GateDefaults:
    """What a project's gate uses for every ``gate:`` key the config leaves out."""

    method: str = "sequential"
    crash_free_threshold: float = 0.995
    # The sequential test tells "good" (threshold + tolerance) from "bad" (threshold - tolerance).
    tolerance: float = 0.003
    false_promote: float = 0.05  # at most this share of bad releases promoted
    false_rollback: float = 0.05  # at most this share of good releases rolled back
    max_sessions: int = 5000
    # None: derived. Sequential: the floor below which nothing is promoted, the fewest sessions in
    # which zero crashes rule out the bad rate; fixed: fixed_min_sessions.
    min_sessions: int | None = None
    fixed_min_sessions: int = 500
    poll_interval: timedelta = timedelta(seconds=60)
    max_wait: timedelta = timedelta(hours=2)
    on_timeout: str = "hold"
    no_traffic_after: timedelta = timedelta(minutes=10)
    on_no_traffic: str = "hold"
    max_consecutive_errors: int = 4
    fail_fast: bool = True
    early_fail_confidence: float | None = None
    early_fail_min_sessions: int = 50
    watch_after_promotion: timedelta = timedelta(minutes=60)
    watch_threshold: float | None = None  # None: the bake watch keeps crash_free_threshold
    # Sequential projects: at most this share of releases at the good rate are ever rolled back by
    # the bake watch, however long it runs and whatever the traffic.
    watch_false_alarm: float = 0.01
    dry_run: bool = False


GATE = GateDefaults()


DEFAULT_MAX_HOLD = 1800.0


@dataclass(frozen=True)
class Stage:
    percent: float  # the canary's share of production traffic at this stage
    hold: float = 0.0  # seconds at this stage before its checks may advance it
    # Seconds at this stage an undecided sequential check may hold it; then it counts as failed.
    max_hold: float = DEFAULT_MAX_HOLD


@dataclass(frozen=True)
class CanaryPolicy:
    """A canary ramp's policy, as ``sync_config`` stores it and the ramp copies it at its start."""

    stages: tuple[Stage, ...]
    confirmations: int = 2
    confirmation_interval: float = 30.0  # seconds between the checks at one stage
    abort_on_failure: bool = True
    failures_to_abort: int = 1
    router: str = "vercel"
    checks: tuple[Mapping[str, Any], ...] = field(default=())

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CanaryPolicy:
        """The stored policy (missing keys take the defaults above)."""
        data = data or {}
        defaults = cls(stages=())
        return cls(
            stages=tuple(
                Stage(
                    percent=float(stage["percent"]),
                    hold=float(stage.get("hold", 0)),
                    max_hold=float(stage.get("max_hold", DEFAULT_MAX_HOLD)),
                )
                for stage in data.get("stages") or ()
            ),
            confirmations=int(data.get("confirmations", defaults.confirmations)),
            confirmation_interval=float(data.get("confirmation_interval", defaults.confirmation_interval)),
            abort_on_failure=bool(data.get("abort_on_failure", defaults.abort_on_failure)),
            failures_to_abort=int(data.get("failures_to_abort", defaults.failures_to_abort)),
            router=str(data.get("router") or defaults.router),
            checks=tuple(data.get("checks") or ()),
        )


CANARY = CanaryPolicy(stages=())
