"""The control API, faults, the request log, scenarios and the command line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.simulator.conftest import start_simulator, stop_simulator
from tests.simulator.helpers import make_deployment, make_project, wait_until

SLACK = {"Authorization": "Bearer xoxb-1", "Content-Type": "application/json; charset=utf-8"}


def test_health(control: httpx.Client) -> None:
    assert control.get("/_sim/health").json() == {"ok": True}


def test_request_log_records_vendor_calls_without_tokens(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    vercel.get("/vercel/v9/projects/prj_shopweb", params={"teamId": ""})
    control.post("/slack/api/chat.postMessage", headers=SLACK, json={"channel": "#r", "text": "hi"})

    entries = control.get("/_sim/requests").json()["requests"]

    assert [(e["service"], e["method"], e["path"], e["status"]) for e in entries] == [
        ("vercel", "GET", "/v9/projects/prj_shopweb", 200),
        ("slack", "POST", "/api/chat.postMessage", 200),
    ]
    assert entries[0]["query"] == {"teamId": [""]}
    assert entries[1]["body"] == {"channel": "#r", "text": "hi"}
    assert entries[0]["seq"] < entries[1]["seq"]
    assert isinstance(entries[0]["at"], float)
    assert "vercel-token" not in str(entries) and "xoxb-1" not in str(entries)
    only_slack = control.get("/_sim/requests", params={"service": "slack"}).json()["requests"]
    assert [e["service"] for e in only_slack] == ["slack"]
    since = control.get("/_sim/requests", params={"since_seq": entries[0]["seq"]}).json()["requests"]
    assert [e["seq"] for e in since] == [entries[1]["seq"]]


def test_reset_clears_everything(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    control.post("/_sim/faults", json={"service": "sentry", "kind": "5xx"})
    control.post("/slack/api/chat.postMessage", headers=SLACK, json={"channel": "#r", "text": "hi"})
    control.post(
        "/_sim/sentry/traffic",
        json={"org": "a", "project": "p", "release": "r", "sessions_per_minute": 1, "crash_rate": 0},
    )

    assert control.post("/_sim/reset").json() == {"ok": True}

    assert vercel.get("/vercel/v9/projects/prj_shopweb").status_code == 404
    assert control.get("/_sim/faults").json()["faults"] == []
    assert control.get("/_sim/slack/messages").json()["messages"] == []
    assert control.get("/_sim/sentry/traffic").json()["traffic"] == []
    assert [e["path"] for e in control.get("/_sim/requests").json()["requests"]] == [
        "/v9/projects/prj_shopweb"
    ]


def test_5xx_fault_is_not_processed_and_counts_down(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    staged = make_deployment(control)["deployment"]
    fault = control.post(
        "/_sim/faults", json={"service": "vercel", "kind": "5xx", "path_contains": "/promote/", "count": 1}
    )
    assert fault.status_code == 201

    failed = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{staged['id']}")
    untouched = vercel.get("/vercel/v9/projects/prj_shopweb")  # path does not match the fault
    retried = vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{staged['id']}")

    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "internal_server_error"
    assert "X-RateLimit-Limit" in failed.headers
    assert untouched.json()["lastAliasRequest"] is None  # the faulted promote changed nothing
    assert retried.status_code == 202
    log = control.get("/_sim/requests", params={"path_contains": "/promote/"}).json()["requests"]
    assert [(e["status"], e["fault"]) for e in log] == [(503, "5xx"), (202, None)]
    assert control.get("/_sim/faults").json()["faults"][0]["hits"] == 1


def test_fault_can_force_a_status_and_match_a_method(control: httpx.Client, vercel: httpx.Client) -> None:
    make_project(control)
    control.post("/_sim/faults", json={"service": "*", "kind": "5xx", "status": 409, "method": "POST"})
    assert vercel.get("/vercel/v9/projects/prj_shopweb").status_code == 200
    conflict = vercel.post("/vercel/v10/projects/prj_shopweb/promote/dpl_x")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    assert control.delete("/_sim/faults").status_code == 200
    assert vercel.post("/vercel/v10/projects/prj_shopweb/promote/dpl_x").status_code == 404


def test_timeout_fault_hangs_and_changes_nothing(control: httpx.Client, simulator_process) -> None:
    control.post("/_sim/faults", json={"service": "slack", "kind": "timeout", "delay": 2, "count": 1})
    started = time.monotonic()
    with simulator_process.client(headers=SLACK) as slack, pytest.raises(httpx.ReadTimeout):
        slack.post("/slack/api/chat.postMessage", json={"channel": "#r", "text": "hi"}, timeout=0.5)
    assert time.monotonic() - started < 1.5
    [entry] = control.get("/_sim/requests").json()["requests"]
    assert (entry["fault"], entry["status"]) == ("timeout", 504)
    assert control.get("/_sim/slack/messages").json()["messages"] == []


def test_an_applied_timeout_does_the_work_and_loses_the_answer(
    control: httpx.Client, simulator_process
) -> None:
    control.post(
        "/_sim/faults",
        json={"service": "slack", "kind": "timeout", "delay": 2, "count": 1, "apply": True},
    )
    with simulator_process.client(headers=SLACK) as slack, pytest.raises(httpx.ReadTimeout):
        slack.post("/slack/api/chat.postMessage", json={"channel": "#r", "text": "hi"}, timeout=0.5)
    [entry] = control.get("/_sim/requests").json()["requests"]
    assert (entry["fault"], entry["status"], entry["applied_status"]) == ("timeout", 504, 200)
    assert [m["text"] for m in control.get("/_sim/slack/messages").json()["messages"]] == ["hi"]


def test_apply_is_refused_for_faults_that_answer(control: httpx.Client) -> None:
    refused = control.post("/_sim/faults", json={"service": "*", "kind": "5xx", "apply": True})
    assert refused.status_code == 400 and "apply" in refused.json()["error"]
    unapplied = control.post("/_sim/faults", json={"service": "*", "kind": "reset", "count": 1})
    assert unapplied.json()["fault"]["apply"] is False


def test_reset_fault_drops_the_connection(control: httpx.Client) -> None:
    control.post("/_sim/faults", json={"service": "pagerduty", "kind": "reset", "count": 1})
    with pytest.raises(httpx.TransportError):
        control.post("/pagerduty/v2/enqueue", json={})
    [entry] = control.get("/_sim/requests").json()["requests"]
    assert (entry["fault"], entry["status"]) == ("reset", None)


def test_bad_control_requests_are_4xx(control: httpx.Client) -> None:
    assert control.post("/_sim/faults", json={"service": "nope", "kind": "5xx"}).status_code == 400
    assert control.post("/_sim/vercel/deployments", json={"project_id": "prj_missing"}).status_code == 404
    assert control.get("/_sim/vercel/projects/prj_missing").status_code == 404
    assert control.get("/_sim/nothing").status_code == 404
    assert "error" in control.post("/_sim/sentry/traffic", json={"org": "a"}).json()


def test_creating_a_project_twice_is_a_no_op(control: httpx.Client) -> None:
    assert control.post("/_sim/vercel/projects", json={"id": "prj_a", "name": "a"}).status_code == 201
    again = control.post("/_sim/vercel/projects", json={"id": "prj_a", "name": "renamed"})
    assert again.status_code == 200
    assert again.json()["name"] == "a"


def test_deployment_traffic_defaults_to_the_commit_sha_and_project_mapping(control: httpx.Client) -> None:
    make_project(control)
    created = make_deployment(control, traffic={"sessions_per_minute": 600, "crash_rate": 0.01})
    sha = created["deployment"]["meta"]["githubCommitSha"]
    assert len(sha) == 40
    [traffic] = control.get("/_sim/sentry/traffic").json()["traffic"]
    assert (traffic["org"], traffic["project"], traffic["project_id"]) == ("acme", "shop-web", 4507)
    assert traffic["release"] == sha
    assert traffic["environment"] == "production"


def test_scenario_file_plays_its_timeline(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        """
projects:
  - {id: prj_s, name: s, domains: [s.example.com], sentry: {org: acme, project: s}}
