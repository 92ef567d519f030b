"""Vercel REST API (docs/vendor-apis.md §2): deployments, projects, aliases, promote and rollback;
rolling releases live in vercel_rolling.py.

Promote and rollback are asynchronous as on Vercel: the POST answers 202/201 with an empty body
and an alias job moves ``pending -> in-progress -> succeeded`` over ``--alias-delay`` seconds;
only then do the production domains move. A client that trusts the POST's answer instead of
polling ``lastAliasRequest`` is caught out here just as it would be in production.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from simulator import vercel_control
from simulator.service import RateWindow, Route, Service, resolve, route
from simulator.vercel_account import Account
from simulator.vercel_model import (
    Deployment,
    Project,
    alias_record,
    v6_deployment,
    v9_project,
    v13_deployment,
)
from simulator.vercel_rolling import RollingReleases
from simulator.wire import Request, Response, empty_response, json_response

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.state import Simulator

RATE_LIMIT = 1000  # per minute; reported only, faults inject the 429s
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "gone",
    422: "unprocessable_entity",
    500: "internal_server_error",
}


def vercel_error(status: int, code: str, message: str, **extra: Any) -> Response:
    return json_response(status, {"error": {"code": code, "message": message, **extra}})


class VercelService(Service):
    name = "vercel"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.window = RateWindow(RATE_LIMIT, 60)
        self.projects: dict[str, Project] = {}
        self.deployments: dict[str, Deployment] = {}
        self.seq = 0
        self.rolling = RollingReleases(self)
        self.account = Account(self)
        self.routes: list[Route] = [
            *self.rolling.routes(),
            *self.account.routes(),
            route("GET", r"/v13/deployments/(?P<ref>[^/]+)", self.get_deployment),
            route("GET", r"/v(?:6|7)/deployments", self.list_deployments),
            route("GET", r"/v2/deployments/(?P<ref>[^/]+)/aliases", self.deployment_aliases),
            route("POST", r"/v(?:9|10)/projects/(?P<project>[^/]+)/promote/(?P<ref>[^/]+)", self.promote),
            route("POST", r"/v1/projects/(?P<project>[^/]+)/rollback/(?P<ref>[^/]+)", self.rollback),
            route("POST", r"/v9/projects/(?P<project>[^/]+)/rollback/(?P<ref>[^/]+)", self.rollback_v9),
            route("GET", r"/v9/projects/(?P<project>[^/]+)", self.get_project),
            route("GET", r"/v4/aliases", self.list_aliases),
            route("GET", r"/v4/aliases/(?P<alias>[^/]+)", self.get_alias),
        ]

    def reset(self) -> None:
        self.projects.clear()
        self.deployments.clear()
        self.account.reset()

    # --- plumbing ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        token = request.bearer()
        if token is None:
            return vercel_error(403, "forbidden", "The request is missing an authentication token")
        required = self.sim.required_token("vercel")
        if required is not None and token != required:
            return vercel_error(403, "forbidden", "Not authorized", invalidToken=True)
        found = resolve(self.routes, request)
        if found is None:
            return vercel_error(404, "not_found", "The requested path was not found")
        if isinstance(found, str):
            return vercel_error(405, "method_unknown", f"This endpoint only responds to {found}")
        handler, args = found
        with self.sim.lock:
            return handler(request, args)

    def decorate(self, response: Response, request: Request) -> None:
        with self.sim.lock:
            limit, remaining, reset = self.window.hit(self.sim.now())
        for name, value in (("Limit", limit), ("Remaining", remaining), ("Reset", reset)):
            response.headers.setdefault(f"X-RateLimit-{name}", str(value))

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            now = self.sim.now()
            # A short default wait keeps tests quick; the fault can ask for a longer one.
            after = fault.reset_after if fault.reset_after is not None else fault.retry_after
            reset = self.window.reset_at(now, after if after is not None else 1.0)
            parts = request.path.strip("/").split("/")
            name = "api-" + (parts[1] if len(parts) > 1 else parts[0])
            wait = max(0, reset - int(now))
            response = vercel_error(
                429,
                "rate_limited",
                f"The rate limit of {RATE_LIMIT} exceeded for '{name}-{request.method.lower()}'. "
                f"Try again in {wait} seconds",
                limit={"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": RATE_LIMIT},
            )
            response.headers.update(
                {
                    "X-RateLimit-Limit": str(RATE_LIMIT),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                }
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
        elif fault.kind == "timeout":
            response = vercel_error(504, "gateway_timeout", "The request timed out")
        else:
            status = fault.status or 503
            code = _ERROR_CODES.get(status, "internal_server_error")
            response = vercel_error(status, code, "An unexpected internal error occurred (injected fault)")
        if fault.empty_body:
            response.body = b""
            response.headers.pop("Content-Type", None)
        return response

    # --- lookups -------------------------------------------------------------------------------

    def in_scope(self, project: Project, request: Request) -> bool:
        """Vercel scopes every call to the token's account or the ``teamId``/``slug`` team: a
        team project looked up without its team (or with another) simply does not exist."""
        team, slug = request.param("teamId"), request.param("slug")
        if team is not None or slug is None:
            return (team or None) == project.team_id
        return project.team_id is not None and slug in (project.team_slug, project.team_id)

    def find_project(self, ref: str, request: Request) -> Project | None:
        for project in self.projects.values():
            if ref in (project.id, project.name) and self.in_scope(project, request):
                return project
        return None

    def find_deployment(self, ref: str, request: Request) -> Deployment | None:
        host = ref.lower().removeprefix("https://").rstrip("/")
        found = self.deployments.get(ref)
        if found is None:
            found = next((d for d in self.deployments.values() if d.url == host), None)
        if found is None:
            for project in self.projects.values():
                if host in project.domains and project.production_id:
                    found = self.deployments.get(project.production_id)
        return found if found is not None and self.in_scope(found.project, request) else None

    def of_project(self, project: Project) -> list[Deployment]:
        return [d for d in self.deployments.values() if d.project is project]

    def now_ms(self) -> int:
        return int(self.sim.now() * 1000)

    # --- endpoints -----------------------------------------------------------------------------

    def get_deployment(self, request: Request, args: dict[str, str]) -> Response:
        found = self.find_deployment(args["ref"], request)
        if found is None:
            return vercel_error(404, "not_found", "Deployment not found")
        return json_response(200, v13_deployment(found))

    def list_deployments(self, request: Request, args: dict[str, str]) -> Response:
        items = [d for d in self.deployments.values() if self.in_scope(d.project, request)]
        project_ref = request.param("projectId")
        if project_ref:
            project = self.find_project(project_ref, request)
            if project is None:
                return vercel_error(404, "not_found", "Project not found")
            items = [d for d in items if d.project is project]
        target = request.param("target")
        if target:
            items = [d for d in items if (d.target or "preview") == target]
        states = {s.strip().upper() for s in (request.param("state") or "").split(",") if s.strip()}
        if states:
            items = [d for d in items if d.state in states]
        for param, key in (("sha", "githubCommitSha"), ("branch", "githubCommitRef")):
            wanted = request.param(param)
            if wanted:
                items = [d for d in items if d.meta.get(key) == wanted]
        if request.param("rollbackCandidate") == "true":
            items = [d for d in items if v6_deployment(d)["isRollbackCandidate"]]
        try:
            since, until = int(request.param("since") or 0), int(request.param("until") or 0)
            limit = int(request.param("limit") or 20)
        except ValueError:
            return vercel_error(
                400, "bad_request", "Invalid request: `limit`, `since` and `until` must be numbers"
            )
        if limit < 1 or limit > 100:
            return vercel_error(400, "bad_request", "Invalid request: `limit` must be between 1 and 100")
        items = [
            d for d in items if (not since or d.created_at > since) and (not until or d.created_at < until)
        ]
        items.sort(key=lambda d: (d.created_at, d.seq), reverse=True)
        page = items[:limit]
        pagination = {
            "count": len(page),
            "next": page[-1].created_at if len(items) > limit else None,
            "prev": page[0].created_at if page else None,
        }
        return json_response(200, {"deployments": [v6_deployment(d) for d in page], "pagination": pagination})

    def deployment_aliases(self, request: Request, args: dict[str, str]) -> Response:
        found = self.find_deployment(args["ref"], request)
        if found is None:
            return vercel_error(404, "not_found", "Deployment not found")
        aliases = []
        if found.is_production:
            for domain in found.project.domains:
                record = alias_record(found.project, domain, found)
                aliases.append({k: record[k] for k in ("uid", "alias", "created", "redirect")})
        return json_response(200, {"aliases": aliases})

    def get_project(self, request: Request, args: dict[str, str]) -> Response:
        project = self.find_project(args["project"], request)
        if project is None:
            return vercel_error(404, "not_found", "Project not found")
        return json_response(200, v9_project(project, self.of_project(project), self.now_ms()))

    def list_aliases(self, request: Request, args: dict[str, str]) -> Response:
        projects = [p for p in self.projects.values() if self.in_scope(p, request)]
        project_ref = request.param("projectId")
        if project_ref:
            project = self.find_project(project_ref, request)
            if project is None:
                return vercel_error(404, "not_found", "Project not found")
            projects = [project]
        wanted = {
            d.strip().lower() for value in request.params("domain") for d in value.split(",") if d.strip()
        }
        records = []
        for project in projects:
            production = self.deployments.get(project.production_id or "")
            if production is None:
                continue  # no alias exists until something has served production
            for domain in project.domains:
                if not wanted or domain in wanted:
                    records.append(alias_record(project, domain, production))
        records.sort(key=lambda r: r["updatedAt"], reverse=True)
        try:
            limit = max(1, min(100, int(request.param("limit") or 20)))
        except ValueError:
            return vercel_error(400, "bad_request", "Invalid request: `limit` must be a number")
        page = records[:limit]
        pagination = {
            "count": len(page),
            "next": page[-1]["updatedAt"] if len(records) > limit else None,
            "prev": page[0]["updatedAt"] if page else None,
        }
        return json_response(200, {"aliases": page, "pagination": pagination})

    def get_alias(self, request: Request, args: dict[str, str]) -> Response:
        wanted = args["alias"].lower()
        for project in self.projects.values():
            production = self.deployments.get(project.production_id or "")
            if production is None or not self.in_scope(project, request):
                continue
            for domain in project.domains:
                if wanted in (domain, project.alias_uids.get(domain)):
                    return json_response(200, alias_record(project, domain, production))
        return vercel_error(404, "not_found", "Alias not found")

    def promote(self, request: Request, args: dict[str, str]) -> Response:
        return self.start_alias_job(request, args, "promote", 202)

    def rollback(self, request: Request, args: dict[str, str]) -> Response:
        return self.start_alias_job(request, args, "rollback", 201)

    def rollback_v9(self, request: Request, args: dict[str, str]) -> Response:
        # The older endpoint requires a JSON body (the CLI sends `{}`), §2.5.
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return vercel_error(400, "bad_request", "Invalid request: body must be a JSON object")
        return self.start_alias_job(request, args, "rollback", 201)

    # --- alias jobs ----------------------------------------------------------------------------

    def start_alias_job(self, request: Request, args: dict[str, str], kind: str, status: int) -> Response:
        project = self.find_project(args["project"], request)
        if project is None:
            return vercel_error(404, "not_found", "Project not found")
        target = self.find_deployment(args["ref"], request)
        if target is None:
            return vercel_error(404, "not_found", "Deployment not found")
        if target.project is not project:
            return vercel_error(
                400, "bad_request", f"Deployment {target.id} does not belong to project {project.id}"
            )
        if target.state != "READY":
            return vercel_error(
                400, "bad_request", f"Deployment {target.id} is not ready (state {target.state})"
            )
        if project.active_job() is not None:
            return vercel_error(
                409, "conflict", "A promote or rollback is already in progress for this project"
            )
        rolling = project.rolling_release
        if kind == "promote" and rolling is not None and rolling.state == "ACTIVE":
            # §2.4: a promote changes nothing while a rolling release is active.
            return vercel_error(
                409, "conflict", "A rolling release is active for this project; complete or abort it first"
            )
        current = self.deployments.get(project.production_id or "")
        if kind == "promote" and project.rolling_stages is not None and current not in (None, target):
            # §2.4: with Rolling Releases configured, a promote starts a rolling release on its
            # first stage instead of cutting production over; someone must advance it.
            self.rolling.begin(project, current, target)
            return empty_response(status)
        job = {
            "fromDeploymentId": project.production_id,
            "toDeploymentId": target.id,
            "jobStatus": "pending",
            "requestedAt": self.now_ms(),
            "type": kind,
        }
        project.jobs.append(job)
        if kind == "rollback":
            project.last_rollback_target = {
                k: job[k] for k in ("fromDeploymentId", "toDeploymentId", "jobStatus", "requestedAt")
            }
            description = request.param("description")
            if description is not None:
                project.last_rollback_target["description"] = description
            self.rolling.abort(project, target)  # abort = rollback (§2.7)
        self.run_job(project, job, target)
        return empty_response(status)

    def run_job(self, project: Project, job: dict[str, Any], target: Deployment) -> None:
        delay = max(0.0, self.sim.options.alias_delay)
        if delay == 0:
            self.set_job_status(project, job, "in-progress")
            self.finish_job(project, job, target)
            return
        generation = self.sim.generation

        def run() -> None:
            time.sleep(delay * 0.3)
            with self.sim.lock:
                if self.sim.generation != generation:
                    return
                self.set_job_status(project, job, "in-progress")
            time.sleep(delay * 0.7)
            with self.sim.lock:
                if self.sim.generation != generation:
                    return
                self.finish_job(project, job, target)

        threading.Thread(target=run, daemon=True, name=f"alias-job-{target.id}").start()

    def set_job_status(self, project: Project, job: dict[str, Any], status: str) -> None:
        job["jobStatus"] = status
        rollback = project.last_rollback_target
        if job["type"] == "rollback" and rollback and rollback["toDeploymentId"] == job["toDeploymentId"]:
            rollback["jobStatus"] = status

    def finish_job(self, project: Project, job: dict[str, Any], target: Deployment) -> None:
        """Called with the lock held."""
        if project.fail_alias_jobs > 0:
            project.fail_alias_jobs -= 1
            self.set_job_status(project, job, "failed")
            return
        self.go_live(target)
        self.set_job_status(project, job, "succeeded")
        # Rollbacks never fire deployment.promoted (§1.4).
        if job["type"] == "promote":
            self.announce_promoted(target)

    def announce_promoted(self, deployment: Deployment) -> None:
        """``deployment.promoted`` to Gatekeeper, after a promote or a completed rolling release."""
        if self.sim.options.gatekeeper_url:
            vercel_control.send_later(self, deployment, "deployment.promoted")

    def go_live(self, deployment: Deployment) -> None:
        project = deployment.project
        project.production_id = deployment.id
        deployment.substate = "PROMOTED"
        deployment.alias_assigned = True
        moved_at = self.now_ms()
        for domain in project.domains:
            project.alias_updated_at[domain] = moved_at
