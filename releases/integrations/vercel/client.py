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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from releases.integrations.http import (
    DEFAULT_TIMEOUT,
    HttpClient,
    MalformedAnswer,
    as_dict,
    as_list,
    opt_str,
    parse_float,
    req_int,
    req_str,
)

logger = logging.getLogger(__name__)

# `GET /v4/aliases` accepts at most 20 `domain` values per call (§2.6).
MAX_DOMAINS_PER_QUERY = 20


@dataclass(frozen=True)
class Deployment:
    id: str
    url: str
    project_id: str
    ready_state: str  # QUEUED | BUILDING | ERROR | INITIALIZING | READY | CANCELED
    ready_substate: str | None  # STAGED | ROLLING | PROMOTED, only once READY
    target: str | None  # "production" | "staging" | None for a preview
    created_at_ms: int
    meta: dict[str, str] = field(hash=False)
    inspector_url: str | None


@dataclass(frozen=True)
class AliasRequest:
    """The project's latest promote/rollback job (``lastAliasRequest``, §2.4)."""

    from_deployment_id: str | None  # None when nothing served production before
    to_deployment_id: str
    job_status: str  # pending | in-progress | succeeded | failed | skipped
    requested_at_ms: int
    type: str  # promote | rollback


@dataclass(frozen=True)
class ProjectState:
    production_id: str | None  # targets.production.id: what serves production now
    last_alias_request: AliasRequest | None


ROLLING_STATES = frozenset({"ACTIVE", "COMPLETE", "ABORTED"})


@dataclass(frozen=True)
class RollingStage:
    index: int
    target_percentage: float  # 0-100; the final stage is always 100 (§2.7)
    is_final: bool


@dataclass(frozen=True)
class RollingRelease:
    """A project's rolling release (``<RR>``, §2.7), reduced to what the gate acts on."""

    state: str  # ACTIVE | COMPLETE | ABORTED
    current_deployment_id: str | None  # what served production before the canary
    canary_deployment_id: str | None
    stages: tuple[RollingStage, ...]
    active_stage_index: int | None  # None once aborted
    next_stage_index: int | None  # None unless ACTIVE with a stage left
    # Only the newest SDK reports it; between stages of a linear shift it is the true share.
    current_canary_percentage: float | None = None

    @property
    def active_percentage(self) -> float | None:
        """Share of traffic on the canary now, if Vercel says or the active stage implies it."""
        if self.current_canary_percentage is not None:
            return self.current_canary_percentage
        for stage in self.stages:
            if stage.index == self.active_stage_index:
                return stage.target_percentage
        return None


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
        return self.parse(response, _deployment_from)

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
        return self.parse(response, _last_alias_request_from)

    def project_state(self, project_id: str) -> ProjectState:
        """What production serves and the last alias job, in one call (the rollback's hot path)."""
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(
            response, lambda data: ProjectState(_production_target_from(data), _last_alias_request_from(data))
        )

    def rolling_release_stages(self, project_id: str) -> list[float] | None:
        """The stage percentages of the project's Rolling Releases setting; None when it has none
        (a promote then cuts production over instead of starting a rolling release)."""
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(response, _configured_stages_from)

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
        return self.parse(response, _optional_rolling_release_from)

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
        return self.parse(response, _required_rolling_release_from, maybe_delivered=True)

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
            found = self.parse(response, lambda data: _deployments_by_domain(data, project_id))
            served.update({d: found[_host(d)] for d in chunk if _host(d) in found})
        return served

    def production_deployment_id(self, project_id: str, domains: Sequence[str]) -> str | None:
        """The deployment serving production now.

        The production domains' aliases are the truth (they move on promote and rollback);
        the project's ``targets.production`` is the fallback when no domain is given or none
        of them has an alias.
        """
        for start in range(0, len(domains), MAX_DOMAINS_PER_QUERY):
            chunk = domains[start : start + MAX_DOMAINS_PER_QUERY]
            response = self.request(
                "GET",
                "/v4/aliases",
                params=self._params(("projectId", project_id), *(("domain", d) for d in chunk)),
            )
            served = self.parse(response, lambda data: _deployments_by_domain(data, project_id))
            found = [(d, served[_host(d)]) for d in chunk if _host(d) in served]
            if found:
                if len({deployment for _, deployment in found}) > 1:
                    # Mid-promotion, or a domain pinned by hand: the first domain is the one
                    # the operator named as "production", so it wins.
                    logger.warning(
                        "vercel.aliases.domains_disagree",
                        extra={"project_id": project_id, "aliases": dict(found)},
                    )
                return found[0][1]
        response = self.request("GET", f"/v9/projects/{_seg(project_id)}", params=self._params())
        return self.parse(response, _production_target_from)


def _seg(value: str) -> str:
    """One path segment: an id (or deployment hostname) must not be able to add path or query."""
    return quote(value, safe="")


