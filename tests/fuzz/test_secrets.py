"""No credential reaches logs, Slack, PagerDuty, the admin or the API, even when a vendor echoes it.

Vendors (and proxies in front of them) answer 401 and 500 with bodies that quote the request's
Authorization header or body. Error text is stored on the action or check, shown in the admin,
logged and posted to Slack; it must arrive there without the secret.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from notifications.slack import SlackClient
from releases.core import outbox
from releases.core.errors import ProviderError
from releases.domain.lifecycle import ReleaseState
from releases.integrations.datadog.client import DatadogClient
from releases.integrations.http import HttpClient
from releases.integrations.posthog.client import PostHogClient
from releases.integrations.sentry.client import SentryClient
from releases.integrations.vercel.client import VercelClient
from releases.models import Action, Project
from releases.workflows import polls
from tests.factories import gating_release, make_project, make_release
from tests.fuzz.leaks import admin_pages, captured_logs, distinctive, leaks, stored_text
from tests.releases.inbound.test_sentry import alert, compact, signature

pytestmark = pytest.mark.django_db
S = ReleaseState
TOKEN = "tok-7c1e5a9b3d-LEAK"


def echoing(status: int, shape: str) -> Callable[[httpx.Request], httpx.Response]:
    """A vendor that quotes the credential it was sent back in its error body."""

    def answer(request: httpx.Request) -> httpx.Response:
        quoted = f"{request.headers.get('authorization', '')} {request.headers.get('dd-api-key', '')}"
        body: Any = {
            "text": f"Unauthorized: {quoted}",
            "vercel": {"error": {"code": "forbidden", "message": f"Not authorized: {quoted}"}},
            "sentry": {"detail": f"Invalid token {quoted}"},
            "datadog": {"errors": [f"Forbidden {quoted}"]},
            "posthog": {"type": "authentication_error", "code": "bad", "detail": f"bad key {quoted}"},
            "slack": {"ok": False, "error": f"invalid_auth {quoted}"},
        }[shape]
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return answer


# Each makes one call through the client under test; the transport decides how it fails.
CLIENTS: dict[str, Callable[[httpx.MockTransport], Any]] = {
    "vercel": lambda t: VercelClient("https://v", TOKEN, transport=t).get_project("prj_x"),
    "sentry": lambda t: SentryClient("https://s", TOKEN, transport=t).release_sessions(
        "acme", "web", "production", ["r"], timezone.now() - timedelta(hours=1), timezone.now()
    ),
    "datadog": lambda t: DatadogClient("https://d", TOKEN, TOKEN + "-app", transport=t).query_points(
        "avg:x{*}", timezone.now() - timedelta(hours=1), timezone.now()
    ),
    "posthog": lambda t: PostHogClient("https://p", TOKEN, transport=t).hogql("1", "SELECT 1"),
    "slack": lambda t: SlackClient("https://sl", TOKEN, transport=t).post_message("#c", "hi"),
    "text": lambda t: HttpClient(
        "https://h", headers={"Authorization": f"Bearer {TOKEN}"}, transport=t
    ).request("GET", "/x"),
}


@pytest.mark.parametrize("status", [401, 403, 500])
@pytest.mark.parametrize("shape", ["text", "vercel", "sentry", "datadog", "posthog", "slack"])
def test_a_provider_error_never_quotes_the_credential(status: int, shape: str) -> None:
    """Every client, every vendor error shape: the message names the problem, not the token."""
    transport = httpx.MockTransport(echoing(status, shape))
    with pytest.raises(ProviderError) as caught:
        CLIENTS[shape](transport)
    assert TOKEN not in str(caught.value) and TOKEN not in caught.value.message
    assert "[redacted]" in str(caught.value) or shape == "slack"


def test_a_long_echo_is_scrubbed_before_it_is_cut() -> None:
    """A cut made first could leave a prefix of the token, which a scrub would no longer find."""
    padding = "x" * 280
    transport = httpx.MockTransport(lambda r: httpx.Response(401, text=padding + r.headers["authorization"]))
    client = HttpClient("https://h", headers={"Authorization": f"Bearer {TOKEN}"}, transport=transport)
    with pytest.raises(ProviderError) as caught:
        client.request("GET", "/x")
    assert TOKEN[:8] not in str(caught.value)


# --- the whole path, against a real HTTP server that echoes ------------------------------------


class Echo:
    """Vercel answers 401 quoting the Authorization header as text, Sentry 500 as JSON, PagerDuty
    400 quoting the event (routing key included); Slack accepts and records every message."""

    def __init__(self) -> None:
        self.slack: list[dict[str, Any]] = []
        echo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer(b"")

            def do_POST(self) -> None:
                self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def answer(self, body: bytes) -> None:
                auth = self.headers.get("Authorization", "")
                if self.path.startswith("/slack/"):
                    echo.slack.append(json.loads(body))
                    self.reply(200, {"ok": True, "channel": "C1", "ts": "1767258971.004200"})
                elif self.path.startswith("/vercel/"):
                    self.reply(401, f"Unauthorized request with {auth}".encode(), "text/plain")
                elif self.path.startswith("/sentry/"):
                    self.reply(500, {"detail": f"token {auth} is not valid here"})
                else:
                    text = body.decode()
                    self.reply(400, {"status": "invalid event", "message": text, "errors": [text]})

            def reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.server.shutdown()


def run_actions(rounds: int = 6) -> None:
    """What the worker would do, in this process: every due action, until none is left."""
    for _ in range(rounds):
        due = list(Action.objects.filter(status__in=("pending", "confirming")).values_list("pk", flat=True))
        if not due:
            return
        Action.objects.filter(pk__in=due).update(next_attempt_at=timezone.now())
        for pk in due:
            outbox.run(pk)


def test_echoed_credentials_reach_no_log_message_admin_page_or_api_answer(
    client: Client, echo: Echo, settings: Any, monkeypatch: pytest.MonkeyPatch, no_broker: list[Any]
) -> None:
    values = distinctive()
    for name, value in values.items():
        setattr(settings, name, value)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", values["PAGERDUTY_ROUTING_KEY"])
    settings.VERCEL_API_URL = f"{echo.url}/vercel"
    settings.SENTRY_API_URL = f"{echo.url}/sentry/api/0"
    settings.SLACK_API_URL = f"{echo.url}/slack/api"
    settings.PAGERDUTY_EVENTS_URL = f"{echo.url}/pagerduty"
    now = timezone.now()
    project = make_project(sentry_project="shop-web", pagerduty_routing_key_env="PAGERDUTY_ROUTING_KEY")
    make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=now - timedelta(days=1))
    live = make_release(
        project, deployment_id="dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q", state=S.PROMOTED, promoted_at=now
    )
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id=live.deployment_id, live_since=now - timedelta(hours=1)
    )
    gating = gating_release(project).analyses.get()

    with captured_logs() as logs:
        # Sentry answers 500 to the gate's poll, quoting the token: the error is kept on the check.
        polls.poll_once(gating.pk, gating.generation)
        # A critical alert: Vercel refuses the rollback (401, quoted), PagerDuty refuses the page
        # (400, quoting the event with its routing key), Slack is told about both.
        body = compact(alert())
        response = client.post(
            "/webhooks/sentry/",
            data=body,
            content_type="application/json",
            HTTP_SENTRY_HOOK_RESOURCE="metric_alert",
            HTTP_SENTRY_HOOK_TIMESTAMP=str(int(timezone.now().timestamp())),
            HTTP_SENTRY_HOOK_SIGNATURE=signature(body, values["SENTRY_WEBHOOK_SECRET"]),
        )
        assert response.status_code == 202, response.content
        run_actions()

    failed = dict(Action.objects.filter(status="failed").values_list("kind", "last_error"))
    assert {"rollback", "pagerduty"} <= failed.keys(), failed
    assert "[redacted]" in failed["rollback"] and "HTTP 401" in failed["rollback"]
    assert gating.checks.exclude(error="").exists()
    assert echo.slack, "Slack was never told"
    assert "HTTP Request: POST" in logs.getvalue()  # httpx's own lines, URLs included, were captured
    texts = {
        "logs": logs.getvalue(),
        "slack": json.dumps(echo.slack),
        **stored_text(),
        **admin_pages(client),  # logs the superuser in, so the API answers below as well
        "api": client.get(f"/api/releases/{live.pk}/").content.decode(),
        "api (gating)": client.get(f"/api/releases/{gating.release_id}/").content.decode(),
    }
    assert live.deployment_id in texts["api"]  # the API did show the release
    assert leaks(values, texts) == []
