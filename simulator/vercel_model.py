"""Vercel's objects and the JSON shapes they take on the wire (docs/vendor-apis.md §1.4, §2.2-2.6).

The same deployment looks different per endpoint (``id`` in v13, ``uid`` and ``created`` in the
v6 list), so each shape has its own function rather than one serializer with switches.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from simulator.wire import iso_ms

_ALNUM = string.ascii_letters + string.digits
_LOWER = string.ascii_lowercase + string.digits
ACTIVE_JOB = ("pending", "in-progress")
DEFAULT_STAGES = (5, 25, 100)  # a project's rolling-release stages when none are configured
CREATOR = {"uid": "Zq81Lm2Np3Oq4Rs5", "email": "alice@acme.test", "username": "dev-alice"}
REGIONS = ("iad1",)
# A Pro team's defaults for the settings GET /v9/projects always carries.
RESOURCE_CONFIG = {
    "functionDefaultTimeout": 300,
    "functionDefaultMemoryType": "standard",
    "fluid": True,
}
DEPLOYMENT_EXPIRATION = {
    "expirationDays": 180,
    "expirationDaysProduction": 365,
    "expirationDaysCanceled": 30,
    "expirationDaysErrored": 90,
    "deploymentsToKeep": 10,
}
PROJECT_SETTINGS = {
    "framework": "nextjs",
    "nodeVersion": "20.x",
    "buildCommand": None,
    "devCommand": None,
    "installCommand": None,
    "outputDirectory": None,
    "commandForIgnoringBuildStep": None,
}


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def random_sha() -> str:
    return secrets.token_hex(20)


@dataclass
class Project:
    id: str
    name: str
    team_id: str | None
    team_slug: str | None
    domains: list[str]
    created_at: int  # ms
    sentry: dict[str, Any] = field(default_factory=dict)  # defaults for deployment traffic
    production_id: str | None = None
    alias_updated_at: dict[str, int] = field(default_factory=dict)  # domain -> ms it last moved
    alias_uids: dict[str, str] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # alias jobs, oldest first
    last_rollback_target: dict[str, Any] | None = None
    fail_alias_jobs: int = 0  # the next N alias jobs end "failed" (a test knob)
    rolling_stages: list[int] | None = None  # configured stage percentages (None: the defaults)
    rolling_release: RollingRelease | None = None  # the latest, whatever its state
    # Every change of the canary's traffic share, across releases, for tests to read over time.
    rolling_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def account_id(self) -> str:
        return self.team_id or "usr_simulator0000000000000"

    @property
    def repo_id(self) -> int:
        """The GitHub repository's numeric id, stable per project."""
        return int(hashlib.sha256(self.id.encode()).hexdigest()[:8], 16) % 900_000_000 + 100_000_000

    @property
    def last_alias_request(self) -> dict[str, Any] | None:
        return self.jobs[-1] if self.jobs else None

    def active_job(self) -> dict[str, Any] | None:
        job = self.last_alias_request
        return job if job and job["jobStatus"] in ACTIVE_JOB else None


@dataclass
class Deployment:
    id: str
    project: Project
    url: str
    meta: dict[str, str]
    target: str | None
    created_at: int  # ms
    seq: int  # creation order, breaks createdAt ties
    state: str = "READY"
    substate: str | None = "STAGED"
    alias_assigned: bool = False

    @property
    def branch_alias(self) -> str:
        ref = self.meta.get("githubCommitRef", "main")
        return f"{self.project.name}-git-{ref}-{self.project.team_slug or 'sim'}.vercel.app"

    @property
    def inspector_url(self) -> str:
        return f"https://vercel.com/{self.project.team_slug or 'sim'}/{self.project.name}/{self.id[4:]}"

    @property
    def is_production(self) -> bool:
        return self.project.production_id == self.id


@dataclass
class RollingRelease:
    """One rolling release (§2.7). Stages are copied at start: config changes only affect the
    next release."""

    id: str
    current: Deployment
    canary: Deployment
    stages: list[int]
    started_at: int  # ms
    updated_at: int  # ms
    state: str = "ACTIVE"  # ACTIVE | COMPLETE | ABORTED
    active_index: int | None = 0

    @property
    def final_index(self) -> int:
        return len(self.stages) - 1

    @property
    def canary_percent(self) -> int:
        if self.state == "COMPLETE":
            return 100
        if self.state == "ABORTED" or self.active_index is None:
            return 0
        return self.stages[self.active_index]


def new_url(project: Project) -> str:
    suffix = "".join(secrets.choice(_LOWER) for _ in range(9))
    return f"{project.name}-{suffix}-{project.team_slug or 'sim'}.vercel.app"


