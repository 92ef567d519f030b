"""Outbound webhooks: signed over the exact bytes sent, to a stand-in Gatekeeper."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from tests.simulator.conftest import FakeGatekeeper
from tests.simulator.helpers import SENTRY_SECRET, VERCEL_SECRET, make_deployment, make_project, wait_until


def _vercel_ok(raw: bytes, signature: str | None) -> bool:
    expected = hmac.new(VERCEL_SECRET.encode(), raw, hashlib.sha1).hexdigest()
    return signature is not None and hmac.compare_digest(expected, signature)


def test_vercel_webhook_is_signed_over_the_raw_body(
    control: httpx.Client, gatekeeper: FakeGatekeeper
) -> None:
    make_project(control)
    deployment = make_deployment(control, meta={"githubCommitSha": "b" * 40})["deployment"]

    result = control.post(
        "/_sim/vercel/webhooks",
        json={"type": "deployment.succeeded", "deployment_id": deployment["id"], "event_id": "evt_fixed"},
    ).json()

    assert result["deliveries"] == [
        {
            "event_id": "evt_fixed",
            "type": "deployment.succeeded",
            "status": 200,
            "body": '{"ok":true}',
            "error": None,
        }
    ]
    [received] = gatekeeper.wait_for(1)
    assert received.path == "/webhooks/vercel/"
    assert _vercel_ok(received.body, received.headers.get("x-vercel-signature"))
    envelope = received.json()
    assert envelope["id"] == "evt_fixed"
    assert envelope["type"] == "deployment.succeeded"
    assert isinstance(envelope["createdAt"], int)
    payload = envelope["payload"]
    assert payload["deployment"]["id"] == deployment["id"]
    assert payload["deployment"]["meta"]["githubCommitSha"] == "b" * 40
    assert payload["project"]["id"] == "prj_shopweb"
    assert payload["target"] == "production"
    assert not payload["deployment"]["url"].startswith("http")
    assert payload["links"]["deployment"].startswith("https://vercel.com/")


def test_tampered_deliveries(control: httpx.Client, gatekeeper: FakeGatekeeper) -> None:
    make_project(control)
    deployment = make_deployment(control)["deployment"]
    for tamper in ("bad_signature", "no_signature"):
        control.post(
            "/_sim/vercel/webhooks",
            json={"type": "deployment.succeeded", "deployment_id": deployment["id"], "tamper": tamper},
        )
    bad, unsigned = gatekeeper.wait_for(2)
    assert bad.headers.get("x-vercel-signature")
    assert not _vercel_ok(bad.body, bad.headers["x-vercel-signature"])
    assert "x-vercel-signature" not in unsigned.headers


def test_repeat_sends_the_same_event_id_in_parallel(
    control: httpx.Client, gatekeeper: FakeGatekeeper
) -> None:
    make_project(control)
    deployment = make_deployment(control)["deployment"]
    result = control.post(
        "/_sim/vercel/webhooks",
        json={
            "type": "deployment.succeeded",
            "deployment_id": deployment["id"],
            "repeat": 3,
            "parallel": True,
        },
    ).json()
    received = gatekeeper.wait_for(3)
    assert len({d["event_id"] for d in result["deliveries"]}) == 1
    assert {r.json()["id"] for r in received} == {result["deliveries"][0]["event_id"]}
    assert len({r.body for r in received}) == 1


def test_gatekeeper_status_and_unreachable_target_are_reported(
    control: httpx.Client, gatekeeper: FakeGatekeeper
) -> None:
    make_project(control)
    deployment = make_deployment(control)["deployment"]
    gatekeeper.status = 500
    answered = control.post(
        "/_sim/vercel/webhooks", json={"type": "deployment.succeeded", "deployment_id": deployment["id"]}
    ).json()
    unreachable = control.post(
        "/_sim/vercel/webhooks",
        json={
            "type": "deployment.succeeded",
            "deployment_id": deployment["id"],
            "target": "http://127.0.0.1:9/x",
        },
    ).json()
    assert answered["deliveries"][0]["status"] == 500
    assert unreachable["deliveries"][0]["status"] is None
    assert unreachable["deliveries"][0]["error"]


def test_live_deployment_and_promote_send_deployment_promoted(
    control: httpx.Client, gatekeeper: FakeGatekeeper, vercel: httpx.Client
) -> None:
    make_project(control)
    created = make_deployment(control, live=True, webhooks=["deployment.created", "deployment.succeeded"])
    assert [d["type"] for d in created["deliveries"]] == [
        "deployment.created",
        "deployment.succeeded",
        "deployment.promoted",
    ]
    assert all(d["status"] == 200 for d in created["deliveries"])
    staged = make_deployment(control)["deployment"]
    vercel.post(f"/vercel/v10/projects/prj_shopweb/promote/{staged['id']}")

    received = gatekeeper.wait_for(4)
    promoted = received[3].json()
    assert promoted["type"] == "deployment.promoted"
    assert promoted["payload"]["deployment"]["id"] == staged["id"]
    assert "target" not in promoted["payload"]  # not documented for deployment.promoted
    assert received[0].json()["payload"]["alias"] == ["shop.example.com"]  # only on created
    assert all(_vercel_ok(r.body, r.headers["x-vercel-signature"]) for r in received)


def test_rollback_sends_no_promoted_webhook(
    control: httpx.Client, gatekeeper: FakeGatekeeper, vercel: httpx.Client
) -> None:
    make_project(control)
    good = make_deployment(control, live=True)["deployment"]
    make_deployment(control, live=True)
    gatekeeper.wait_for(2)
    vercel.post(f"/vercel/v1/projects/prj_shopweb/rollback/{good['id']}")

    def finished() -> dict | None:
        view = control.get("/_sim/vercel/projects/prj_shopweb").json()
        return view if view["last_alias_request"]["jobStatus"] == "succeeded" else None

    assert wait_until(finished)["production_deployment_id"] == good["id"]
    time.sleep(0.3)  # a promoted webhook, if one were (wrongly) sent, would have arrived by now
    assert [r.json()["type"] for r in gatekeeper.received] == ["deployment.promoted", "deployment.promoted"]


def test_sentry_alert_is_signed_with_sha256(control: httpx.Client, gatekeeper: FakeGatekeeper) -> None:
    result = control.post(
        "/_sim/sentry/webhooks", json={"action": "critical", "project": "shop-web", "org": "acme"}
    ).json()
    [received] = gatekeeper.wait_for(1)
    assert result["deliveries"][0]["status"] == 200
    assert received.path == "/webhooks/sentry/"
    expected = hmac.new(SENTRY_SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["sentry-hook-signature"] == expected
    assert received.headers["sentry-hook-resource"] == "metric_alert"
    assert received.headers["sentry-hook-timestamp"].isdigit()
    assert len(received.headers["request-id"]) == 32
    body = received.json()
    assert received.body == json.dumps(body, separators=(",", ":")).encode()  # compact, as Sentry sends
    assert body["action"] == "critical"
    assert body["data"]["metric_alert"]["status"] == 20
    assert body["data"]["metric_alert"]["projects"] == ["shop-web"]


def test_webhook_without_gatekeeper_url_is_a_control_error(control: httpx.Client) -> None:
    make_project(control)
    deployment = make_deployment(control)["deployment"]
    response = control.post(
        "/_sim/vercel/webhooks", json={"type": "deployment.succeeded", "deployment_id": deployment["id"]}
    )
    assert response.status_code == 400
    assert "gatekeeper" in response.json()["error"]


def test_failed_deployment_webhook_is_retried_with_the_same_bytes(
    control: httpx.Client, gatekeeper: FakeGatekeeper
) -> None:
    make_project(control)
    gatekeeper.status = 503
    created = make_deployment(control, webhooks=["deployment.succeeded"])
    assert created["deliveries"][0]["status"] == 503
    gatekeeper.status = 200

    first, retry = gatekeeper.wait_for(2, timeout=5)

    assert retry.body == first.body
    assert retry.headers["x-vercel-signature"] == first.headers["x-vercel-signature"]

    # The retry reaches the receiver before the simulator logs its answer: wait for the log.
    def logged() -> list[dict[str, Any]] | None:
        log = control.get("/_sim/webhooks", params={"type": "deployment.succeeded"}).json()["deliveries"]
        return log if len(log) >= 2 else None

    assert [(d["attempt"], d["status"]) for d in wait_until(logged)] == [(1, 503), (2, 200)]
