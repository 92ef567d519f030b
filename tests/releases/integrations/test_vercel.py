from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from releases.core.errors import ProviderError, ProviderTimeout
from releases.integrations.vercel.answers import AliasRequest, Deployment, RollingRelease, RollingStage
from releases.integrations.vercel.client import VercelClient
from tests.http import Vendor

NOW = 1_767_225_600.0
TEAM = "team_Ab12Cd34Ef56Gh78Ij90Kl12"
PROJECT = "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7"
DEPLOYMENT = "dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q"
OLD = "dpl_OldProd111111111111111111"

# docs/vendor-apis.md §2.2's example, trimmed to what the client reads plus some it ignores.
DEPLOYMENT_BODY: dict[str, Any] = {
    "id": DEPLOYMENT,
    "url": "shop-web-k3x9p2a7-acme.vercel.app",
    "name": "shop-web",
    "projectId": PROJECT,
    "readyState": "READY",
    "readySubstate": "STAGED",
    "target": "production",
    "createdAt": 1767225400000,
    "inspectorUrl": "https://vercel.com/acme/shop-web/7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q",
    "meta": {"githubCommitSha": "4e1b9c07", "githubCommitRef": "main"},
    "alias": [],
}


def vercel(vendor: Vendor, *, team_id: str | None = TEAM) -> VercelClient:
    return VercelClient(
        "https://api.vercel.test",
        "tok_secret",
        team_id=team_id,
        transport=httpx.MockTransport(vendor),
        clock=lambda: NOW,
    )


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def raise_(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


# --- get_deployment ------------------------------------------------------------------------------


def test_get_deployment_reads_the_documented_fields() -> None:
    vendor = Vendor(httpx.Response(200, json=DEPLOYMENT_BODY))
    deployment = vercel(vendor).get_deployment(DEPLOYMENT)
    assert deployment == Deployment(
        id=DEPLOYMENT,
        url="shop-web-k3x9p2a7-acme.vercel.app",
        project_id=PROJECT,
        ready_state="READY",
        ready_substate="STAGED",
        target="production",
        created_at_ms=1767225400000,
        meta={"githubCommitSha": "4e1b9c07", "githubCommitRef": "main"},
        inspector_url="https://vercel.com/acme/shop-web/7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q",
    )
    assert vendor.last.method == "GET"
    assert vendor.last.url.path == f"/v13/deployments/{DEPLOYMENT}"
    assert vendor.last.headers["Authorization"] == "Bearer tok_secret"


def test_get_deployment_accepts_a_preview_without_substate_meta_or_inspector() -> None:
    body = {**DEPLOYMENT_BODY, "readyState": "BUILDING", "target": None, "meta": None}
    del body["readySubstate"], body["inspectorUrl"]
    deployment = vercel(Vendor(httpx.Response(200, json=body))).get_deployment(DEPLOYMENT)
    assert (deployment.ready_substate, deployment.target, deployment.meta) == (None, None, {})
    assert deployment.inspector_url is None


def test_every_call_is_scoped_to_the_team() -> None:
    project = {"id": PROJECT, "lastAliasRequest": None, "targets": {"production": {"id": DEPLOYMENT}}}
    vendor = Vendor(
        httpx.Response(200, json=DEPLOYMENT_BODY),
        httpx.Response(200, json=project),
        httpx.Response(202),
        httpx.Response(201),
        httpx.Response(200, json=project),
        httpx.Response(200, json={"aliases": []}),
        httpx.Response(200, json=project),
    )
    client = vercel(vendor)
    client.get_deployment(DEPLOYMENT)
    client.get_project(PROJECT)
    client.promote(PROJECT, DEPLOYMENT)
    client.rollback(PROJECT, OLD)
    client.last_alias_request(PROJECT)
    client.production_deployment_id(PROJECT, ["shop.acme.com"])
    assert [r.url.params.get_list("teamId") for r in vendor.requests] == [[TEAM]] * 7


def test_without_a_team_no_team_id_is_sent() -> None:
    vendor = Vendor(httpx.Response(200, json=DEPLOYMENT_BODY))
    vercel(vendor, team_id=None).get_deployment(DEPLOYMENT)
    assert "teamId" not in vendor.last.url.params


def test_an_id_cannot_escape_its_path_segment() -> None:
    vendor = Vendor(httpx.Response(200, json=DEPLOYMENT_BODY))
    vercel(vendor).get_deployment("../v2/user?x=1")
    assert vendor.last.url.raw_path.startswith(b"/v13/deployments/..%2Fv2%2Fuser%3Fx%3D1?")
    assert vendor.last.url.params.get("x") is None


def test_a_404_is_permanent_with_vercels_message_and_code() -> None:
    vendor = Vendor(error(404, "not_found", "Deployment not found"))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).get_deployment(DEPLOYMENT)
    assert caught.value.permanent
    assert caught.value.code == "not_found"
    assert caught.value.status == 404
    assert caught.value.provider == "vercel"
    assert "Deployment not found" in caught.value.message


