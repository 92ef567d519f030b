"""The simulated Vercel REST API against docs/vendor-apis.md §2."""

from __future__ import annotations

import time

import httpx

from tests.simulator.helpers import ALIAS_DELAY, make_deployment, make_project, wait_until


def _project(vercel: httpx.Client, project_id: str = "prj_shopweb") -> dict:
    response = vercel.get(f"/vercel/v9/projects/{project_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_promote_answers_202_empty_and_moves_production_after_the_alias_job(
    control: httpx.Client, vercel: httpx.Client
) -> None:
    make_project(control)
    old = make_deployment(control, live=True)["deployment"]
    new = make_deployment(control)["deployment"]
    assert new["readySubstate"] == "STAGED"

    response = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{new['id']}", json={})

    assert response.status_code == 202
    assert response.content == b""
    assert "content-type" not in response.headers
    job = _project(vercel)["lastAliasRequest"]
    assert job["type"] == "promote"
    assert job["fromDeploymentId"] == old["id"]
    assert job["toDeploymentId"] == new["id"]
    assert job["jobStatus"] in ("pending", "in-progress")
    assert isinstance(job["requestedAt"], int)
    # Production has not moved while the job runs.
    assert _project(vercel)["targets"]["production"]["id"] == old["id"]

    done = wait_until(lambda: (p := _project(vercel))["lastAliasRequest"]["jobStatus"] == "succeeded" and p)
    assert done["targets"]["production"]["id"] == new["id"]
    assert done["targets"]["production"]["readyState"] == "READY"
    assert vercel.get(f"/vercel/v13/deployments/{new['id']}").json()["readySubstate"] == "PROMOTED"
    aliases = vercel.get(
        "/vercel/v4/aliases", params={"projectId": "prj_shopweb", "domain": "shop.example.com"}
    )
    assert [a["deploymentId"] for a in aliases.json()["aliases"]] == [new["id"]]


def test_alias_job_passes_through_in_progress_and_takes_about_the_alias_delay(
    control: httpx.Client, vercel: httpx.Client
) -> None:
    make_project(control)
    make_deployment(control, live=True)
    new = make_deployment(control)["deployment"]
    started = time.monotonic()
    vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{new['id']}")
    seen = set()
    while time.monotonic() - started < 3:
        status = _project(vercel)["lastAliasRequest"]["jobStatus"]
        seen.add(status)
        if status == "succeeded":
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    assert {"pending", "in-progress", "succeeded"} <= seen
    assert ALIAS_DELAY * 0.8 <= elapsed < ALIAS_DELAY + 1.5