def v13_deployment(d: Deployment) -> dict[str, Any]:
    """The owner's view of ``GET /v13/deployments/{idOrUrl}``, with every field the official SDK
    requires of it (tests/clients/vercel_sdk)."""
    project = d.project
    body: dict[str, Any] = {
        "id": d.id,
        "url": d.url,
        "name": project.name,
        "projectId": project.id,
        "ownerId": project.account_id,
        "project": {"id": project.id, "name": project.name, "framework": "nextjs"},
        "readyState": d.state,
        "status": d.state,
        "target": d.target,
        "type": "LAMBDAS",
        "version": 2,
        "plan": "pro",
        "public": False,
        "source": "git",
        "createdAt": d.created_at,
        "createdIn": REGIONS[0],
        "buildingAt": d.created_at + 2_000,
        "bootedAt": d.created_at + 1_000,
        "buildSkipped": False,
        "isInConcurrentBuildsQueue": False,
        "isInSystemBuildsQueue": False,
        "aliasAssigned": d.alias_assigned,
        "aliasError": None,
        "alias": list(project.domains) if d.is_production else [],
        "automaticAliases": [d.branch_alias],
        "regions": list(REGIONS),
        "inspectorUrl": d.inspector_url,
        "creator": dict(CREATOR),
        "meta": dict(d.meta),
        "env": [],  # names of the deployment's environment variables
        "build": {"env": []},
        "routes": None,
        "projectSettings": dict(PROJECT_SETTINGS),
        "checksState": "completed",
        "checksConclusion": "succeeded",
        "gitSource": {
            "type": "github",
            "repoId": project.repo_id,
            "ref": d.meta.get("githubCommitRef", "main"),
            "sha": d.meta.get("githubCommitSha", ""),
        },
    }
    body.update(_readiness(d))
    if project.team_id:
        slug = project.team_slug or project.team_id
        body["team"] = {"id": project.team_id, "name": slug, "slug": slug}
    if d.state == "ERROR":
        body.update(
            errorCode="BUILD_FAILED", errorMessage='Command "npm run build" exited with 1', errorStep="build"
        )
    return body


def _readiness(d: Deployment) -> dict[str, Any]:
    """``readySubstate`` and ``ready`` exist only once a deployment is READY: the SDK's schema
    has them optional but not nullable."""
    if d.state != "READY":
        return {}
    ready: dict[str, Any] = {"ready": d.created_at + 60_000}
    if d.substate is not None:
        ready["readySubstate"] = d.substate
    return ready


def v6_deployment(d: Deployment) -> dict[str, Any]:
    """One item of ``GET /v6|v7/deployments``."""
    body: dict[str, Any] = {
        "uid": d.id,
        "name": d.project.name,
        "projectId": d.project.id,
        "url": d.url,
        "created": d.created_at,
        "createdAt": d.created_at,
        "state": d.state,
        "readyState": d.state,
        "type": "LAMBDAS",
        "target": d.target,
        "source": "git",
        "creator": dict(CREATOR, githubLogin=CREATOR["username"]),
        "meta": dict(d.meta),
        "inspectorUrl": d.inspector_url,
        "isRollbackCandidate": d.substate == "PROMOTED" and not d.is_production,
        "aliasAssigned": d.alias_assigned,
        "aliasError": None,
        "buildingAt": d.created_at + 2_000,
        "checksState": "completed",
        "checksConclusion": "succeeded",
    }
    body.update(_readiness(d))
    return body


def project_deployment(d: Deployment) -> dict[str, Any]:
    """The trimmed deployment inside ``targets``, ``latestDeployments`` and ``alias`` of a project."""
    body: dict[str, Any] = {
        "id": d.id,
        "url": d.url,
        "deploymentHostname": d.url.removesuffix(".vercel.app"),
        "name": d.project.name,
        "createdAt": d.created_at,
        "createdIn": REGIONS[0],
        "readyState": d.state,
        "target": d.target,
        "alias": list(d.project.domains) if d.is_production else [],
        "aliasAssigned": d.alias_assigned,
        "aliasError": None,
        "meta": dict(d.meta),
        "type": "LAMBDAS",
        "plan": "pro",
        "private": True,
        "creator": dict(CREATOR),
        "buildingAt": d.created_at + 2_000,
        "checksState": "completed",
        "checksConclusion": "succeeded",
    }
    if d.project.team_id:
        body["teamId"] = d.project.team_id
    ready = _readiness(d)
    if "ready" in ready:
        body["readyAt"] = ready.pop("ready")
    body.update(ready)
    return body


def v9_project(project: Project, deployments: list[Deployment], now_ms: int) -> dict[str, Any]:
    production = next((d for d in deployments if d.is_production), None)
    latest = sorted(deployments, key=lambda d: (d.created_at, d.seq), reverse=True)[:5]
    return {
        "id": project.id,
        "name": project.name,
        "accountId": project.account_id,
        "createdAt": project.created_at,
        "updatedAt": now_ms,
        "framework": "nextjs",
        "nodeVersion": "20.x",
        "directoryListing": False,
        "live": False,
        "resourceConfig": dict(RESOURCE_CONFIG, functionDefaultRegions=list(REGIONS)),
        "defaultResourceConfig": dict(RESOURCE_CONFIG, functionDefaultRegions=list(REGIONS)),
        "deploymentExpiration": dict(DEPLOYMENT_EXPIRATION),
        "targets": {"production": project_deployment(production)} if production else {},
        "latestDeployments": [project_deployment(d) for d in latest],
        "alias": [
            {
                "domain": domain,
                "environment": "production",
                "target": "PRODUCTION",
                "createdAt": project.created_at,
                "redirect": None,
                "deployment": project_deployment(production) if production else None,
            }
            for domain in project.domains
        ],
        "lastAliasRequest": dict(project.last_alias_request) if project.last_alias_request else None,
        "lastRollbackTarget": dict(project.last_rollback_target) if project.last_rollback_target else None,
        "rollingRelease": rolling_config(project),
    }