def test_a_500_is_transient_and_ignores_the_rate_limit_window() -> None:
    # X-RateLimit-Reset rides on every response; on a 500 it is not a wait instruction.
    vendor = Vendor(error(500, "internal_server_error", "oops", **{"X-RateLimit-Reset": str(int(NOW) + 50)}))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).get_deployment(DEPLOYMENT)
    assert not caught.value.permanent
    assert caught.value.retry_after is None
    assert caught.value.code == "internal_server_error"


def test_an_error_body_that_is_not_json_still_gives_a_message() -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(httpx.Response(502, text="Bad Gateway"))).get_deployment(DEPLOYMENT)
    assert "Bad Gateway" in caught.value.message
    assert caught.value.code is None


# --- rate limits ---------------------------------------------------------------------------------


def test_a_429_waits_until_the_reset_header_measured_by_the_injected_clock() -> None:
    vendor = Vendor(
        error(429, "rate_limited", "Try again in 40 seconds", **{"X-RateLimit-Reset": "1767225640"})
    )
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).get_deployment(DEPLOYMENT)
    assert caught.value.retry_after == 40.0
    assert not caught.value.permanent
    assert caught.value.code == "rate_limited"


def test_a_429_without_the_header_reads_the_reset_from_the_body() -> None:
    body = {
        "error": {
            "code": "rate_limited",
            "message": "The rate limit of 100 exceeded",
            "limit": {"remaining": 0, "reset": 1767225660, "resetMs": 1767225660123, "total": 100},
        }
    }
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(httpx.Response(429, json=body))).get_deployment(DEPLOYMENT)
    assert caught.value.retry_after == 60.0


def test_a_429_honours_retry_after_over_the_reset_time() -> None:
    headers = {"Retry-After": "5", "X-RateLimit-Reset": "1767225640"}
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(error(429, "too_many_requests", "slow down", **headers))).get_deployment(DEPLOYMENT)
    assert caught.value.retry_after == 5.0


def test_a_reset_already_past_means_retry_now() -> None:
    vendor = Vendor(error(429, "rate_limited", "x", **{"X-RateLimit-Reset": str(int(NOW) - 3)}))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).get_deployment(DEPLOYMENT)
    assert caught.value.retry_after == 0.0


def test_a_429_with_no_hint_leaves_the_wait_to_the_caller() -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(httpx.Response(429, text="slow"))).get_deployment(DEPLOYMENT)
    assert caught.value.retry_after is None
    assert not caught.value.permanent


# --- promote / rollback --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [201, 202])
def test_promote_accepts_201_or_202_with_an_empty_body(status: int) -> None:
    vendor = Vendor(httpx.Response(status, content=b""))
    assert vercel(vendor).promote(PROJECT, DEPLOYMENT) is None
    assert vendor.last.method == "POST"
    assert vendor.last.url.path == f"/v10/projects/{PROJECT}/promote/{DEPLOYMENT}"
    assert json.loads(vendor.last.content) == {}


def test_promote_answered_200_is_reported_as_maybe_done() -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(httpx.Response(200))).promote(PROJECT, DEPLOYMENT)
    assert caught.value.maybe_delivered
    assert not caught.value.permanent


