"""Who the Vercel token is: ``GET /v2/user`` and ``GET /v2/teams/{idOrSlug}`` (docs/vendor-apis.md §2.8).

A team answers with the token's ``membership.role``; whether that role may promote is the
question ``manage.py doctor`` asks. The role is OWNER unless a test sets it through
``/_sim/vercel/token``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.service import Route, route
from simulator.wire import ControlError, Request, Response, json_response

if TYPE_CHECKING:
    from simulator.vercel import VercelService

ROLES = ("OWNER", "MEMBER", "DEVELOPER", "BILLING", "VIEWER", "VIEWER_FOR_PLUS", "CONTRIBUTOR")
USER_ID = "usr_SimUser00000000000000001"


class Account:
    def __init__(self, vercel: VercelService) -> None:
        self.vercel = vercel
        self.role = "OWNER"

    def reset(self) -> None:
        self.role = "OWNER"

    def routes(self) -> list[Route]:
        return [
            route("GET", r"/v2/user", self.user),
            route("GET", r"/v2/teams/(?P<team>[^/]+)", self.team),
        ]

    def set_role(self, body: dict[str, Any]) -> dict[str, Any]:
        role = body.get("role")
        if role not in ROLES:
            raise ControlError(f"role: one of {', '.join(ROLES)}")
        with self.vercel.sim.lock:
            self.role = role
        return {"role": role}

    def user(self, request: Request, args: dict[str, str]) -> Response:
        user = {
            "id": USER_ID,
            "uid": USER_ID,
            "email": "dev-alice@example.com",
            "name": "Alice",
            "username": "dev-alice",
            "defaultTeamId": None,
            "avatar": None,
            "createdAt": 1_700_000_000_000,
            "softBlock": None,
            "billing": {"plan": "pro"},
            "resourceConfig": {},
            "stagingPrefix": "dev-alice",
            "version": "northstar",
        }
        return json_response(200, {"user": user})

    def team(self, request: Request, args: dict[str, str]) -> Response:
        ref = args["team"]
        known = {(p.team_id, p.team_slug) for p in self.vercel.projects.values() if p.team_id}
        found = next(((i, s) for i, s in known if ref in (i, s)), None)
        if found is None:
            return json_response(404, {"error": {"code": "not_found", "message": "Team not found"}})
        team_id, slug = found
        membership = {"role": self.role, "confirmed": True, "created": 1_700_000_000_000, "uid": USER_ID}
        return json_response(
            200,
            {
                "id": team_id,
                "slug": slug or team_id,
                "name": (slug or team_id).replace("-", " ").title(),
                "createdAt": 1_700_000_000_000,
                "avatar": None,
                "membership": membership,
            },
        )