def test_v9_promote_path_is_accepted(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    new = make_deployment(control)["deployment"]
    response = vercel.post(f"/vercel/v9/projects/prj_shopweb/promote/{new['id']}", json={})
    assert response.status_code == 202
    assert response.content == b""


def test_rollback_on_v1_answers_201_empty_and_records_the_rollback_target(
    control: httpx.Client, vercel: httpx.Client
) -> None:
    make_project(control)
    good = make_deployment(control, live=True)["deployment"]
    bad = make_deployment(control, live=True)["deployment"]

    response = vercel.post(
        f"/vercel/v1/projects/prj_shopweb/rollback/{good['id']}", params={"description": "crash rate"}
    )

    assert response.status_code == 201
    assert response.content == b""
    project = _project(vercel)
    assert project["lastAliasRequest"]["type"] == "rollback"
    assert project["lastAliasRequest"]["fromDeploymentId"] == bad["id"]
    assert project["lastRollbackTarget"]["toDeploymentId"] == good["id"]
    done = wait_until(lambda: (p := _project(vercel))["lastRollbackTarget"]["jobStatus"] == "succeeded" and p)
    assert done["targets"]["production"]["id"] == good["id"]
    assert done["lastAliasRequest"]["jobStatus"] == "succeeded"


def test_rollback_on_v9_needs_a_json_body(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    good = make_deployment(control, live=True)["deployment"]
    make_deployment(control, live=True)

    missing = vercel.post(f"/vercel/v9/projects/prj_shopweb/rollback/{good['id']}")
    accepted = vercel.post(f"/vercel/v9/projects/prj_shopweb/rollback/{good['id']}", json={})

    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "bad_request"
    assert accepted.status_code == 201
    assert accepted.content == b""


def test_promote_errors_have_vercel_shapes(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    make_project(control, id="prj_other", name="other", domains=["other.example.com"])
    staged = make_deployment(control)["deployment"]
    foreign = make_deployment(control, project_id="prj_other")["deployment"]
    building = make_deployment(control, state="BUILDING")["deployment"]

    unknown = vercel.post("/vercel/v10/projects/prj_shopweb/promote/dpl_nope")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"code": "not_found", "message": "Deployment not found"}}

    wrong_project = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{foreign['id']}")
    assert wrong_project.status_code == 400
    assert wrong_project.json()["error"]["code"] == "bad_request"

    not_ready = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{building['id']}")
    assert not_ready.status_code == 400

    assert vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{staged['id']}").status_code == 202
    conflict = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{staged['id']}")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"


def test_missing_or_wrong_token_is_403(control: httpx.Client, simulator_process) -> None:
    make_project(control)
    with simulator_process.client() as anonymous:
        response = anonymous.get("/vercel/v9/projects/prj_shopweb")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "X-RateLimit-Limit" in response.headers


def test_every_response_carries_rate_limit_headers(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    for response in (
        vercel.get("/vercel/v9/projects/prj_shopweb"),
        vercel.get("/vercel/v13/deployments/dpl_x"),
    ):
        limit = int(response.headers["X-RateLimit-Limit"])
        remaining = int(response.headers["X-RateLimit-Remaining"])
        reset = int(response.headers["X-RateLimit-Reset"])
        assert 0 <= remaining < limit
        assert time.time() - 1 <= reset <= time.time() + 61  # epoch seconds, not a duration


def test_team_projects_are_invisible_without_their_team_id(
    control: httpx.Client, vercel: httpx.Client
) -> None:
    make_project(control, team_id="team_acme")
    deployment = make_deployment(control)["deployment"]

    assert vercel.get("/vercel/v9/projects/prj_shopweb").status_code == 404
    assert vercel.get("/vercel/v9/projects/prj_shopweb", params={"teamId": "team_other"}).status_code == 404
    scoped = vercel.get(f"/vercel/v13/deployments/{deployment['id']}", params={"teamId": "team_acme"})
    assert scoped.status_code == 200
    assert scoped.json()["team"]["id"] == "team_acme"
    assert vercel.get(f"/vercel/v13/deployments/{deployment['id']}").json() == {
        "error": {"code": "not_found", "message": "Deployment not found"}
    }


def test_get_deployment_by_id_or_url_has_the_v13_shape(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    created = make_deployment(control, meta={"githubCommitSha": "a" * 40}, created_at=1767225400000)
    deployment = created["deployment"]

    by_id = vercel.get(f"/vercel/v13/deployments/{deployment['id']}").json()
    by_url = vercel.get(f"/vercel/v13/deployments/{deployment['url']}").json()

    assert by_id == by_url
    assert by_id["id"].startswith("dpl_")
    assert by_id["projectId"] == "prj_shopweb"
    assert by_id["readyState"] == "READY"
    assert by_id["target"] == "production"
    assert by_id["createdAt"] == 1767225400000
    assert by_id["meta"]["githubCommitSha"] == "a" * 40
    assert by_id["meta"]["githubCommitRef"] == "main"
    assert by_id["inspectorUrl"].startswith("https://vercel.com/")
    assert not by_id["url"].startswith("http")


def test_list_deployments_uses_uid_and_paginates_by_timestamp(
    control: httpx.Client, vercel: httpx.Client
) -> None:
    make_project(control)
    ids = [
        make_deployment(control, created_at=1767225400000 + i * 1000)["deployment"]["id"] for i in range(3)
    ]
    make_deployment(control, target="preview", created_at=1767225500000)

    first = vercel.get(
        "/vercel/v6/deployments", params={"projectId": "prj_shopweb", "target": "production", "limit": 2}
    )
    body = first.json()
    assert [d["uid"] for d in body["deployments"]] == [ids[2], ids[1]]
    assert "id" not in body["deployments"][0]
    assert body["pagination"]["count"] == 2
    assert body["pagination"]["next"] == 1767225401000

    second = vercel.get(
        "/vercel/v6/deployments",
        params={
            "projectId": "prj_shopweb",
            "target": "production",
            "limit": 2,
            "until": body["pagination"]["next"],
        },
    ).json()
    assert [d["uid"] for d in second["deployments"]] == [ids[0]]
    assert second["pagination"]["next"] is None


def test_v7_lists_deployments_as_v6_does(control: httpx.Client, vercel: httpx.Client) -> None:
    # @vercel/sdk's getDeployments calls /v7; Vercel documents the same answer as /v6.
    make_project(control)
    make_deployment(control, live=True, created_at=1767225400000)
    make_deployment(control, state="BUILDING", created_at=1767225401000)
    params = {"projectId": "prj_shopweb", "limit": 10}

    v6 = vercel.get("/vercel/v6/deployments", params=params)
    v7 = vercel.get("/vercel/v7/deployments", params=params)

    assert v7.status_code == 200
    assert v7.json() == v6.json()
    building, live = v7.json()["deployments"]
    assert (live["readySubstate"], live["ready"]) == ("PROMOTED", 1767225460000)
    # Optional but never null in the SDK's schema: a deployment not yet READY has neither.
    assert "readySubstate" not in building
    assert "ready" not in building


def test_owner_view_of_a_deployment_has_what_the_sdk_requires(
    control: httpx.Client, vercel: httpx.Client
) -> None:
    make_project(control)
    deployment = make_deployment(control, state="BUILDING")["deployment"]

    body = vercel.get(f"/vercel/v13/deployments/{deployment['id']}").json()

    assert body["build"] == {"env": []}
    assert body["env"] == []
    assert body["routes"] is None
    assert body["createdIn"] == "iad1"
    assert (body["isInConcurrentBuildsQueue"], body["isInSystemBuildsQueue"]) == (False, False)
    assert body["projectSettings"]["framework"] == "nextjs"
    assert isinstance(body["gitSource"]["repoId"], int)
    assert "readySubstate" not in body
    assert "ready" not in body


def test_failed_alias_job_leaves_production_alone(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    old = make_deployment(control, live=True)["deployment"]
    new = make_deployment(control)["deployment"]
    control.patch("/_sim/vercel/projects/prj_shopweb", json={"fail_alias_jobs": 1})

    vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{new['id']}")

    done = wait_until(lambda: (p := _project(vercel))["lastAliasRequest"]["jobStatus"] == "failed" and p)
    assert done["targets"]["production"]["id"] == old["id"]


def test_rate_limit_fault_has_the_rate_limited_shape(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    control.post("/_sim/faults", json={"service": "vercel", "kind": "429", "count": 1, "reset_after": 2})

    limited = vercel.get("/vercel/v9/projects/prj_shopweb")
    after = vercel.get("/vercel/v9/projects/prj_shopweb")

    assert limited.status_code == 429
    error = limited.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["limit"]["remaining"] == 0
    assert error["limit"]["reset"] == int(limited.headers["X-RateLimit-Reset"])
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in limited.headers  # undocumented for Vercel: only when asked for
    assert after.status_code == 200


def test_rate_limit_fault_can_add_retry_after(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    control.post("/_sim/faults", json={"service": "vercel", "kind": "429", "count": 1, "retry_after": 3})
    limited = vercel.get("/vercel/v9/projects/prj_shopweb")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"


def test_the_token_is_a_user_and_has_a_role_in_each_team(control: httpx.Client, vercel: httpx.Client) -> None:
    control.post(
        "/_sim/vercel/projects", json={"id": "prj_t", "name": "t", "team_id": "team_x", "team_slug": "x"}
    )

    user = vercel.get("/vercel/v2/user").json()["user"]
    owner = vercel.get("/vercel/v2/teams/team_x").json()
    control.post("/_sim/vercel/token", json={"role": "VIEWER"})
    viewer = vercel.get("/vercel/v2/teams/x").json()

    assert user["id"].startswith("usr_")
    assert (owner["id"], owner["slug"], owner["membership"]["role"]) == ("team_x", "x", "OWNER")
    assert viewer["membership"]["role"] == "VIEWER"
    assert vercel.get("/vercel/v2/teams/team_nope").status_code == 404