def test_a_409_conflict_is_permanent() -> None:
    vendor = Vendor(error(409, "conflict", "A promotion is already in progress"))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).promote(PROJECT, DEPLOYMENT)
    assert caught.value.permanent
    assert caught.value.code == "conflict"


def test_a_409_with_retry_after_is_a_temporary_conflict() -> None:
    vendor = Vendor(error(409, "conflict", "busy", **{"Retry-After": "3"}))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).promote(PROJECT, DEPLOYMENT)
    assert not caught.value.permanent


def test_promote_read_timeout_may_have_been_delivered() -> None:
    with pytest.raises(ProviderTimeout) as caught:
        vercel(Vendor(raise_(httpx.ReadTimeout))).promote(PROJECT, DEPLOYMENT)
    assert caught.value.maybe_delivered
    assert not caught.value.permanent


def test_promote_connect_timeout_was_not_delivered() -> None:
    with pytest.raises(ProviderTimeout) as caught:
        vercel(Vendor(raise_(httpx.ConnectTimeout))).promote(PROJECT, DEPLOYMENT)
    assert not caught.value.maybe_delivered


def test_rollback_sends_the_description_as_a_query_parameter() -> None:
    vendor = Vendor(httpx.Response(201))
    vercel(vendor).rollback(PROJECT, OLD, "gate failed: crash-free 97.1% < 99.5%")
    assert vendor.last.method == "POST"
    assert vendor.last.url.path == f"/v1/projects/{PROJECT}/rollback/{OLD}"
    assert vendor.last.url.params.get("description") == "gate failed: crash-free 97.1% < 99.5%"


def test_rollback_without_a_description_sends_none() -> None:
    vendor = Vendor(httpx.Response(201))
    vercel(vendor).rollback(PROJECT, OLD)
    assert "description" not in vendor.last.url.params


def test_rollback_refused_by_the_plan_is_permanent() -> None:
    vendor = Vendor(error(402, "payment_required", "Upgrade to roll back further"))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).rollback(PROJECT, OLD)
    assert caught.value.permanent
    assert caught.value.code == "payment_required"


# --- project state -------------------------------------------------------------------------------


def test_last_alias_request_reads_the_job() -> None:
    project = {
        "id": PROJECT,
        "lastAliasRequest": {
            "fromDeploymentId": OLD,
            "toDeploymentId": DEPLOYMENT,
            "jobStatus": "in-progress",
            "requestedAt": 1767225700000,
            "type": "promote",
        },
    }
    vendor = Vendor(httpx.Response(200, json=project))
    assert vercel(vendor).last_alias_request(PROJECT) == AliasRequest(
        from_deployment_id=OLD,
        to_deployment_id=DEPLOYMENT,
        job_status="in-progress",
        requested_at_ms=1767225700000,
        type="promote",
    )
    assert vendor.last.url.path == f"/v9/projects/{PROJECT}"


@pytest.mark.parametrize("project", [{"id": PROJECT, "lastAliasRequest": None}, {"id": PROJECT}])
def test_last_alias_request_is_none_before_any_promotion(project: dict[str, Any]) -> None:
    assert vercel(Vendor(httpx.Response(200, json=project))).last_alias_request(PROJECT) is None


def test_get_project_returns_the_raw_object() -> None:
    project = {"id": PROJECT, "name": "shop-web", "targets": {}}
    assert vercel(Vendor(httpx.Response(200, json=project))).get_project(PROJECT) == project


def aliases(*pairs: tuple[str, str | None], project: str = PROJECT) -> httpx.Response:
    items = [{"alias": a, "deploymentId": d, "projectId": project} for a, d in pairs]
    return httpx.Response(200, json={"aliases": items, "pagination": {"count": len(items)}})


def test_production_deployment_comes_from_the_domains_aliases() -> None:
    vendor = Vendor(aliases(("shop.acme.com", DEPLOYMENT)))
    assert vercel(vendor).production_deployment_id(PROJECT, ["shop.acme.com", "www.acme.com"]) == DEPLOYMENT
    assert len(vendor.requests) == 1
    params = vendor.last.url.params
    assert vendor.last.url.path == "/v4/aliases"
    assert params.get("projectId") == PROJECT
    assert params.get_list("domain") == ["shop.acme.com", "www.acme.com"]


