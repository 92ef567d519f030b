"""Sentry REST API (docs/vendor-apis.md §3.1-3.4): release-health sessions and error-event counts.

Errors are DRF-style ``{"detail": ...}``. The 429 is Sentry's odd one: a JSON body served as
``text/html`` and no ``Retry-After``; clients must wait for ``X-Sentry-Rate-Limit-Reset``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from simulator import sentry_events, sentry_incidents, sessions
from simulator.service import RateWindow, Route, Service, resolve, route
from simulator.wire import Request, Response, iso_z, json_response

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.sentry_projects import SentryProject
    from simulator.state import Simulator

RATE_LIMIT = 40  # per second, the figure in Sentry's own 429 message
CONCURRENT_LIMIT = 25
_DETAILS = {
    400: "Bad request",
    401: "Invalid token",
    403: "You do not have permission to perform this action.",
    404: "The requested resource does not exist",
    409: "Conflict",
}


def detail(status: int, message: str) -> Response:
    return json_response(status, {"detail": message})


class SentryService(Service):
    name = "sentry"

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.window = RateWindow(RATE_LIMIT, 1)
        self.routes: list[Route] = [
            route("GET", r"/api/0/organizations/(?P<org>[^/]+)/sessions/?", self.sessions),
            route("GET", r"/api/0/organizations/(?P<org>[^/]+)/events/?", self.events),
            route("GET", r"/api/0/organizations/(?P<org>[^/]+)/incidents/?", self.incidents),
            route("GET", r"/api/0/organizations/(?P<org>[^/]+)/?", self.organization),
            route("GET", r"/api/0/projects/(?P<org>[^/]+)/(?P<project>[^/]+)/?", self.project),
            route(
                "GET", r"/api/0/projects/(?P<org>[^/]+)/(?P<project>[^/]+)/environments/?", self.environments
            ),
        ]

    def handle(self, request: Request) -> Response:
        token = request.bearer()
        if token is None:
            return detail(401, "Authentication credentials were not provided.")
        required = self.sim.required_token("sentry")
        if required is not None and token != required:
            return detail(401, "Invalid token")
        found = resolve(self.routes, request)
        if found is None:
            return detail(404, "The requested resource does not exist")
        if isinstance(found, str):
            return detail(405, f'Method "{request.method}" not allowed.')
        handler, args = found
        return handler(request, args)

    def decorate(self, response: Response, request: Request) -> None:
        with self.sim.lock:
            limit, remaining, reset = self.window.hit(self.sim.now())
            inflight = self.sim.inflight.get(self.name, 0)
        for name, value in (
            ("Limit", limit),
            ("Remaining", remaining),
            ("Reset", reset),
            ("ConcurrentLimit", CONCURRENT_LIMIT),
            ("ConcurrentRemaining", max(0, CONCURRENT_LIMIT - inflight)),
        ):
            response.headers.setdefault(f"X-Sentry-Rate-Limit-{name}", str(value))

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            message = (
                "You are attempting to use this endpoint too frequently. "
                f"Limit is {RATE_LIMIT} requests in 1 seconds"
            )
            reset = self.window.reset_at(self.sim.now(), fault.reset_after)
            body = b"" if fault.empty_body else json.dumps({"detail": message}).encode("utf-8")
            # Built by Sentry as a plain HttpResponse: JSON text, HTML content type, and never
            # a Retry-After even when the fault asks for one (§3.1).
            return Response(
                429,
                body,
                {
                    "Content-Type": "text/html; charset=utf-8",
                    "X-Sentry-Rate-Limit-Limit": str(RATE_LIMIT),
                    "X-Sentry-Rate-Limit-Remaining": "0",
                    "X-Sentry-Rate-Limit-Reset": str(reset),
                },
            )
        if fault.kind == "timeout":
            response = detail(504, "Gateway Timeout")
        else:
            status = fault.status or 503
            response = detail(status, _DETAILS.get(status, "Internal Error"))
        if fault.empty_body:
            response.body = b""
            response.headers.pop("Content-Type", None)
        return response

    def refused(self, request: Request, org: str) -> Response | None:
        refusal = self.sim.sentry_projects.check_scope(
            org, request.query.get("project", []), request.query.get("environment", [])
        )
        return None if refusal is None else detail(refusal.status, refusal.detail)

    def organization(self, request: Request, args: dict[str, str]) -> Response:
        found = self.sim.sentry_projects.organization(args["org"])
        if found is None:
            return detail(404, "The requested resource does not exist")
        return json_response(200, {**found, "status": {"id": "active", "name": "active"}, "features": []})

    def _project(
        self, request: Request, args: dict[str, str]
    ) -> tuple[SentryProject | None, Response | None]:
        """Sentry's project lookup: by id or slug, a renamed slug a 302 to the new one."""
        directory = self.sim.sentry_projects
        project, moved = directory.lookup(args["org"], args["project"])
        if project is None:
            return None, detail(404, "The requested resource does not exist")
        if "project:read" not in directory.scopes:
            return None, detail(403, "You do not have permission to perform this action.")
        if moved:
            old = f"/projects/{args['org']}/{args['project']}/"
            new_url = request.full_path.replace(old, f"/projects/{args['org']}/{project.slug}/", 1)
            body = {
                "detail": {
                    "code": "resource-moved",
                    "message": "Resource has been moved",
                    "extra": {"url": new_url, "slug": project.slug},
                }
            }
            return None, json_response(302, body, {"Location": new_url})
        return project, None

    def project(self, request: Request, args: dict[str, str]) -> Response:
        project, refusal = self._project(request, args)
        if project is None:
            return refusal or detail(404, "The requested resource does not exist")
        org = self.sim.sentry_projects.organization(project.org) or {"id": "0", "slug": project.org}
        created = iso_z(project.created_at)
        team = {"id": "1", "slug": "engineering", "name": "Engineering"}
        return json_response(
            200,
            {
                "id": str(project.id),
                "slug": project.slug,
                "name": project.name,
                "platform": "javascript-nextjs",
                "dateCreated": created,
                "isBookmarked": False,
                "isMember": True,
                "hasAccess": True,
                "isPublic": False,
                "isInternal": False,
                "status": "active",
                "features": ["releases"],
                "firstEvent": created,
                "hasSessions": True,
                "environments": sorted(project.environments),
                "organization": org,
                "team": team,
                "teams": [team],
            },
        )

    def environments(self, request: Request, args: dict[str, str]) -> Response:
        project, refusal = self._project(request, args)
        if project is None:
            return refusal or detail(404, "The requested resource does not exist")
        names = sorted(project.environments)
        return json_response(
            200, [{"id": str(index + 1), "name": name, "isHidden": False} for index, name in enumerate(names)]
        )

    def sessions(self, request: Request, args: dict[str, str]) -> Response:
        refusal = self.refused(request, args["org"])
        if refusal is not None:
            return refusal
        now = self.sim.now()
        try:
            query = sessions.parse(request.query, now)
        except sessions.SessionsError as invalid:
            return detail(400, str(invalid))
        body, has_previous, has_next = sessions.compute(self.sim.traffic.matching(args["org"]), query, now)
        link = self.link_header(request, query.offset, query.per_page, has_previous, has_next)
        return json_response(200, body, {"Link": link})

    def events(self, request: Request, args: dict[str, str]) -> Response:
        refusal = self.refused(request, args["org"])
        if refusal is not None:
            return refusal
        now = self.sim.now()
        try:
            query = sentry_events.parse(request.query, now)
        except sentry_events.EventsError as invalid:
            return detail(400, str(invalid))
        traffic = self.sim.traffic.matching(args["org"])
        body, has_previous, has_next = sentry_events.compute(traffic, query, now)
        link = self.link_header(request, query.offset, query.per_page, has_previous, has_next)
        return json_response(200, body, {"Link": link})

    def incidents(self, request: Request, args: dict[str, str]) -> Response:
        org = args["org"]
        refusal = self.refused(request, org)
        if refusal is not None:
            return refusal
        ids = [value for value in request.query.get("project", []) if value != "-1"]
        slugs = None
        if ids:
            slugs = set()
            for value in ids:
                project, _ = self.sim.sentry_projects.lookup(org, value)
                if project is not None:
                    slugs.add(project.slug)
        status = (request.query.get("status") or [None])[0]
        rows = self.sim.sentry_incidents.listing(org, slugs, request.query.get("environment", []), status)
        try:
            chunk, link = sentry_incidents.page(request, rows)
        except sentry_incidents.IncidentError as invalid:
            return detail(400, str(invalid))
        return json_response(200, chunk, {"Link": link})

    def link_header(
        self, request: Request, offset: int, per_page: int, has_prev: bool, has_next: bool
    ) -> str:
        """Sentry's pagination header: both links always present, ``results`` says which has any.

        Both endpoints page by row offset (Sentry's GenericOffsetPaginator): the cursor reads
        ``0:<offset>:<is_prev>``, and the previous one may go below zero."""
        split = urlsplit(request.full_path)
        base = f"http://{request.header('host') or 'localhost'}{split.path}"
        pairs = [(k, v) for k, v in parse_qsl(split.query, keep_blank_values=True) if k != "cursor"]
        links = []
        for rel, target, is_prev, results in (
            ("previous", offset - per_page, 1, has_prev),
            ("next", offset + per_page, 0, has_next),
        ):
            cursor = f"0:{target}:{is_prev}"
            url = f"{base}?{urlencode([*pairs, ('cursor', cursor)])}"
            links.append(f'<{url}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{cursor}"')
        return ", ".join(links)
