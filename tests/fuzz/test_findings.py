"""Regression tests for what the fuzzing found, one example each, so they stay fixed without luck."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from releases.models import WebhookDelivery
from tests.factories import (
    SENTRY_SECRET,
    VERCEL_SECRET,
    deployment_event,
    make_project,
    make_release,
    make_token,
    signed,
)
from tests.fuzz.support import table_digest
from tests.releases.inbound.test_sentry import alert, compact

pytestmark = pytest.mark.django_db


def sentry_post(client: Client, body: bytes, **headers: str) -> Any:
    defaults = {
        "HTTP_SENTRY_HOOK_RESOURCE": "metric_alert",
        "HTTP_SENTRY_HOOK_TIMESTAMP": str(int(time.time())),
        "HTTP_SENTRY_HOOK_SIGNATURE": hmac.new(SENTRY_SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "HTTP_REQUEST_ID": secrets.token_hex(16),
    }
    return client.post(
        "/webhooks/sentry/", data=body, content_type="application/json", **{**defaults, **headers}
    )


@pytest.fixture
def staff() -> str:
    # A superuser: these findings are about the answers, not about who may see which project.
    return make_token(User.objects.create_superuser("finder", "f@example.com", None))


# A WSGI server hands any non-ASCII header byte over as Latin-1 text; hmac.compare_digest raised
# TypeError on it (a 500) instead of refusing the signature.
@pytest.mark.parametrize("value", ["\u00e9" * 40, "a\u00ff", "\u00e9"])
def test_a_signature_with_non_ascii_characters_is_a_401(client: Client, value: str) -> None:
    body, _ = signed(deployment_event())
    before = table_digest()
    vercel = client.post(
        "/webhooks/vercel/", data=body, content_type="application/json", HTTP_X_VERCEL_SIGNATURE=value
    )
    sentry = sentry_post(client, compact(alert()), HTTP_SENTRY_HOOK_SIGNATURE=value)
    assert (vercel.status_code, sentry.status_code) == (401, 401)
    assert table_digest() == before


# A lone surrogate is valid JSON text ("\ud800") but has no UTF-8 form: storing it was a 500.
def test_a_lone_surrogate_in_a_signed_body_is_a_400_that_changes_nothing(client: Client) -> None:
    make_project()
    event = deployment_event()
    event["payload"]["deployment"]["name"] = "\ud800"
    body, headers = signed(event)
    assert b"\\ud800" in body
    before = table_digest()
    response = client.post("/webhooks/vercel/", data=body, content_type="application/json", **headers)
    assert response.status_code == 400 and "surrogate" in response.json()["detail"]
    sentry = sentry_post(client, compact({**alert(), "actor": {"name": "\udfff"}}))
    assert sentry.status_code == 400
    assert table_digest() == before


# 1e999 is valid JSON, but Python reads it as inf, and storing that was a 500 (found while
# storing the Vercel body as received, which jsonb would have taken).
@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"1.5e400"])
def test_a_number_out_of_range_in_a_signed_body_is_a_400_that_changes_nothing(
    client: Client, number: bytes
) -> None:
    make_project()
    event = deployment_event(event_id="evt_huge")
    body, headers = signed(event)
    body = body.replace(b'"evt_huge"', b'"evt_huge", "huge": ' + number, 1)
    headers = {k: hmac.new(VERCEL_SECRET.encode(), body, hashlib.sha1).hexdigest() for k in headers}
    before = table_digest()
    response = client.post("/webhooks/vercel/", data=body, content_type="application/json", **headers)
    assert response.status_code == 400 and "out of range" in response.json()["detail"]
    sentry = sentry_post(client, compact(alert()).replace(b"{", b'{"huge": ' + number + b",", 1))
    assert sentry.status_code == 400 and "out of range" in sentry.json()["detail"]
    assert table_digest() == before


# Python reads JSON in UTF-16 and UTF-32 and after a UTF-8 byte order mark; jsonb does not, so
# storing such a body as received (a gate from a project held in memory) was a 500.
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_a_body_python_reads_but_jsonb_would_not_is_stored_as_parsed(client: Client, encoding: str) -> None:
    make_project()
    assert (
        client.post(
            "/webhooks/vercel/", **_signed_as(deployment_event(event_id="evt_warm"), "utf-8")
        ).status_code
        == 202
    )
    event = deployment_event(event_id=f"evt_{encoding}", deployment_id="dpl_Encoded0000000000000001")
    response = client.post("/webhooks/vercel/", **_signed_as(event, encoding))
    assert response.status_code == 202, response.content
    assert WebhookDelivery.objects.get(delivery_id=f"evt_{encoding}").payload == event


def _signed_as(event: dict[str, Any], encoding: str) -> dict[str, Any]:
    body = json.dumps(event).encode(encoding)
    signature = hmac.new(VERCEL_SECRET.encode(), body, hashlib.sha1).hexdigest()
    return {"data": body, "content_type": "application/json", "HTTP_X_VERCEL_SIGNATURE": signature}


# `action` was looked up in a frozenset: a list or object raised "unhashable type" (a 500).
@pytest.mark.parametrize("action", [["critical"], {"a": 1}])
def test_a_sentry_action_that_is_not_a_string_is_a_400(client: Client, action: Any) -> None:
    response = sentry_post(client, compact({**alert(), "action": action}))
    assert response.status_code == 400 and "action" in response.json()["detail"]


# Ignored resources were keyed by Request-ID: the same signed delivery replayed with a new
# Request-ID (as Sentry's retries and a replayed capture both do) wrote a new row every time.
def test_an_ignored_resource_replayed_with_a_new_request_id_is_a_duplicate(client: Client) -> None:
    body = (Path(__file__).resolve().parent.parent / "payloads" / "sentry" / "installation.json").read_bytes()
    assert sentry_post(client, body, HTTP_SENTRY_HOOK_RESOURCE="installation").json()["status"] == "ignored"
    before = table_digest()
    again = sentry_post(client, body, HTTP_SENTRY_HOOK_RESOURCE="installation")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert table_digest() == before
    assert WebhookDelivery.objects.count() == 1


# PostgreSQL refuses NUL in text: a filter or an SLO deployment carrying %00 was a 500.
@pytest.mark.parametrize("query", ["project=%00", "state=a%00b", "deployment=%00"])
def test_a_nul_in_an_api_filter_is_a_400(client: Client, staff: str, query: str) -> None:
    response = client.get(f"/api/releases/?{query}", HTTP_AUTHORIZATION=f"Token {staff}")
    assert response.status_code == 400


def test_a_nul_in_the_slo_deployment_is_a_400(client: Client, settings: Any) -> None:
    settings.SLO_AUTH_TOKEN = "slo-token"
    response = client.get("/api/slo/?deployment=dpl_%00", HTTP_AUTHORIZATION="Bearer slo-token")
    assert response.status_code == 400


# An unbounded ?limit= reached PostgreSQL as a LIMIT beyond bigint: a 500.
@pytest.mark.parametrize("limit", [str(10**30), str(2**63)])
def test_a_huge_page_size_is_capped(client: Client, staff: str, limit: str) -> None:
    make_release(make_project())
    response = client.get(f"/api/releases/?limit={limit}", HTTP_AUTHORIZATION=f"Token {staff}")
    assert response.status_code == 200 and response.json()["count"] == 1


# Under /api/ an unmatched path (an id schemathesis made up, say) was Django's HTML 404 page, not the
# JSON the schema documents.
def test_an_unmatched_api_path_is_a_json_404(client: Client, staff: str) -> None:
    response = client.get("/api/releases/1/nope/", HTTP_AUTHORIZATION=f"Token {staff}")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    assert client.get("/not-an-api-path/").status_code == 404


# The schema documented 200 alone everywhere and failed to describe both webhooks (8 errors);
# schemathesis (test_schema.py) checks the status codes, this checks the generator is clean.
def test_the_openapi_schema_generates_without_warnings(tmp_path: Path) -> None:
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yaml"))
    text = (tmp_path / "schema.yaml").read_text()
    assert "'409':" in text and "'413':" in text and "x-vercel-signature" in text


# The schema and OPTIONS on /api/slo/ (with its token set) answered a caller who had not logged in.
def test_the_schema_and_slo_options_refuse_anonymous_callers(client: Client, settings: Any) -> None:
    settings.SLO_AUTH_TOKEN = "slo-token"
    assert client.get("/api/schema/").status_code == 401
    assert client.options("/api/slo/").status_code in (401, 403, 405)
    assert b"Slo" not in client.options("/api/slo/").content


# bench/fuzz.py (1,200 examples): an override with a body but no Content-Type is DRF's 415, which
# the schema did not list, so schemathesis' status-code check failed for reject and resume.
def test_an_override_body_without_a_content_type_is_a_documented_415(
    client: Client, staff: str, tmp_path: Path
) -> None:
    release = make_release(make_project())
    response = client.generic(
        "POST",
        f"/api/releases/{release.pk}/reject/",
        b"\xc2\xa0N",
        content_type="",
        HTTP_AUTHORIZATION=f"Token {staff}",
    )
    assert response.status_code == 415
    call_command("spectacular", "--file", str(tmp_path / "schema.yaml"))
    text = (tmp_path / "schema.yaml").read_text()
    reject = text[text.index("/api/releases/{id}/reject/:") :]
    assert "'415':" in reject[: reject.index("/api/releases/{id}/resume/:")]