def test_when_domains_disagree_the_first_listed_domain_wins() -> None:
    # Vercel's order is not ours: the answer lists www first.
    vendor = Vendor(aliases(("www.acme.com", OLD), ("shop.acme.com", DEPLOYMENT)))
    assert vercel(vendor).production_deployment_id(PROJECT, ["Shop.Acme.com", "www.acme.com"]) == DEPLOYMENT


def test_a_domain_without_an_alias_is_skipped() -> None:
    vendor = Vendor(aliases(("www.acme.com", OLD), ("shop.acme.com", None)))
    assert vercel(vendor).production_deployment_id(PROJECT, ["shop.acme.com", "www.acme.com"]) == OLD


def test_another_projects_alias_is_not_production_for_this_one() -> None:
    project = {"targets": {"production": {"id": DEPLOYMENT}}}
    vendor = Vendor(aliases(("shop.acme.com", OLD), project="prj_other"), httpx.Response(200, json=project))
    assert vercel(vendor).production_deployment_id(PROJECT, ["shop.acme.com"]) == DEPLOYMENT


def test_no_alias_found_falls_back_to_the_projects_production_target() -> None:
    project = {"targets": {"production": {"id": DEPLOYMENT}}}
    vendor = Vendor(aliases(), httpx.Response(200, json=project))
    assert vercel(vendor).production_deployment_id(PROJECT, ["shop.acme.com"]) == DEPLOYMENT
    assert [r.url.path for r in vendor.requests] == ["/v4/aliases", f"/v9/projects/{PROJECT}"]


def test_without_domains_only_the_project_is_asked() -> None:
    vendor = Vendor(httpx.Response(200, json={"targets": {"production": {"id": DEPLOYMENT}}}))
    assert vercel(vendor).production_deployment_id(PROJECT, []) == DEPLOYMENT
    assert [r.url.path for r in vendor.requests] == [f"/v9/projects/{PROJECT}"]


@pytest.mark.parametrize(
    "project", [{}, {"targets": None}, {"targets": {}}, {"targets": {"production": None}}]
)
def test_a_project_never_deployed_to_production_has_no_production_deployment(project: dict[str, Any]) -> None:
    assert vercel(Vendor(httpx.Response(200, json=project))).production_deployment_id(PROJECT, []) is None


def test_more_than_twenty_domains_are_asked_in_batches() -> None:
    domains = [f"d{i}.acme.com" for i in range(25)]
    vendor = Vendor(aliases(), aliases(("d22.acme.com", DEPLOYMENT)))
    assert vercel(vendor).production_deployment_id(PROJECT, domains) == DEPLOYMENT
    assert [len(r.url.params.get_list("domain")) for r in vendor.requests] == [20, 5]


# --- malformed answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({**DEPLOYMENT_BODY, "readyState": None}, "deployment.readyState"),
        ({**DEPLOYMENT_BODY, "createdAt": "yesterday"}, "deployment.createdAt"),
        ({**DEPLOYMENT_BODY, "meta": {"githubPrId": 42}}, "deployment.meta.githubPrId"),
        ({**DEPLOYMENT_BODY, "meta": ["x"]}, "deployment.meta"),
        ({k: v for k, v in DEPLOYMENT_BODY.items() if k != "id"}, "deployment.id"),
        ([DEPLOYMENT_BODY], "deployment: expected an object"),
    ],
)
def test_a_malformed_deployment_is_a_transient_provider_error(body: object, complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(httpx.Response(200, json=body))).get_deployment(DEPLOYMENT)
    assert not caught.value.permanent
    assert complaint in caught.value.message


def test_a_non_json_success_is_a_transient_provider_error() -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(httpx.Response(200, text="<html>captive portal</html>"))).get_project(PROJECT)
    assert not caught.value.permanent
    assert "not JSON" in caught.value.message