events:
  - {at: 0, deploy: {id: dpl_base, live: true, traffic: {sessions_per_minute: 600, crash_rate: 0.001}}}
  - {at: 0.2, deploy: {id: dpl_next, traffic: {sessions_per_minute: 600, crash_rate: 0.03}}}
""",
        encoding="utf-8",
    )
    sim = start_simulator("--scenario", str(scenario))
    try:
        with sim.client() as client:
            view = wait_until(
                lambda: (
                    (v := client.get("/_sim/vercel/projects/prj_s").json()).get("deployments")
                    and len(v["deployments"]) == 2
                    and v
                )
            )
            assert view["production_deployment_id"] == "dpl_base"
            assert [d["readySubstate"] for d in view["deployments"]] == ["PROMOTED", "STAGED"]
            traffic = client.get("/_sim/sentry/traffic").json()["traffic"]
            assert sorted(t["phases"][0]["crash_rate"] for t in traffic) == [0.001, 0.03]
    finally:
        stop_simulator(sim)


def test_demo_scenario_loads() -> None:
    sim = start_simulator("--scenario", "simulator/scenarios/demo.yaml")
    try:
        with sim.client() as client:
            view = client.get("/_sim/vercel/projects/prj_demo_shopweb").json()
            assert view["project"]["domains"] == ["shop.example.com"]
            assert view["project"]["sentry"]["org"] == "acme"
    finally:
        stop_simulator(sim)


def test_environment_variables_and_required_tokens() -> None:
    env = {**os.environ, "SIM_ALIAS_DELAY": "0", "GATEKEEPER_URL": "http://127.0.0.1:9"}
    sim = start_simulator("--require-token", "vercel=exact-token", env=env)
    try:
        with sim.client() as client:
            config = client.get("/_sim/config").json()
            assert config["alias_delay"] == 0
            assert config["gatekeeper_url"] == "http://127.0.0.1:9"
            wrong = client.get("/vercel/v9/projects/x", headers={"Authorization": "Bearer other"})
            right = client.get("/vercel/v9/projects/x", headers={"Authorization": "Bearer exact-token"})
            assert wrong.status_code == 403
            assert wrong.json()["error"]["code"] == "forbidden"
            assert right.status_code == 404
    finally:
        stop_simulator(sim)


def test_required_tokens_for_datadog_and_posthog() -> None:
    env = {**os.environ, "SIM_REQUIRE_TOKENS": "posthog=phx_exact"}
    sim = start_simulator("--require-token", "datadog=dd-api:dd-app", env=env)
    query = {"from": 1, "to": 2, "query": "avg:m{env:prod}"}
    hogql = {"query": {"kind": "HogQLQuery", "query": "SELECT count() FROM events"}}
    try:
        with sim.client() as client:
            assert client.get("/_sim/config").json()["required_tokens_for"] == ["datadog", "posthog"]
            wrong_app = client.get(
                "/datadog/api/v1/query",
                params=query,
                headers={"DD-API-KEY": "dd-api", "DD-APPLICATION-KEY": "x"},
            )
            right = client.get(
                "/datadog/api/v1/query",
                params=query,
                headers={"DD-API-KEY": "dd-api", "DD-APPLICATION-KEY": "dd-app"},
            )
            wrong_key = client.post(
                "/posthog/api/projects/1/query/", json=hogql, headers={"Authorization": "Bearer phx_other"}
            )
            right_key = client.post(
                "/posthog/api/projects/1/query/", json=hogql, headers={"Authorization": "Bearer phx_exact"}
            )
        assert (wrong_app.status_code, wrong_app.json()) == (403, {"errors": ["Forbidden"]})
        assert right.status_code == 200
        assert wrong_key.status_code == 401
        assert wrong_key.json() == {
            "type": "authentication_error",
            "code": "invalid_personal_api_key",
            "detail": "Invalid Personal API key.",
            "attr": None,
        }
        assert right_key.status_code == 200
    finally:
        stop_simulator(sim)


def test_faults_accept_the_new_services(control: httpx.Client) -> None:
    for service in ("datadog", "posthog"):
        response = control.post("/_sim/faults", json={"service": service, "kind": "5xx"})
        assert response.status_code == 201
    assert [f["service"] for f in control.get("/_sim/faults").json()["faults"]] == ["datadog", "posthog"]
