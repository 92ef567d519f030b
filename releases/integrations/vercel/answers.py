"""What Vercel's REST answers mean to us: the parts of a deployment, a project and a rolling
release the client reads (docs/vendor-apis.md §2), each read strictly, naming the field that is
wrong (a ``MalformedAnswer``), so an answer we cannot read is never taken for a decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from releases.integrations.http import MalformedAnswer, as_dict, as_list, opt_str, req_int, req_str


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


def host_of(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def deployment_from(data: Any) -> Deployment:
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


def last_alias_request_from(data: Any) -> AliasRequest | None:
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


def deployments_by_domain(data: Any, project_id: str) -> dict[str, str]:
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
            served.setdefault(host_of(domain), deployment_id)
    return served


def production_target_from(data: Any) -> str | None:
    project = as_dict(data, "project")
    targets = project.get("targets")
    if targets is None:
        return None
    production = as_dict(targets, "project.targets").get("production")
    if production is None:  # never deployed to production
        return None
    return req_str(as_dict(production, "project.targets.production"), "id", "project.targets.production")


def configured_stages_from(data: Any) -> list[float] | None:
    config = as_dict(data, "project").get("rollingRelease")
    if config is None:
        return None
    stages = as_dict(config, "project.rollingRelease").get("stages")
    if not stages:  # configured off, or an empty list: promotes cut over
        return None
    where = "project.rollingRelease.stages"
    return [
        percentage(as_dict(stage, f"{where}[{i}]").get("targetPercentage"), f"{where}[{i}].targetPercentage")
        for i, stage in enumerate(as_list(stages, where))
    ]


def optional_rolling_release_from(data: Any) -> RollingRelease | None:
    raw = as_dict(data, "rolling-release answer").get("rollingRelease")
    return None if raw is None else rolling_release_from(raw)


def required_rolling_release_from(data: Any) -> RollingRelease:
    raw = as_dict(data, "rolling-release answer").get("rollingRelease")
    if raw is None:  # only GET may answer null; a start/approve/complete always returns one
        raise MalformedAnswer("rollingRelease: expected an object, got null")
    return rolling_release_from(raw)


def rolling_release_from(raw: object) -> RollingRelease:
    where = "rollingRelease"
    body = as_dict(raw, where)
    state = req_str(body, "state", where)
    if state not in ROLLING_STATES:
        # The gate's decisions hang on this state; guessing at a new one is worse than stopping.
        raise MalformedAnswer(f"{where}.state: unknown state {state!r}")
    stages = tuple(
        stage_from(stage, f"{where}.stages[{index}]")
        for index, stage in enumerate(as_list(body.get("stages"), f"{where}.stages"))
    )
    active = optional_stage_index(body, "activeStage", where)
    if active is not None and all(stage.index != active for stage in stages):
        raise MalformedAnswer(f"{where}.activeStage.index: {active} is not one of the stages")
    canary_percentage = body.get("currentCanaryPercentage")
    return RollingRelease(
        state=state,
        current_deployment_id=optional_deployment_id(body, "currentDeployment", where),
        canary_deployment_id=optional_deployment_id(body, "canaryDeployment", where),
        stages=stages,
        active_stage_index=active,
        next_stage_index=optional_stage_index(body, "nextStage", where),
        current_canary_percentage=(
            None
            if canary_percentage is None
            else percentage(canary_percentage, f"{where}.currentCanaryPercentage")
        ),
    )


def stage_from(raw: object, where: str) -> RollingStage:
    stage = as_dict(raw, where)
    is_final = stage.get("isFinalStage")
    if not isinstance(is_final, bool):
        raise MalformedAnswer(f"{where}.isFinalStage: expected a boolean, got {is_final!r}")
    return RollingStage(
        index=req_int(stage, "index", where),
        target_percentage=percentage(stage.get("targetPercentage"), f"{where}.targetPercentage"),
        is_final=is_final,
    )


def optional_stage_index(body: dict[str, Any], key: str, where: str) -> int | None:
    raw = body.get(key)
    return None if raw is None else req_int(as_dict(raw, f"{where}.{key}"), "index", f"{where}.{key}")


def optional_deployment_id(body: dict[str, Any], key: str, where: str) -> str | None:
    raw = body.get(key)
    return None if raw is None else req_str(as_dict(raw, f"{where}.{key}"), "id", f"{where}.{key}")


def percentage(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise MalformedAnswer(f"{where}: expected a percentage 0-100, got {value!r}")
    return float(value)
