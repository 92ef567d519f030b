"""How a canary's share of production traffic is moved: a small interface and its Vercel driver.

The ramp engine (``releases/workflows/canary/ramp.py``) only asks a router where traffic is and to move it one
stage. Vercel Rolling Releases is the driver today (docs/vendor-apis.md §2.7); another router, e.g. an
Edge Config percentage read by middleware, implements the same five methods and is registered in
``ROUTERS`` without touching the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from releases.integrations import clients
from releases.integrations.vercel.answers import RollingRelease
from releases.models import Project


@dataclass(frozen=True)
class Traffic:
    """Where the router has production traffic now."""

    state: str  # active | complete | aborted | none
    canary_id: str | None = None
    stage_index: int | None = None
    percent: float | None = None
    stages: tuple[float, ...] = ()  # each stage's canary percentage, as the router will apply them

    def is_ramping(self, canary_id: str) -> bool:
        return self.state == "active" and self.canary_id == canary_id


class TrafficRouter(Protocol):
    name: str

    def current(self, project: Project) -> Traffic: ...

    def start(self, project: Project, canary_id: str) -> Traffic: ...

    def to_stage(
        self, project: Project, canary_id: str, index: int, *, from_index: int | None
    ) -> Traffic: ...

    def complete(self, project: Project, canary_id: str) -> Traffic: ...

    def abort(self, project: Project, canary_id: str, previous_id: str) -> None:
        """All traffic back to ``previous_id``; asynchronous, ``current`` shows when done."""


class VercelRollingReleases:
    """Vercel Rolling Releases: start, approve-stage, complete; abort is the rollback endpoint."""

    name = "vercel"

    def current(self, project: Project) -> Traffic:
        return _traffic(clients.vercel(project).rolling_release(project.vercel_project_id))

    def start(self, project: Project, canary_id: str) -> Traffic:
        return _traffic(clients.vercel(project).start_rolling_release(project.vercel_project_id, canary_id))

    def to_stage(self, project: Project, canary_id: str, index: int, *, from_index: int | None) -> Traffic:
        answer = clients.vercel(project).approve_stage(
            project.vercel_project_id, canary_id, index, active_stage_index=from_index
        )
        return _traffic(answer)

    def complete(self, project: Project, canary_id: str) -> Traffic:
        answer = clients.vercel(project).complete_rolling_release(project.vercel_project_id, canary_id)
        return _traffic(answer)

    def abort(self, project: Project, canary_id: str, previous_id: str) -> None:
        # No published abort endpoint: the CLI's `rolling-release abort` rolls back (§2.7).
        clients.vercel(project).rollback(
            project.vercel_project_id, previous_id, description=f"Gatekeeper: canary {canary_id} aborted"
        )


def _traffic(release: RollingRelease | None) -> Traffic:
    if release is None:
        return Traffic(state="none")
    return Traffic(
        state=release.state.lower(),
        canary_id=release.canary_deployment_id,
        stage_index=release.active_stage_index,
        percent=release.active_percentage,
        stages=tuple(stage.target_percentage for stage in release.stages),
    )


ROUTERS: dict[str, TrafficRouter] = {"vercel": VercelRollingReleases()}


def router_for(policy: dict[str, object] | None) -> TrafficRouter:
    name = str((policy or {}).get("router") or "vercel")
    try:
        return ROUTERS[name]
    except KeyError:
        raise ValueError(f"no traffic router named {name!r}; known: {', '.join(sorted(ROUTERS))}") from None
