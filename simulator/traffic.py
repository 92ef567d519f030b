"""Release-health traffic: sessions that accrue deterministically over time.

Every count is a difference of cumulatives, cumulative(b) - cumulative(a), so buckets always add
up to totals whatever the bucketing, and a query repeated later only ever sees more sessions.

Within a phase (constant rate) the cumulative counts after ``elapsed`` seconds are:

- sessions = floor(spm / 60 * elapsed)
- crashed = floor(sessions * crash_rate + 0.5)
- errored = floor(not_crashed * errored_rate / (1 - crash_rate) + 0.5)

Error events (Sentry's events endpoint, docs/vendor-apis.md §3.4) accrue on their own, independent of
sessions:
``errors = floor(errors_per_minute / 60 * elapsed)``.

Errored is drawn from the non-crashed sessions (not from all sessions as crashed is) so that
healthy, errored and crashed are each non-decreasing: rounding both independently from the
session count could make a tiny bucket show -1 healthy sessions. On average it still comes
to ``sessions * errored_rate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.wire import ControlError, as_number, as_text, require_text

if TYPE_CHECKING:
    from simulator.state import Simulator

STATUSES = ("healthy", "errored", "crashed", "abnormal")


@dataclass(frozen=True)
class Counts:
    healthy: int = 0
    errored: int = 0
    crashed: int = 0
    abnormal: int = 0

    @property
    def sessions(self) -> int:
        return self.healthy + self.errored + self.crashed + self.abnormal

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.healthy + other.healthy,
            self.errored + other.errored,
            self.crashed + other.crashed,
            self.abnormal + other.abnormal,
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.healthy - other.healthy,
            self.errored - other.errored,
            self.crashed - other.crashed,
            self.abnormal - other.abnormal,
        )

    def by_status(self, status: str) -> int:
        return int(getattr(self, status))


@dataclass
class Phase:
    at: float
    sessions_per_minute: float
    crash_rate: float
    errored_rate: float
    errors_per_minute: float = 0.0

    def cumulative(self, elapsed: float) -> Counts:
        sessions = math.floor(self.sessions_per_minute / 60.0 * max(0.0, elapsed))
        crashed = min(sessions, math.floor(sessions * self.crash_rate + 0.5))
        rest = sessions - crashed
        share = self.errored_rate / (1.0 - self.crash_rate) if self.crash_rate < 1.0 else 0.0
        errored = min(rest, math.floor(rest * min(1.0, share) + 0.5))
        return Counts(healthy=rest - errored, errored=errored, crashed=crashed)

    def errors(self, elapsed: float) -> int:
        return math.floor(self.errors_per_minute / 60.0 * max(0.0, elapsed))

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "sessions_per_minute": self.sessions_per_minute,
            "crash_rate": self.crash_rate,
            "errored_rate": self.errored_rate,
            "errors_per_minute": self.errors_per_minute,
        }


@dataclass
class Traffic:
    org: str
    project: str
    project_id: int
    environment: str
    release: str
    stop: float | None
    phases: list[Phase] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.org, self.project, self.environment, self.release)

    @property
    def start(self) -> float:
        return self.phases[0].at

    def _elapsed(self, t: float) -> list[tuple[Phase, float]]:
        """Each phase with the seconds it had accrued by ``t``: from its own start until the next."""
        spans = []
        phases = self.phases  # one snapshot: add_phase swaps the list while queries run
        for index, phase in enumerate(phases):
            end = phases[index + 1].at if index + 1 < len(phases) else math.inf
            if self.stop is not None:
                end = min(end, self.stop)
            spans.append((phase, min(t, end) - phase.at))
        return spans

    def cumulative(self, t: float) -> Counts:
        """Sessions started before ``t``."""
        return sum((phase.cumulative(elapsed) for phase, elapsed in self._elapsed(t)), Counts())

    def between(self, a: float, b: float) -> Counts:
        return self.cumulative(b) - self.cumulative(a)

    def errors_cumulative(self, t: float) -> int:
        """Error events before ``t``."""
        return sum(phase.errors(elapsed) for phase, elapsed in self._elapsed(t))

    def errors_between(self, a: float, b: float) -> int:
        return self.errors_cumulative(b) - self.errors_cumulative(a) if b > a else 0

    def to_json(self, now: float) -> dict[str, Any]:
        so_far = self.cumulative(now)
        return {
            "org": self.org,
            "project": self.project,
            "project_id": self.project_id,
            "environment": self.environment,
            "release": self.release,
            "start": self.start,
            "stop": self.stop,
            "phases": [phase.to_json() for phase in self.phases],
            "so_far": {
                "sessions": so_far.sessions,
                **{s: so_far.by_status(s) for s in STATUSES},
                "errors": self.errors_cumulative(now),
            },
        }


def _rate(body: dict[str, Any], key: str, default: float | None) -> float:
    value = as_number(body, key, default)
    if value is None or not 0.0 <= value <= 1.0:
        raise ControlError(f"{key}: a fraction between 0 and 1")
    return value


def _per_minute(body: dict[str, Any], key: str, default: float | None) -> float:
    value = as_number(body, key, default)
    if value is None or value < 0:
        raise ControlError(f"{key}: a non-negative number")
    return value


def _spm(body: dict[str, Any], default: float | None) -> float:
    return _per_minute(body, "sessions_per_minute", default)


class TrafficStore:
    """Callers need not hold the lock: every method takes it."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._entries: dict[tuple[str, str, str, str], Traffic] = {}

    def register(self, body: dict[str, Any]) -> Traffic:
        org, project = require_text(body, "org"), require_text(body, "project")
        project_id = body.get("project_id")
        if project_id is not None:
            try:
                project_id = int(project_id)
            except (TypeError, ValueError):
                raise ControlError("project_id: a numeric Sentry project id") from None
        crash_rate = _rate(body, "crash_rate", 0.0)
        errored_rate = _rate(body, "errored_rate", 0.0)
        if crash_rate + errored_rate > 1.0:
            raise ControlError("crash_rate + errored_rate: at most 1")
        # Traffic that only produces error events need not name a session rate.
        spm_default = 0.0 if "errors_per_minute" in body else None
        phase = Phase(
            at=as_number(body, "start") or self.sim.now(),
            sessions_per_minute=_spm(body, spm_default),
            crash_rate=crash_rate,
            errored_rate=errored_rate,
            errors_per_minute=_per_minute(body, "errors_per_minute", 0.0),
        )
        directory = self.sim.sentry_projects
        traffic = Traffic(
            org=org,
            project=project,
            project_id=project_id if project_id is not None else directory.id_for(org, project),
            environment=as_text(body, "environment") or "production",
            release=require_text(body, "release"),
            stop=as_number(body, "stop"),
            phases=[phase],
        )
        with self.sim.lock:
            # Same key replaces: re-registering is how a test restarts a release's history.
            self._entries[traffic.key] = traffic
        return traffic

    def add_phase(self, body: dict[str, Any]) -> list[Traffic]:
        org, release = require_text(body, "org"), require_text(body, "release")
        environment = as_text(body, "environment") or "production"
        project = as_text(body, "project")
        at = as_number(body, "at") or self.sim.now()
        with self.sim.lock:
            matched = [
                t
                for t in self._entries.values()
                if (t.org, t.environment, t.release) == (org, environment, release)
                and project in (None, t.project)
            ]
            if not matched:
                raise ControlError(f"no traffic for release {release!r} in {org}/{environment}", 404)
            for traffic in matched:
                previous = max((p for p in traffic.phases if p.at <= at), key=lambda p: p.at, default=None)
                previous = previous or traffic.phases[0]
                crash_rate = _rate(body, "crash_rate", previous.crash_rate)
                errored_rate = _rate(body, "errored_rate", previous.errored_rate)
                if crash_rate + errored_rate > 1.0:
                    raise ControlError("crash_rate + errored_rate: at most 1")
                phase = Phase(
                    at,
                    _spm(body, previous.sessions_per_minute),
                    crash_rate,
                    errored_rate,
                    _per_minute(body, "errors_per_minute", previous.errors_per_minute),
                )
                traffic.phases = sorted([*traffic.phases, phase], key=lambda p: p.at)
            return matched

    def entries(self) -> list[Traffic]:
        with self.sim.lock:
            return list(self._entries.values())

    def matching(self, org: str) -> list[Traffic]:
        with self.sim.lock:
            return [t for t in self._entries.values() if t.org == org]

    def list(self) -> list[dict[str, Any]]:
        now = self.sim.now()
        with self.sim.lock:
            return [t.to_json(now) for t in self._entries.values()]

    def clear(self) -> None:
        with self.sim.lock:
            self._entries.clear()