@pytest.mark.parametrize(
    "project",
    [
        {"lastAliasRequest": "promote"},
        {"lastAliasRequest": {"toDeploymentId": DEPLOYMENT, "jobStatus": 3, "requestedAt": 1, "type": "x"}},
        {"lastAliasRequest": {"toDeploymentId": DEPLOYMENT, "jobStatus": "pending", "type": "promote"}},
    ],
)
def test_a_malformed_alias_request_is_a_provider_error(project: dict[str, Any]) -> None:
    with pytest.raises(ProviderError, match="lastAliasRequest"):
        vercel(Vendor(httpx.Response(200, json=project))).last_alias_request(PROJECT)


@pytest.mark.parametrize(
    "body",
    [{"aliases": None}, {"aliases": [{"deploymentId": DEPLOYMENT}]}, {"aliases": ["shop.acme.com"]}, []],
)
def test_a_malformed_alias_list_is_a_provider_error(body: object) -> None:
    with pytest.raises(ProviderError, match="malformed answer"):
        vercel(Vendor(httpx.Response(200, json=body))).production_deployment_id(PROJECT, ["shop.acme.com"])


def test_a_malformed_production_target_is_a_provider_error() -> None:
    body = {"targets": {"production": {"id": 7}}}
    with pytest.raises(ProviderError, match=r"targets\.production\.id"):
        vercel(Vendor(httpx.Response(200, json=body))).production_deployment_id(PROJECT, [])


def test_get_project_rejects_a_non_object() -> None:
    with pytest.raises(ProviderError, match="project: expected an object"):
        vercel(Vendor(httpx.Response(200, json=[1, 2]))).get_project(PROJECT)


# --- rolling releases (§2.7) ---------------------------------------------------------------------

# docs/vendor-apis.md §2.7's <RR> example.
ROLLING: dict[str, Any] = {
    "state": "ACTIVE",
    "substate": "PAUSED",
    "currentDeployment": {
        "id": OLD,
        "name": "shop-web",
        "url": "shop-web-old-acme.vercel.app",
        "target": "production",
    },
    "canaryDeployment": {"id": DEPLOYMENT, "name": "shop-web", "url": "shop-web-k3x9p2a7-acme.vercel.app"},
    "queuedDeploymentId": None,
    "advancementType": "manual-approval",
    "stages": [
        {"index": 0, "isFinalStage": False, "targetPercentage": 5, "requireApproval": True, "duration": None},
        {
            "index": 1,
            "isFinalStage": False,
            "targetPercentage": 25,
            "requireApproval": True,
            "duration": None,
        },
        {
            "index": 2,
            "isFinalStage": True,
            "targetPercentage": 100,
            "requireApproval": False,
            "duration": None,
        },
    ],
    "activeStage": {"index": 0, "isFinalStage": False, "targetPercentage": 5, "requireApproval": True},
    "nextStage": {"index": 1, "isFinalStage": False, "targetPercentage": 25, "requireApproval": True},
    "startedAt": 1767225700000,
    "updatedAt": 1767225700000,
}
STAGES = (RollingStage(0, 5.0, False), RollingStage(1, 25.0, False), RollingStage(2, 100.0, True))
ROLLING_PATH = f"/v1/projects/{PROJECT}/rolling-release"


def rolling(**changes: Any) -> httpx.Response:
    return httpx.Response(200, json={"rollingRelease": {**ROLLING, **changes}})


def test_rolling_release_reads_the_contract_example() -> None:
    vendor = Vendor(rolling())
    release = vercel(vendor).rolling_release(PROJECT)
    assert release == RollingRelease(
        state="ACTIVE",
        current_deployment_id=OLD,
        canary_deployment_id=DEPLOYMENT,
        stages=STAGES,
        active_stage_index=0,
        next_stage_index=1,
    )
    assert release is not None
    assert release.active_percentage == 5.0
    assert vendor.last.method == "GET"
    assert vendor.last.url.path == ROLLING_PATH
    assert vendor.last.url.params.multi_items() == [("teamId", TEAM)]


def test_no_rolling_release_yet_is_none() -> None:
    assert vercel(Vendor(httpx.Response(200, json={"rollingRelease": None}))).rolling_release(PROJECT) is None


