"""The simulated Vercel rolling releases (docs/vendor-apis.md §2.7; abort = rollback, §2.5)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.simulator.helpers import make_deployment, make_project, wait_until

RR = "/vercel/v1/projects/prj_shopweb/rolling-release"


@pytest.fixture
def release(control: httpx.Client) -> dict[str, str]:
    """A project with a live production deployment and a staged one to roll out."""
    make_project(control)
    old = make_deployment(control, id="dpl_old", live=True)["deployment"]
    canary = make_deployment(control, id="dpl_canary")["deployment"]
    return {"old": old["id"], "canary": canary["id"]}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()["rollingRelease"]


def _start(vercel: httpx.Client, canary: str) -> dict[str, Any]:
    return _ok(vercel.post(f"{RR}/start", json={"canaryDeploymentId": canary}))


def _approve(vercel: httpx.Client, canary: str, next_index: Any, **extra: Any) -> httpx.Response:
    return vercel.post(
        f"{RR}/approve-stage", json={"nextStageIndex": next_index, "canaryDeploymentId": canary, **extra}
    )


def _stage(index: int, percent: int, *, final: bool, linear_shift: bool = False) -> dict[str, Any]:
    """A stage as §2.7 shows it; only the ``stages`` list carries ``linearShift``."""
    stage = {
        "index": index,
        "isFinalStage": final,
        "targetPercentage": percent,
        "requireApproval": not final,
        "duration": None,
    }
    return {**stage, "linearShift": False} if linear_shift else stage


def _view(control: httpx.Client) -> dict[str, Any]:
    return control.get("/_sim/vercel/projects/prj_shopweb").json()


def _error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


def test_no_release_yet_is_null(control: httpx.Client, vercel: httpx.Client, release: dict[str, str]) -> None:
    assert _ok(vercel.get(RR)) is None
    assert _view(control)["rolling_release"]["release"] is None
    assert _view(control)["rolling_release"]["stages"] == [5, 25, 100]


def test_start_has_the_contract_shape_and_is_idempotent(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    rr = _start(vercel, release["canary"])

    assert rr["state"] == "ACTIVE"
    assert rr["currentDeployment"]["id"] == release["old"]
    assert rr["canaryDeployment"]["id"] == release["canary"]
    for deployment in (rr["currentDeployment"], rr["canaryDeployment"]):
        assert set(deployment) == {
            *("id", "name", "url", "target", "source"),
            *("createdAt", "readyState", "readyStateAt"),
        }
        assert deployment["readyState"] == "READY"
        assert deployment["target"] == "production"
    assert rr["queuedDeploymentId"] is None
    assert rr["advancementType"] == "manual-approval"
    assert rr["stages"] == [
        _stage(0, 5, final=False, linear_shift=True),
        _stage(1, 25, final=False, linear_shift=True),
        _stage(2, 100, final=True, linear_shift=True),
    ]
    assert rr["activeStage"] == _stage(0, 5, final=False)
    assert rr["nextStage"]["index"] == 1
    assert isinstance(rr["startedAt"], int) and rr["startedAt"] == rr["updatedAt"]
    canary = vercel.get(f"/vercel/v13/deployments/{release['canary']}").json()
    assert canary["readySubstate"] == "ROLLING"

    again = _start(vercel, release["canary"])
    assert again == rr
    assert _ok(vercel.get(RR)) == rr
    assert [entry["percent"] for entry in _view(control)["rolling_release"]["history"]] == [5]


def test_start_approve_approve_complete_moves_traffic_and_production(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    patched = control.patch(
        "/_sim/vercel/projects/prj_shopweb", json={"rolling_release": {"stages": [5, 25, 50]}}
    )
    assert patched.json()["rolling_release"]["stages"] == [5, 25, 50, 100]
    config = vercel.get("/vercel/v9/projects/prj_shopweb").json()["rollingRelease"]
    assert [s["targetPercentage"] for s in config["stages"]] == [5, 25, 50, 100]
    canary = release["canary"]

    started = _start(vercel, canary)
    control.post("/_sim/clock", json={"advance": 600})
    first = _ok(_approve(vercel, canary, 1, activeStageIndex=0))
    control.post("/_sim/clock", json={"advance": 600})
    second = _ok(_approve(vercel, canary, 2))
    control.post("/_sim/clock", json={"advance": 600})
    done = _ok(vercel.post(f"{RR}/complete", json={"canaryDeploymentId": canary}))

    assert (started["activeStage"]["targetPercentage"], started["nextStage"]["targetPercentage"]) == (5, 25)
    assert (first["state"], first["activeStage"]["index"], first["nextStage"]["index"]) == ("ACTIVE", 1, 2)
    assert first["activeStage"]["targetPercentage"] == 25
    assert second["activeStage"]["targetPercentage"] == 50
    assert second["nextStage"] == _stage(3, 100, final=True)
    assert done["state"] == "COMPLETE"
    assert done["activeStage"]["isFinalStage"] is True
    assert done["nextStage"] is None
    assert done["updatedAt"] - started["startedAt"] >= 1_800_000  # the simulated clock moved 30 min

    project = vercel.get("/vercel/v9/projects/prj_shopweb").json()
    assert project["targets"]["production"]["id"] == canary
    job = project["lastAliasRequest"]
    assert (job["type"], job["jobStatus"], job["fromDeploymentId"], job["toDeploymentId"]) == (
        "promote",
        "succeeded",
        release["old"],
        canary,
    )
    assert job["fromRollingReleaseId"]
    assert vercel.get(f"/vercel/v13/deployments/{canary}").json()["readySubstate"] == "PROMOTED"

    view = _view(control)["rolling_release"]
    history = view["history"]
    assert [(h["percent"], h["state"], h["event"]) for h in history] == [
        (5, "ACTIVE", "start"),
        (25, "ACTIVE", "approve"),
        (50, "ACTIVE", "approve"),
        (100, "COMPLETE", "complete"),
    ]
    assert [b["at"] - a["at"] for a, b in itertools.pairwise(history)] == [
        pytest.approx(600_000, abs=2_000)
    ] * 3
    assert view["canary_percent"] == 100
    # Completing again is a no-op; a new approval finds nothing active.
    assert _ok(vercel.post(f"{RR}/complete", json={"canaryDeploymentId": canary})) == done
    assert len(_view(control)["rolling_release"]["history"]) == 4
    assert _error_code(_approve(vercel, canary, 3), 404) == "not_found"


def test_approving_the_final_stage_completes_the_release(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    canary = release["canary"]
    _start(vercel, canary)
    _ok(_approve(vercel, canary, 1))
    final = _ok(_approve(vercel, canary, 2))

    assert final["state"] == "COMPLETE"
    assert final["activeStage"]["targetPercentage"] == 100
    assert vercel.get("/vercel/v9/projects/prj_shopweb").json()["targets"]["production"]["id"] == canary
    assert _ok(vercel.post(f"{RR}/complete", json={"canaryDeploymentId": canary}))["state"] == "COMPLETE"
    assert _ok(vercel.get(RR, params={"state": "ACTIVE"})) is None
    assert _ok(vercel.get(RR, params={"state": "COMPLETE"}))["canaryDeployment"]["id"] == canary


@pytest.mark.parametrize("version", ["v1", "v9"])
def test_rollback_aborts_an_active_release(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str], version: str
) -> None:
    canary = release["canary"]
    _start(vercel, canary)
    _ok(_approve(vercel, canary, 1))

    rollback = vercel.post(f"/vercel/{version}/projects/prj_shopweb/rollback/{release['old']}", json={})

    assert rollback.status_code == 201
    assert rollback.content == b""
    aborted = _ok(vercel.get(RR))
    assert aborted["state"] == "ABORTED"
    assert aborted["activeStage"] is None
    assert aborted["nextStage"] is None
    view = _view(control)["rolling_release"]
    assert [(h["percent"], h["state"]) for h in view["history"]] == [
        (5, "ACTIVE"),
        (25, "ACTIVE"),
        (0, "ABORTED"),
    ]
    assert view["history"][-1]["current_deployment_id"] == release["old"]
    assert view["canary_percent"] == 0
    done = wait_until(
        lambda: (
            (p := vercel.get("/vercel/v9/projects/prj_shopweb").json())["lastAliasRequest"]["jobStatus"]
            == "succeeded"
            and p
        )
    )
    assert done["lastAliasRequest"]["type"] == "rollback"
    assert done["targets"]["production"]["id"] == release["old"]
    assert vercel.get(f"/vercel/v13/deployments/{canary}").json()["readySubstate"] == "STAGED"
    assert _error_code(_approve(vercel, canary, 2), 404) == "not_found"
    assert _error_code(vercel.post(f"{RR}/complete", json={"canaryDeploymentId": canary}), 404) == "not_found"


def test_bad_stage_indexes_and_canaries_are_400_and_change_nothing(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    canary = release["canary"]
    other = make_deployment(control, id="dpl_other")["deployment"]["id"]
    _start(vercel, canary)

    assert _error_code(_approve(vercel, canary, 2), 400) == "bad_request"  # skips a stage
    assert _error_code(_approve(vercel, canary, 0), 400) == "bad_request"  # the active one
    assert _error_code(_approve(vercel, canary, "1"), 400) == "bad_request"
    assert _error_code(_approve(vercel, canary, None), 400) == "bad_request"
    assert _error_code(_approve(vercel, canary, 1, activeStageIndex=1), 400) == "bad_request"
    assert _error_code(_approve(vercel, other, 1), 400) == "bad_request"  # not the canary
    assert _error_code(_approve(vercel, "dpl_missing", 1), 404) == "not_found"
    assert (
        _error_code(vercel.post(f"{RR}/complete", json={"canaryDeploymentId": other}), 400) == "bad_request"
    )
    assert _error_code(vercel.post(f"{RR}/approve-stage"), 400) == "bad_request"  # no body
    message = _approve(vercel, canary, 2).json()["error"]["message"]
    assert "nextStageIndex" in message

    unchanged = _ok(vercel.get(RR))
    assert (unchanged["state"], unchanged["activeStage"]["index"]) == ("ACTIVE", 0)
    assert len(_view(control)["rolling_release"]["history"]) == 1


def test_start_errors(control: httpx.Client, vercel: httpx.Client, release: dict[str, str]) -> None:
    make_project(control, id="prj_other", name="other", domains=["other.example.com"])
    foreign = make_deployment(control, project_id="prj_other")["deployment"]["id"]
    preview = make_deployment(control, target="preview")["deployment"]["id"]
    building = make_deployment(control, state="BUILDING")["deployment"]["id"]
    second = make_deployment(control)["deployment"]["id"]

    def start(body: Any, project: str = "prj_shopweb") -> httpx.Response:
        return vercel.post(f"/vercel/v1/projects/{project}/rolling-release/start", json=body)

    assert _error_code(start({"canaryDeploymentId": "dpl_missing"}), 404) == "not_found"
    assert _error_code(start({"canaryDeploymentId": foreign}), 400) == "bad_request"
    assert _error_code(start({"canaryDeploymentId": preview}), 400) == "bad_request"
    assert _error_code(start({"canaryDeploymentId": building}), 400) == "bad_request"
    assert _error_code(start({"canaryDeploymentId": release["old"]}), 400) == "bad_request"  # already live
    assert _error_code(start({}), 400) == "bad_request"
    assert _error_code(start({"canaryDeploymentId": release["canary"]}, "prj_nope"), 404) == "not_found"
    assert _ok(vercel.get(RR)) is None

    _start(vercel, release["canary"])
    assert _error_code(start({"canaryDeploymentId": second}), 400) == "bad_request"  # another is active
    assert _error_code(vercel.get(RR, params={"state": "DONE"}), 400) == "bad_request"


def test_promote_is_refused_while_a_release_is_active(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    _start(vercel, release["canary"])
    other = make_deployment(control)["deployment"]["id"]

    response = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{other}")

    assert _error_code(response, 409) == "conflict"
    assert vercel.get("/vercel/v9/projects/prj_shopweb").json()["lastAliasRequest"] is None


def test_rate_limit_fault_on_approve_changes_nothing(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    canary = release["canary"]
    _start(vercel, canary)
    control.post(
        "/_sim/faults",
        json={"service": "vercel", "kind": "429", "path_contains": "/rolling-release/", "count": 1},
    )

    limited = _approve(vercel, canary, 1)
    retried = _approve(vercel, canary, 1)

    assert _error_code(limited, 429) == "rate_limited"
    assert "X-RateLimit-Reset" in limited.headers
    assert _ok(retried)["activeStage"]["index"] == 1
    assert [h["percent"] for h in _view(control)["rolling_release"]["history"]] == [5, 25]


def test_team_projects_need_their_team(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control, team_id="team_acme")
    make_deployment(control, id="dpl_old", live=True)
    make_deployment(control, id="dpl_canary")

    hidden = vercel.post(f"{RR}/start", json={"canaryDeploymentId": "dpl_canary"})
    scoped = vercel.post(
        f"{RR}/start", params={"teamId": "team_acme"}, json={"canaryDeploymentId": "dpl_canary"}
    )

    assert _error_code(hidden, 404) == "not_found"
    assert _ok(scoped)["state"] == "ACTIVE"


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"stages": [25, 5, 100]}, "increasing"),
        ({"stages": [100]}, "below 100"),
        ({"stages": [0, 50]}, "1 to 100"),
        ({"stages": [5.5, 50]}, "whole"),
        ({"stages": []}, "list"),
        ({"stages": [5], "advancement": "automatic"}, "unknown keys"),
    ],
)
def test_bad_stage_configs_are_400(control: httpx.Client, config: dict[str, Any], error: str) -> None:
    make_project(control)
    response = control.patch("/_sim/vercel/projects/prj_shopweb", json={"rolling_release": config})
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_config_changes_affect_only_the_next_release(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    _start(vercel, release["canary"])
    control.patch("/_sim/vercel/projects/prj_shopweb", json={"rolling_release": {"stages": [10, 100]}})

    current = _ok(vercel.get(RR))
    cleared = control.patch("/_sim/vercel/projects/prj_shopweb", json={"rolling_release": None}).json()

    assert [s["targetPercentage"] for s in current["stages"]] == [5, 25, 100]
    assert cleared["rolling_release"]["configured"] is False
    assert vercel.get("/vercel/v9/projects/prj_shopweb").json()["rollingRelease"] is None


def test_completing_sends_deployment_promoted_like_a_promote(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str], gatekeeper
) -> None:
    _start(vercel, release["canary"])
    _ok(vercel.post(f"{RR}/complete", json={"canaryDeploymentId": release["canary"]}))

    def promoted() -> list[dict[str, Any]]:
        with gatekeeper.lock:
            events = [r.json() for r in gatekeeper.received]
        return [e for e in events if e["payload"]["deployment"]["id"] == release["canary"]]

    [event] = wait_until(promoted)
    assert event["type"] == "deployment.promoted"
    assert "target" not in event["payload"]  # as for every deployment.promoted (§1.4)


def test_a_promote_on_a_project_with_rolling_releases_configured_starts_one(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    control.patch("/_sim/vercel/projects/prj_shopweb", json={"rolling_release": {"stages": [10, 100]}})

    response = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{release['canary']}")

    assert response.status_code == 202
    rr = _ok(vercel.get(RR))
    assert (rr["state"], rr["canaryDeployment"]["id"], rr["activeStage"]["targetPercentage"]) == (
        "ACTIVE",
        release["canary"],
        10,
    )
    # Split, not cut over: production still serves the old deployment until someone advances it.
    assert _view(control)["production_deployment_id"] == release["old"]
    assert vercel.get("/vercel/v9/projects/prj_shopweb").json()["lastAliasRequest"] is None


def test_without_rolling_releases_configured_a_promote_cuts_over(
    control: httpx.Client, vercel: httpx.Client, release: dict[str, str]
) -> None:
    vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{release['canary']}")

    wait_until(lambda: _view(control)["production_deployment_id"] == release["canary"])
    assert _ok(vercel.get(RR)) is None