def rolling_config(project: Project) -> dict[str, Any] | None:
    """The project's rolling-release configuration as ``GET /v9/projects`` shows it; null when
    none was configured (starting a release then uses DEFAULT_STAGES)."""
    if project.rolling_stages is None:
        return None
    last = len(project.rolling_stages) - 1
    return {
        "target": "production",
        "stages": [
            # Durations here would be minutes (§2.7); manual approval has none, and the field is
            # then left out (the SDK's schema has it optional, not nullable).
            {"targetPercentage": pct, "requireApproval": i != last}
            for i, pct in enumerate(project.rolling_stages)
        ],
    }


def _rr_deployment(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.project.name,
        "url": d.url,
        "target": d.target,
        "source": "git",
        "createdAt": d.created_at,
        "readyState": d.state,
        "readyStateAt": d.created_at + 60_000,
    }


def _rr_stage(rr: RollingRelease, index: int, *, linear_shift: bool) -> dict[str, Any]:
    final = index == rr.final_index
    stage: dict[str, Any] = {
        "index": index,
        "isFinalStage": final,
        "targetPercentage": rr.stages[index],
        "requireApproval": not final,
        "duration": None,  # seconds in this object; none with manual approval
    }
    if linear_shift:  # only the `stages` list carries it (§2.7)
        stage["linearShift"] = False
    return stage


def rolling_release_json(rr: RollingRelease) -> dict[str, Any]:
    """The ``<RR>`` object of §2.7."""
    active = rr.active_index
    next_index = None
    if rr.state == "ACTIVE" and active is not None and active < rr.final_index:
        next_index = active + 1
    return {
        "state": rr.state,
        # PAUSED is a frozen automatic rollout; a manual-approval release waiting for approval
        # is not paused, and this simulator never pauses one.
        "substate": None,
        "currentCanaryPercentage": rr.canary_percent,
        "currentDeployment": _rr_deployment(rr.current),
        "canaryDeployment": _rr_deployment(rr.canary),
        "queuedDeploymentId": None,
        "advancementType": "manual-approval",
        "stages": [_rr_stage(rr, i, linear_shift=True) for i in range(len(rr.stages))],
        "activeStage": _rr_stage(rr, active, linear_shift=False) if active is not None else None,
        "nextStage": _rr_stage(rr, next_index, linear_shift=False) if next_index is not None else None,
        "startedAt": rr.started_at,
        "updatedAt": rr.updated_at,
    }


def alias_record(project: Project, domain: str, production: Deployment) -> dict[str, Any]:
    updated = project.alias_updated_at.get(domain, production.created_at)
    uid = project.alias_uids.setdefault(domain, random_id("", 16))
    return {
        "uid": uid,
        "alias": domain,
        "created": iso_ms(updated / 1000),
        "createdAt": updated,
        "updatedAt": updated,
        "deploymentId": production.id,
        "projectId": project.id,
        "deployment": {"id": production.id, "url": production.url},
        "creator": dict(CREATOR),
        "redirect": None,
    }


def webhook_envelope(d: Deployment, event_type: str, event_id: str, now_ms: int) -> dict[str, Any]:
    """A deployment event as Vercel sends it, recorded extras included (§1.3-1.5)."""
    project = d.project
    slug = project.team_slug or "sim"
    payload: dict[str, Any] = {
        "team": {"id": project.team_id},
        "user": {"id": "Zq81Lm2Np3Oq4Rs5"},
        "deployment": {
            "id": d.id,
            "name": project.name,
            "url": d.url,
            "inspectorUrl": d.inspector_url,
            "meta": dict(d.meta),
        },
        "links": {
            "deployment": d.inspector_url,
            "project": f"https://vercel.com/{slug}/{project.name}",
        },
        "name": project.name,
        "plan": "pro",
        "project": {"id": project.id},
        "regions": list(REGIONS),
        "type": "LAMBDAS",
        "url": d.url,
    }
    # `target` is documented for every deployment event except deployment.promoted (§1.4).
    if event_type != "deployment.promoted":
        payload["target"] = d.target
    if event_type == "deployment.created":
        payload["alias"] = list(project.domains) if d.target == "production" else []
    return {"id": event_id, "type": event_type, "createdAt": now_ms, "region": None, "payload": payload}