def test_the_current_canary_percentage_wins_when_vercel_sends_it() -> None:
    release = vercel(Vendor(rolling(currentCanaryPercentage=12.5))).rolling_release(PROJECT)
    assert release is not None
    assert release.active_percentage == 12.5


def test_an_aborted_release_has_no_active_stage_or_percentage() -> None:
    release = vercel(Vendor(rolling(state="ABORTED", activeStage=None, nextStage=None))).rolling_release(
        PROJECT
    )
    assert release is not None
    assert (release.state, release.active_stage_index, release.next_stage_index) == ("ABORTED", None, None)
    assert release.active_percentage is None


def test_a_first_release_may_have_no_current_deployment() -> None:
    release = vercel(Vendor(rolling(currentDeployment=None))).rolling_release(PROJECT)
    assert release is not None
    assert release.current_deployment_id is None


def test_start_rolling_release_posts_the_canary() -> None:
    vendor = Vendor(rolling())
    release = vercel(vendor).start_rolling_release(PROJECT, DEPLOYMENT)
    assert release.canary_deployment_id == DEPLOYMENT
    assert vendor.last.method == "POST"
    assert vendor.last.url.path == f"{ROLLING_PATH}/start"
    assert vendor.last.url.params.get_list("teamId") == [TEAM]
    assert json.loads(vendor.last.content) == {"canaryDeploymentId": DEPLOYMENT}


def test_approve_stage_posts_the_next_stage() -> None:
    vendor = Vendor(rolling(activeStage=ROLLING["nextStage"], nextStage=ROLLING["stages"][2]))
    release = vercel(vendor).approve_stage(PROJECT, DEPLOYMENT, 1)
    assert (release.active_stage_index, release.next_stage_index, release.active_percentage) == (1, 2, 25.0)
    assert vendor.last.url.path == f"{ROLLING_PATH}/approve-stage"
    assert vendor.last.url.params.get_list("teamId") == [TEAM]
    assert json.loads(vendor.last.content) == {"nextStageIndex": 1, "canaryDeploymentId": DEPLOYMENT}


def test_approve_stage_sends_the_active_stage_when_known() -> None:
    vendor = Vendor(rolling())
    vercel(vendor).approve_stage(PROJECT, DEPLOYMENT, 2, active_stage_index=1)
    assert json.loads(vendor.last.content) == {
        "nextStageIndex": 2,
        "canaryDeploymentId": DEPLOYMENT,
        "activeStageIndex": 1,
    }


def test_complete_rolling_release_posts_the_canary() -> None:
    vendor = Vendor(rolling(state="COMPLETE", activeStage=ROLLING["stages"][2], nextStage=None))
    release = vercel(vendor).complete_rolling_release(PROJECT, DEPLOYMENT)
    assert (release.state, release.active_percentage) == ("COMPLETE", 100.0)
    assert vendor.last.url.path == f"{ROLLING_PATH}/complete"
    assert json.loads(vendor.last.content) == {"canaryDeploymentId": DEPLOYMENT}


def test_rolling_release_paths_escape_the_project() -> None:
    vendor = Vendor(rolling(), rolling())
    client = vercel(vendor)
    client.rolling_release("shop/../x")
    client.complete_rolling_release("shop/../x", DEPLOYMENT)
    assert vendor.requests[0].url.raw_path.startswith(b"/v1/projects/shop%2F..%2Fx/rolling-release?")
    assert vendor.requests[1].url.raw_path.startswith(b"/v1/projects/shop%2F..%2Fx/rolling-release/complete?")


def test_rolling_release_calls_without_a_team_send_no_team_id() -> None:
    vendor = Vendor(rolling())
    vercel(vendor, team_id=None).start_rolling_release(PROJECT, DEPLOYMENT)
    assert "teamId" not in vendor.last.url.params


ROLLING_CALLS: list[Callable[[VercelClient], object]] = [
    lambda c: c.rolling_release(PROJECT),
    lambda c: c.start_rolling_release(PROJECT, DEPLOYMENT),
    lambda c: c.approve_stage(PROJECT, DEPLOYMENT, 1),
    lambda c: c.complete_rolling_release(PROJECT, DEPLOYMENT),
]