def _host(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


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


def _deployment_from(data: Any) -> Deployment:
    body = as_dict(data, "deployment")
    meta = body.get("meta") or {}  # absent or null on some deployments: no metadata
    meta = as_dict(meta, "deployment.meta")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise MalformedAnswer(f"deployment.meta.{key}: expected a string")
    return Deployment(
        id=req_str(body, "id", "deployment"),
        url=req_str(body, "url", "deployment"),
        project_id=req_str(body, "projectId", "deployment"),
        ready_state=req_str(body, "readyState", "deployment"),
        ready_substate=opt_str(body, "readySubstate", "deployment"),
        target=opt_str(body, "target", "deployment"),
        created_at_ms=req_int(body, "createdAt", "deployment"),
        meta=dict(meta),
        inspector_url=opt_str(body, "inspectorUrl", "deployment"),
    )


def _last_alias_request_from(data: Any) -> AliasRequest | None:
    project = as_dict(data, "project")
    raw = project.get("lastAliasRequest")
    if raw is None:  # no promote or rollback has ever run
        return None
    where = "project.lastAliasRequest"
    request = as_dict(raw, where)
    return AliasRequest(
        from_deployment_id=opt_str(request, "fromDeploymentId", where),
        to_deployment_id=req_str(request, "toDeploymentId", where),
        job_status=req_str(request, "jobStatus", where),
        requested_at_ms=req_int(request, "requestedAt", where),
        type=req_str(request, "type", where),
    )


def _deployments_by_domain(data: Any, project_id: str) -> dict[str, str]:
    body = as_dict(data, "aliases answer")
    served: dict[str, str] = {}
    for index, raw in enumerate(as_list(body.get("aliases"), "aliases")):
        where = f"aliases[{index}]"
        alias = as_dict(raw, where)
        domain = req_str(alias, "alias", where)
        deployment_id = opt_str(alias, "deploymentId", where)
        owner = opt_str(alias, "projectId", where)
        # A redirect-only alias has no deployment; another project's alias is not ours.
        if deployment_id and (owner is None or owner == project_id):
            served.setdefault(_host(domain), deployment_id)
    return served


def _production_target_from(data: Any) -> str | None:
    project = as_dict(data, "project")
    targets = project.get("targets")
    if targets is None:
        return None
    production = as_dict(targets, "project.targets").get("production")
    if production is None:  # never deployed to production
        return None
    return req_str(as_dict(production, "project.targets.production"), "id", "project.targets.production")


def _configured_stages_from(data: Any) -> list[float] | None:
    config = as_dict(data, "project").get("rollingRelease")
    if config is None:
        return None
    stages = as_dict(config, "project.rollingRelease").get("stages")
    if not stages:  # configured off, or an empty list: promotes cut over
        return None
    where = "project.rollingRelease.stages"
    return [
        _percentage(as_dict(stage, f"{where}[{i}]").get("targetPercentage"), f"{where}[{i}].targetPercentage")
        for i, stage in enumerate(as_list(stages, where))
    ]


def _rolling_path(project_id: str) -> str:
    return f"/v1/projects/{_seg(project_id)}/rolling-release"


def _optional_rolling_release_from(data: Any) -> RollingRelease | None:
    raw = as_dict(data, "rolling-release answer").get("rollingRelease")
    return None if raw is None else _rolling_release_from(raw)


def _required_rolling_release_from(data: Any) -> RollingRelease:
    raw = as_dict(data, "rolling-release answer").get("rollingRelease")
    if raw is None:  # only GET may answer null; a start/approve/complete always returns one
        raise MalformedAnswer("rollingRelease: expected an object, got null")
    return _rolling_release_from(raw)


def _rolling_release_from(raw: object) -> RollingRelease:
    where = "rollingRelease"
    body = as_dict(raw, where)
    state = req_str(body, "state", where)
    if state not in ROLLING_STATES:
        # The gate's decisions hang on this state; guessing at a new one is worse than stopping.
        raise MalformedAnswer(f"{where}.state: unknown state {state!r}")
    stages = tuple(
        _stage_from(stage, f"{where}.stages[{index}]")
        for index, stage in enumerate(as_list(body.get("stages"), f"{where}.stages"))
    )
    active = _optional_stage_index(body, "activeStage", where)
    if active is not None and all(stage.index != active for stage in stages):
        raise MalformedAnswer(f"{where}.activeStage.index: {active} is not one of the stages")
    canary_percentage = body.get("currentCanaryPercentage")
    return RollingRelease(
        state=state,
        current_deployment_id=_optional_deployment_id(body, "currentDeployment", where),
        canary_deployment_id=_optional_deployment_id(body, "canaryDeployment", where),
        stages=stages,
        active_stage_index=active,
        next_stage_index=_optional_stage_index(body, "nextStage", where),
        current_canary_percentage=(
            None
            if canary_percentage is None
            else _percentage(canary_percentage, f"{where}.currentCanaryPercentage")
        ),
    )


def _stage_from(raw: object, where: str) -> RollingStage:
    stage = as_dict(raw, where)
    is_final = stage.get("isFinalStage")
    if not isinstance(is_final, bool):
        raise MalformedAnswer(f"{where}.isFinalStage: expected a boolean, got {is_final!r}")
    return RollingStage(
        index=req_int(stage, "index", where),
        target_percentage=_percentage(stage.get("targetPercentage"), f"{where}.targetPercentage"),
        is_final=is_final,
    )


def _optional_stage_index(body: dict[str, Any], key: str, where: str) -> int | None:
    raw = body.get(key)
    return None if raw is None else req_int(as_dict(raw, f"{where}.{key}"), "index", f"{where}.{key}")


def _optional_deployment_id(body: dict[str, Any], key: str, where: str) -> str | None:
    raw = body.get(key)
    return None if raw is None else req_str(as_dict(raw, f"{where}.{key}"), "id", f"{where}.{key}")


def _percentage(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise MalformedAnswer(f"{where}: expected a percentage 0-100, got {value!r}")
    return float(value)
