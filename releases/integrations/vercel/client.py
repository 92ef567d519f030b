"""Vercel REST client: deployments, projects, promote, roll back, rolling releases (docs/vendor-apis.md §2).

Promote and rollback are asynchronous on Vercel's side: a 201/202 with an empty body means
"accepted", and completion shows up later in the project's ``lastAliasRequest`` (§2.4).
The caller polls :meth:`VercelClient.last_alias_request` / :meth:`production_deployment_id`
rather than trusting the POST's answer.

A 409 is a conflict with the project's current state (another alias job, an active rolling
release, a deployment that is already current). Resending the same request cannot resolve
that; the caller must re-read the project and decide again, so 409 is **permanent** here,
unlike the base. The exception: if Vercel attaches ``Retry-After`` it is telling us the
conflict is temporary, and we honour that as a transient error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from releases.integrations.http import DEFAULT_TIMEOUT, HttpClient, as_dict, parse_float, req_str
from releases.integrations.vercel.answers import (
    AliasRequest,
    Deployment,
    ProjectState,
    RollingRelease,
    configured_stages_from,
    deployment_from,
    deployments_by_domain,
    host_of,
    last_alias_request_from,
    optional_rolling_release_from,
    production_target_from,
    required_rolling_release_from,
)

logger = logging.getLogger(__name__)

# `GET /v4/aliases` accepts at most 20 `domain` values per call (§2.6).
MAX_DOMAINS_PER_QUERY = 20


class VercelClient(HttpClient):
    provider = "vercel"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        team_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            base_url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            clock=clock,
        )
        self.team_id = team_id

    # --- vendor conventions --------------------------------------------------------------------

    def retry_after_from(self, response: httpx.Response) -> float | None:
        # Retry-After is undocumented for Vercel but honoured when a proxy or Vercel sends it.
        explicit = super().retry_after_from(response)
        if explicit is not None or response.status_code != 429:
            # X-RateLimit-Reset rides on every response; it only means "wait" on a 429.
            return explicit
        # Both the header and the body's error.limit.reset are absolute epoch seconds (§2.1).
        reset = parse_float(response.headers.get("X-RateLimit-Reset"))
        if reset is None:
            reset = _body_limit_reset(response)
        return None if reset is None else reset - self.clock()

    def error_message(self, response: httpx.Response) -> tuple[str, str | None]:
        error = _body_error(response)
        if error is None:
            return super().error_message(response)
        message, code = error.get("message"), error.get("code")
        return (
            message if isinstance(message, str) and message else response.reason_phrase,
            code if isinstance(code, str) else None,
        )

    def is_permanent(self, response: httpx.Response) -> bool:
        if response.status_code == 409:  # see the module docstring
            return "Retry-After" not in response.headers
        return super().is_permanent(response)

    def _params(self, *pairs: tuple[str, str]) -> list[tuple[str, str]]:
        # Team scope goes on every call (§2.1); without it Vercel resolves ids against the
        # token's own account, where the team's projects do not exist.
        params = list(pairs)
        if self.team_id:
            params.append(("teamId", self.team_id))
        return params

    # --- calls -------------------------------------------------------------------------------

    def get_deployment(self, deployment_id: str) -> Deployment:
        response = self.request("GET", f"/v13/deployments/{_seg(deployment_id)}", params=self._params())
        return self.parse(response, deployment_from)

    def get_project(self, project_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(response, lambda data: as_dict(data, "project"))

    def promote(self, project_id: str, deployment_id: str) -> None:
        # 201 or 202 with an empty body, both meaning "accepted" (§2.4): never read it as JSON.
        self.request(
            "POST",
            f"/v10/projects/{_seg(project_id)}/promote/{_seg(deployment_id)}",
            params=self._params(),
            json={},
            expect=(201, 202),
        )

    def rollback(self, project_id: str, deployment_id: str, description: str | None = None) -> None:
        # `deployment_id` is the deployment to roll back *to*; success is 201, empty (§2.5).
        # The v1 endpoint takes no body, but the CLI's `{}` is harmless and the older v9
        # endpoint required it.
        pairs = [("description", description)] if description is not None else []
        self.request(
            "POST",
            f"/v1/projects/{_seg(project_id)}/rollback/{_seg(deployment_id)}",
            params=self._params(*pairs),
            json={},
            expect=(201,),
        )

    def last_alias_request(self, project_id: str) -> AliasRequest | None:
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(response, last_alias_request_from)

    def project_state(self, project_id: str) -> ProjectState:
        """What production serves and the last alias job, in one call (the rollback's hot path)."""
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(
            response, lambda data: ProjectState(production_target_from(data), last_alias_request_from(data))
        )

    def rolling_release_stages(self, project_id: str) -> list[float] | None:
        """The stage percentages of the project's Rolling Releases setting; None when it has none
        (a promote then cuts production over instead of starting a rolling release)."""
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(response, configured_stages_from)

    def token_role(self) -> str:
        """The token's role in the client's team (``OWNER``, ``MEMBER``, ``VIEWER``...), or
        ``OWNER`` for a personal account's own projects: who may promote (§2.8)."""
        if not self.team_id:
            self.parse(self.request("GET", "/v2/user"), lambda data: as_dict(data, "user answer"))
            return "OWNER"
        response = self.request("GET", f"/v2/teams/{_seg(self.team_id)}")
        return self.parse(
            response,
            lambda data: req_str(
                as_dict(as_dict(data, "team").get("membership"), "team.membership"), "role", "team.membership"
            ),
        )

    # --- rolling releases (§2.7) ---------------------------------------------------------------
    # There is no abort endpoint: aborting is an instant rollback to the current deployment
    # (:meth:`rollback`), which is what the CLI's `rolling-release abort` does.

    def rolling_release(self, project_id: str) -> RollingRelease | None:
        """The project's rolling release; None when the feature is on but nothing rolled yet."""
        response = self.request("GET", _rolling_path(project_id), params=self._params())
        return self.parse(response, optional_rolling_release_from)

    def start_rolling_release(self, project_id: str, canary_deployment_id: str) -> RollingRelease:
        # Idempotent for the same canary (§2.7), so a retry after a timeout is safe.
        return self._rolling_post(project_id, "start", {"canaryDeploymentId": canary_deployment_id})

    def approve_stage(
        self,
        project_id: str,
        canary_deployment_id: str,
        next_stage_index: int,
        active_stage_index: int | None = None,
    ) -> RollingRelease:
        body: dict[str, Any] = {
            "nextStageIndex": next_stage_index,
            "canaryDeploymentId": canary_deployment_id,
        }
        if active_stage_index is not None:
            # The CLI sends it (§2.7); it lets Vercel refuse an approval based on a stale view.
            body["activeStageIndex"] = active_stage_index
        return self._rolling_post(project_id, "approve-stage", body)

    def complete_rolling_release(self, project_id: str, canary_deployment_id: str) -> RollingRelease:
        """Send the canary to 100 % now, skipping any remaining stages."""
        return self._rolling_post(project_id, "complete", {"canaryDeploymentId": canary_deployment_id})

    def _rolling_post(self, project_id: str, action: str, body: dict[str, Any]) -> RollingRelease:
        response = self.request(
            "POST", f"{_rolling_path(project_id)}/{action}", params=self._params(), json=body
        )
        # A 200 means Vercel acted, so an unreadable answer still may have changed traffic.
        return self.parse(response, required_rolling_release_from, maybe_delivered=True)

    def aliases_of(self, project_id: str, domains: Sequence[str]) -> dict[str, str]:
        """The deployment each of ``domains`` (as given) points at, for those that are this
        project's aliases."""
        served: dict[str, str] = {}
        for start in range(0, len(domains), MAX_DOMAINS_PER_QUERY):
            chunk = domains[start : start + MAX_DOMAINS_PER_QUERY]
            response = self.request(
                "GET",
                "/v4/aliases",
                params=self._params(("projectId", project_id), *(("domain", d) for d in chunk)),
            )
            found = self.parse(response, lambda data: deployments_by_domain(data, project_id))
            served.update({d: found[host_of(d)] for d in chunk if host_of(d) in found})
        return served

    def production_deployment_id(self, project_id: str, domains: Sequence[str]) -> str | None:
        """The deployment serving production now.

        The production domains' aliases are the truth (they move on promote and rollback);
        the project's ``targets.production`` is the fallback when no domain is given or none
        of them has an alias.
        """
        served = self.aliases_of(project_id, domains)
        found = [(d, served[d]) for d in domains if d in served]
        if found:
            if len({deployment for _, deployment in found}) > 1:
                # Mid-promotion, or a domain pinned by hand: the first domain is the one the
                # operator named as "production", so it wins.
                logger.warning(
                    "vercel.aliases.domains_disagree",
                    extra={"project_id": project_id, "aliases": dict(found)},
                )
            return found[0][1]
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(response, production_target_from)


def _seg(value: str) -> str:
    """One path segment: an id (or deployment hostname) must not be able to add path or query."""
    return quote(value, safe="")


def _epoch_seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _body_error(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _body_limit_reset(response: httpx.Response) -> float | None:
    error = _body_error(response)
    limit = error.get("limit") if error else None
    return _epoch_seconds(limit.get("reset")) if isinstance(limit, dict) else None


def _rolling_path(project_id: str) -> str:
    return f"/v1/projects/{_seg(project_id)}/rolling-release"