@pytest.mark.parametrize("call", ROLLING_CALLS)
@pytest.mark.parametrize(
    ("status", "code"), [(400, "bad_request"), (401, "unauthorized"), (403, "forbidden"), (404, "not_found")]
)
def test_rolling_release_4xx_is_permanent(
    call: Callable[[VercelClient], object], status: int, code: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        call(vercel(Vendor(error(status, code, "refused"))))
    assert caught.value.permanent
    assert caught.value.status == status
    assert caught.value.code == code
    assert not caught.value.maybe_delivered


def test_approve_stage_500_is_transient_and_maybe_done() -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(error(500, "internal_server_error", "oops"))).approve_stage(PROJECT, DEPLOYMENT, 1)
    assert not caught.value.permanent
    assert caught.value.maybe_delivered
    assert caught.value.status == 500


def test_rolling_release_429_waits_until_the_reset() -> None:
    vendor = Vendor(error(429, "rate_limited", "slow down", **{"X-RateLimit-Reset": str(int(NOW) + 30)}))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).rolling_release(PROJECT)
    assert caught.value.retry_after == 30.0
    assert not caught.value.permanent


def test_a_conflicting_approval_is_permanent() -> None:
    vendor = Vendor(error(409, "conflict", "Stage already approved"))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).approve_stage(PROJECT, DEPLOYMENT, 1)
    assert caught.value.permanent


def test_a_start_that_timed_out_after_sending_may_have_started() -> None:
    with pytest.raises(ProviderTimeout) as caught:
        vercel(Vendor(raise_(httpx.ReadTimeout))).start_rolling_release(PROJECT, DEPLOYMENT)
    assert caught.value.maybe_delivered
    assert not caught.value.permanent


def test_a_null_rolling_release_after_a_post_is_malformed_and_maybe_done() -> None:
    vendor = Vendor(httpx.Response(200, json={"rollingRelease": None}))
    with pytest.raises(ProviderError) as caught:
        vercel(vendor).complete_rolling_release(PROJECT, DEPLOYMENT)
    assert "rollingRelease: expected an object, got null" in caught.value.message
    assert caught.value.maybe_delivered
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"state": "PAUSED"}, "rollingRelease.state: unknown state 'PAUSED'"),
        ({"state": None}, "rollingRelease.state"),
        ({"stages": None}, "rollingRelease.stages: expected a list"),
        ({"stages": [{"index": 0, "isFinalStage": True}]}, "rollingRelease.stages[0].targetPercentage"),
        ({"stages": [{"index": 0, "isFinalStage": True, "targetPercentage": 101}]}, "targetPercentage"),
        ({"stages": [{"index": 0, "isFinalStage": True, "targetPercentage": "5"}]}, "targetPercentage"),
        ({"stages": [{"index": 0, "isFinalStage": "no", "targetPercentage": 5}]}, "stages[0].isFinalStage"),
        ({"stages": [{"isFinalStage": True, "targetPercentage": 5}]}, "stages[0].index"),
        ({"activeStage": {"index": 7}}, "rollingRelease.activeStage.index: 7 is not one of the stages"),
        ({"activeStage": {"index": "0"}}, "rollingRelease.activeStage.index"),
        ({"nextStage": "1"}, "rollingRelease.nextStage: expected an object"),
        ({"canaryDeployment": {"name": "shop-web"}}, "rollingRelease.canaryDeployment.id"),
        ({"currentDeployment": {"id": 5}}, "rollingRelease.currentDeployment.id"),
        ({"currentCanaryPercentage": -1}, "rollingRelease.currentCanaryPercentage"),
    ],
)
def test_a_malformed_rolling_release_names_the_field(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        vercel(Vendor(rolling(**changes))).rolling_release(PROJECT)
    assert not caught.value.permanent
    assert complaint in caught.value.message


@pytest.mark.parametrize("body", [[], {"rollingRelease": "ACTIVE"}])
def test_a_rolling_release_answer_that_is_not_an_object_is_malformed(body: object) -> None:
    with pytest.raises(ProviderError, match="malformed answer"):
        vercel(Vendor(httpx.Response(200, json=body))).rolling_release(PROJECT)
