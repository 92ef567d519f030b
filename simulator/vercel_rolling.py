"""Vercel rolling releases (docs/vendor-apis.md §2.7) on simulated projects.

``start`` puts the canary on the first stage, ``approve-stage`` moves it one stage at a time,
and approving into the final (100 %) stage or calling ``complete`` ends it. Abort is the
rollback endpoint: vercel.py calls :meth:`RollingReleases.abort` when it accepts a rollback.

Completing moves production at once, as the edge does, and records it as a succeeded promote
alias job carrying ``fromRollingReleaseId``, so ``GET /v9/projects`` tells the same story as
after a promote. Every change of the canary's share lands in ``project.rolling_history`` with
its simulated time, for tests to read traffic over time.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from simulator.service import Route, route
from simulator.vercel_model import (
    DEFAULT_STAGES,
    Deployment,
    Project,
    RollingRelease,
    random_id,
    rolling_release_json,
)
from simulator.wire import ControlError, Request, Response, as_object, json_response

if TYPE_CHECKING:
    from simulator.vercel import VercelService

STATES = ("ACTIVE", "COMPLETE", "ABORTED")


def parse_stages(value: Any) -> list[int] | None:
    """The control API's ``rolling_release`` setting: ``{"stages": [5, 25, 100]}`` or null.
    The final stage is always 100 %; it is added when the list stops short of it."""
    if value is None:
        return None
    config = as_object(value, "rolling_release")
    unknown = set(config) - {"stages"}
    if unknown:
        raise ControlError(f"rolling_release: unknown keys {sorted(unknown)}")
    stages = config.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ControlError("rolling_release.stages: a list of percentages")
    if not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 100 for p in stages):
        raise ControlError("rolling_release.stages: whole percentages from 1 to 100")
    if any(b <= a for a, b in itertools.pairwise(stages)):
        raise ControlError("rolling_release.stages: strictly increasing")
    stages = stages if stages[-1] == 100 else [*stages, 100]
    if len(stages) < 2:
        raise ControlError("rolling_release.stages: at least one stage below 100")
    return stages


def rolling_view(project: Project) -> dict[str, Any]:
    """What ``GET /_sim/vercel/projects/{id}`` shows under ``rolling_release``."""
    rr = project.rolling_release
    return {
        "configured": project.rolling_stages is not None,
        "stages": list(project.rolling_stages or DEFAULT_STAGES),
        "release": rolling_release_json(rr) if rr else None,
        "canary_percent": rr.canary_percent if rr else None,
        "history": [dict(entry) for entry in project.rolling_history],
    }


def _error(status: int, message: str) -> Response:
    codes = {400: "bad_request", 404: "not_found"}
    return json_response(status, {"error": {"code": codes[status], "message": message}})


def _answer(rr: RollingRelease) -> Response:
    return json_response(200, {"rollingRelease": rolling_release_json(rr)})


class RollingReleases:
    """Handlers for ``/v1/projects/{idOrName}/rolling-release...``; called with the lock held."""

    def __init__(self, vercel: VercelService) -> None:
        self.vercel = vercel

    def routes(self) -> list[Route]:
        base = r"/v1/projects/(?P<project>[^/]+)/rolling-release"
        return [
            route("GET", base, self.get),
            route("POST", base + "/start", self.start),
            route("POST", base + "/approve-stage", self.approve_stage),
            route("POST", base + "/complete", self.complete),
        ]

    # --- endpoints -----------------------------------------------------------------------------

    def get(self, request: Request, args: dict[str, str]) -> Response:
        project = self.vercel.find_project(args["project"], request)
        if project is None:
            return _error(404, "Project not found")
        state = request.param("state")
        if state is not None and state not in STATES:
            return _error(400, f"Invalid request: `state` must be one of {', '.join(STATES)}")
        rr = project.rolling_release
        if rr is None or (state is not None and rr.state != state):
            return json_response(200, {"rollingRelease": None})
        return _answer(rr)

    def start(self, request: Request, args: dict[str, str]) -> Response:
        found = self._target(request, args)
        if isinstance(found, Response):
            return found
        project, canary, _ = found
        rr = project.rolling_release
        if rr is not None and rr.state == "ACTIVE":
            if rr.canary is canary:
                return _answer(rr)  # idempotent for the same canary
            return _error(
                400, f"A rolling release of {rr.canary.id} is already active; complete or abort it first"
            )
        if canary.state != "READY":
            return _error(400, f"Deployment {canary.id} is not ready (state {canary.state})")
        if canary.target != "production":
            return _error(400, f"Deployment {canary.id} is not a production deployment")
        current = self.vercel.deployments.get(project.production_id or "")
        if current is None:
            return _error(400, "The project has no production deployment to roll out from")
        if current is canary:
            return _error(400, f"Deployment {canary.id} already serves production")
        if project.active_job() is not None:
            return _error(400, "A promote or rollback is in progress for this project")
        return _answer(self.begin(project, current, canary))

    def begin(self, project: Project, current: Deployment, canary: Deployment) -> RollingRelease:
        """A new rolling release of ``canary`` on its first stage; called with the lock held."""
        now = self.vercel.now_ms()
        stages = list(project.rolling_stages or DEFAULT_STAGES)
        rr = RollingRelease(random_id("rr_"), current, canary, stages, started_at=now, updated_at=now)
        project.rolling_release = rr
        canary.substate = "ROLLING"
        self._record(project, rr, "start")
        return rr

    def approve_stage(self, request: Request, args: dict[str, str]) -> Response:
        found = self._target(request, args)
        if isinstance(found, Response):
            return found
        project, canary, body = found
        next_index = body.get("nextStageIndex")
        if isinstance(next_index, bool) or not isinstance(next_index, int):
            return _error(400, "Invalid request: `nextStageIndex` must be an integer")
        rr = self._active(project, canary)
        if isinstance(rr, Response):
            return rr
        assert rr.active_index is not None  # an ACTIVE release always has an active stage
        active_index = body.get("activeStageIndex", rr.active_index)
        if active_index != rr.active_index:
            message = f"`activeStageIndex` {active_index} is not the active stage ({rr.active_index})"
            return _error(400, message)
        if next_index != rr.active_index + 1:
            return _error(
                400,
                f"`nextStageIndex` {next_index} is not the next stage: the active stage is "
                f"{rr.active_index}, so only {rr.active_index + 1} can be approved",
            )
        if next_index == rr.final_index:
            self._finish(project, rr)
        else:
            rr.active_index = next_index
            rr.updated_at = self.vercel.now_ms()
            self._record(project, rr, "approve")
        return _answer(rr)

    def complete(self, request: Request, args: dict[str, str]) -> Response:
        found = self._target(request, args)
        if isinstance(found, Response):
            return found
        project, canary, _ = found
        rr = project.rolling_release
        if rr is not None and rr.state == "COMPLETE" and rr.canary is canary:
            return _answer(rr)  # completing twice (or after approving the final stage) is a no-op
        rr = self._active(project, canary)
        if isinstance(rr, Response):
            return rr
        if project.active_job() is not None:
            return _error(400, "A promote or rollback is in progress for this project")
        self._finish(project, rr)
        return _answer(rr)

    # --- transitions ---------------------------------------------------------------------------

    def abort(self, project: Project, target: Deployment) -> None:
        """An accepted rollback aborts the active release: all traffic to ``target``."""
        rr = project.rolling_release
        if rr is None or rr.state != "ACTIVE":
            return
        rr.state, rr.active_index, rr.updated_at = "ABORTED", None, self.vercel.now_ms()
        if rr.canary is not target and rr.canary.substate == "ROLLING":
            rr.canary.substate = "STAGED"
        self._record(project, rr, "abort", target.id)

    def _finish(self, project: Project, rr: RollingRelease) -> None:
        now = self.vercel.now_ms()
        rr.state, rr.active_index, rr.updated_at = "COMPLETE", rr.final_index, now
        project.jobs.append(
            {
                "fromDeploymentId": project.production_id,
                "toDeploymentId": rr.canary.id,
                "jobStatus": "succeeded",
                "requestedAt": now,
                "type": "promote",
                "fromRollingReleaseId": rr.id,
            }
        )
        self.vercel.go_live(rr.canary)
        self._record(project, rr, "complete")
        self.vercel.announce_promoted(rr.canary)

    def _record(self, project: Project, rr: RollingRelease, event: str, serving: str | None = None) -> None:
        project.rolling_history.append(
            {
                "at": rr.updated_at,
                "event": event,
                "state": rr.state,
                "percent": rr.canary_percent,
                "stage_index": rr.active_index,
                "canary_deployment_id": rr.canary.id,
                "current_deployment_id": serving or rr.current.id,
            }
        )

    # --- lookups -------------------------------------------------------------------------------

    def _target(
        self, request: Request, args: dict[str, str]
    ) -> tuple[Project, Deployment, dict[str, Any]] | Response:
        """The project, the deployment named by ``canaryDeploymentId`` and the body; or the
        Vercel error for a missing project, a bad body or an unknown deployment."""
        project = self.vercel.find_project(args["project"], request)
        if project is None:
            return _error(404, "Project not found")
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _error(400, "Invalid request: body must be a JSON object")
        canary_id = body.get("canaryDeploymentId")
        if not isinstance(canary_id, str) or not canary_id:
            return _error(400, "Invalid request: missing required property `canaryDeploymentId`")
        canary = self.vercel.find_deployment(canary_id, request)
        if canary is None:
            return _error(404, "Deployment not found")
        if canary.project is not project:
            return _error(400, f"Deployment {canary.id} does not belong to project {project.id}")
        return project, canary, body

    def _active(self, project: Project, canary: Deployment) -> RollingRelease | Response:
        rr = project.rolling_release
        if rr is None or rr.state != "ACTIVE":
            return _error(404, f"No active rolling release for project {project.id}")
        if rr.canary is not canary:
            message = f"`canaryDeploymentId` {canary.id} is not the active release's canary ({rr.canary.id})"
            return _error(400, message)
        return rr
