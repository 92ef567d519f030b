"""The simulator, driven by the vendors' official clients (pinned in requirements-dev.txt and
tests/clients/vercel_sdk/package-lock.json).

A client that cannot parse an answer fails the test: slack_sdk raises on a body that is not a
Slack answer, datadog-api-client marks a model it could not deserialize ``_unparsed`` (and raises
on a wrong type), pagerduty raises on an Events API answer without its ``dedup_key``, and
@vercel/sdk validates every answer against its schema (run through Node's test runner; see
vercel_sdk/vercel_sdk.test.mjs). Each test also reads back the fields the client hands to its
caller, since those are what an integration built on the client would use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pagerduty
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ForbiddenException
from datadog_api_client.v1.api.metrics_api import MetricsApi
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.clients.conftest import DD_API_KEY, DD_APP_KEY, SLACK_TOKEN, VERCEL_TOKEN
from tests.simulator.conftest import Simulator

REPO = Path(__file__).resolve().parents[2]
VERCEL_SDK = Path(__file__).resolve().parent / "vercel_sdk"
NPM_CACHE = REPO / ".cache" / "npm"  # gitignored; kept between runs so `npm ci` stays offline
NPM_CI_FLAGS = ("--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error")
ROUTING_KEY = "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73"  # 32 characters, as PagerDuty requires


@pytest.fixture(autouse=True)
def _no_proxy_for_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours proxy variables; the simulator is on the loopback interface.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _fault(control: httpx.Client, **fault: Any) -> None:
    response = control.post("/_sim/faults", json=fault)
    assert response.status_code in (200, 201), response.text


def _requests(control: httpx.Client, service: str) -> list[dict[str, Any]]:
    return control.get("/_sim/requests", params={"service": service}).json()["requests"]


# --- Slack: slack_sdk.WebClient ----------------------------------------------------------------


def _slack(sim: Simulator, **kwargs: Any) -> WebClient:
    return WebClient(token=SLACK_TOKEN, base_url=f"{sim.url}/slack/api/", timeout=10, **kwargs)


def test_slack_sdk_posts_and_updates_a_message(sim: Simulator, control: httpx.Client) -> None:
    client = _slack(sim)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*web@1.4.2* promoted to 25%"}}]

    posted = client.chat_postMessage(channel="#releases", text="web@1.4.2 promoted", blocks=blocks)

    assert posted.status_code == 200
    assert posted["ok"] is True
    assert posted["channel"].startswith("C")
    assert posted["message"]["ts"] == posted["ts"]
    assert posted["message"]["blocks"] == blocks
    assert "warning" not in posted.data  # the SDK sent JSON with a charset, as Slack asks

    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="web@1.4.2 rolled back")

    assert (updated["channel"], updated["ts"], updated["text"]) == (
        posted["channel"],
        posted["ts"],
        "web@1.4.2 rolled back",
    )
    [message] = control.get("/_sim/slack/messages").json()["messages"]
    assert (message["text"], message["edited"]) == ("web@1.4.2 rolled back", True)


def test_slack_sdk_raises_the_error_slack_names(sim: Simulator, control: httpx.Client) -> None:
    with pytest.raises(SlackApiError) as raised:
        _slack(sim).chat_postMessage(channel="#does-not-exist", text="hi")
    assert raised.value.response.status_code == 200  # Slack's logical errors are HTTP 200
    assert raised.value.response["error"] == "channel_not_found"


def test_slack_sdk_retries_a_429_after_its_retry_after(sim: Simulator, control: httpx.Client) -> None:
    _fault(control, service="slack", kind="429", count=1, retry_after=0)
    client = _slack(sim, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    posted = client.chat_postMessage(channel="#releases", text="after the limit")

    assert posted["ok"] is True
    assert [r["status"] for r in _requests(control, "slack")] == [429, 200]


# --- Datadog: datadog-api-client, v1 MetricsApi ------------------------------------------------


def _datadog(sim: Simulator, *, app_key: str = DD_APP_KEY, retry: bool = False) -> ApiClient:
    config = Configuration(host=f"{sim.url}/datadog", enable_retry=retry)
    config.api_key["apiKeyAuth"] = DD_API_KEY
    config.api_key["appKeyAuth"] = app_key
    return ApiClient(config)


def _hour_ago() -> int:
    return (int(time.time()) // 60) * 60 - 3600


def test_datadog_client_parses_a_time_series(sim: Simulator, control: httpx.Client) -> None:
    start = _hour_ago()
    series = {"tag": "deployment_id:dpl_a", "value": 0.02, "start": start}
    assert control.post("/_sim/datadog/series", json=series).status_code == 201
    query = "sum:next.server.request.error{deployment_id:dpl_a,env:production}.as_count()"

    with _datadog(sim) as api:
        answer = MetricsApi(api).query_metrics(_from=start + 1, to=start + 600, query=query)

    assert isinstance(answer, MetricsQueryResponse)
    assert answer._unparsed is False  # every nested model deserialized
    assert (answer.status, answer.res_type, answer.query) == ("ok", "time_series", query)
    [found] = answer.series
    assert found._unparsed is False
    assert found.metric == "next.server.request.error"
    assert found.length == len(found.pointlist) == 10
    assert [point.value for point in found.pointlist][:2] == [
        [float((start + 60) * 1000), 0.02],
        [float((start + 120) * 1000), 0.02],
    ]


def test_datadog_client_parses_an_empty_answer(sim: Simulator, control: httpx.Client) -> None:
    start = _hour_ago()
    with _datadog(sim) as api:
        answer = MetricsApi(api).query_metrics(_from=start, to=start + 600, query="avg:x{deployment_id:none}")
    assert answer._unparsed is False
    assert (answer.status, answer.series) == ("ok", [])


def test_datadog_client_raises_forbidden_on_a_wrong_application_key(
    sim: Simulator, control: httpx.Client
) -> None:
    start = _hour_ago()
    with _datadog(sim, app_key="not-the-key") as api, pytest.raises(ForbiddenException) as raised:
        MetricsApi(api).query_metrics(_from=start, to=start + 60, query="avg:x{a:b}")
    assert raised.value.status == 403
    assert raised.value.body == {"errors": ["Forbidden"]}  # the client decoded Datadog's error body


def test_datadog_client_waits_out_a_429_by_its_reset_header(sim: Simulator, control: httpx.Client) -> None:
    _fault(control, service="datadog", kind="429", count=1, reset_after=0)
    start = _hour_ago()
    with _datadog(sim, retry=True) as api:
        answer = MetricsApi(api).query_metrics(_from=start, to=start + 60, query="avg:x{a:b}")
    assert answer.status == "ok"
    assert [r["status"] for r in _requests(control, "datadog")] == [429, 200]


# --- PagerDuty: pagerduty.EventsApiV2Client ----------------------------------------------------


class _ToSimulator(httpx2.BaseTransport):
    """The client insists on an https:// base URL; this sends its requests, unchanged but for
    the origin, to the simulator's plain-HTTP /pagerduty instead."""

    def __init__(self, base: str) -> None:
        self.base = httpx2.URL(base)
        self.inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(
            scheme=self.base.scheme,
            host=self.base.host,
            port=self.base.port,
            path=self.base.path.rstrip("/") + request.url.path,
        )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def events(sim: Simulator) -> Iterator[pagerduty.EventsApiV2Client]:
    client = pagerduty.EventsApiV2Client(ROUTING_KEY, transport=_ToSimulator(f"{sim.url}/pagerduty"))
    yield client
    client.close()


def test_pagerduty_client_triggers_and_resolves_an_alert(
    events: pagerduty.EventsApiV2Client, control: httpx.Client
) -> None:
    dedup_key = events.trigger(
        "Release gate rolled back shop-web",
        "gatekeeper.acme.internal",
        dedup_key="release-gate/shop-web/dpl_a",
        severity="critical",
        custom_details={"deployment_id": "dpl_a"},
        links=[{"href": "https://acme.sentry.io/releases/web@1.4.2/", "text": "Sentry release"}],
    )
    assert dedup_key == "release-gate/shop-web/dpl_a"
    generated = events.trigger("Another", "gatekeeper.acme.internal")
    assert generated  # PagerDuty makes a key up when the trigger has none

    assert events.resolve(dedup_key) == dedup_key

    incidents = control.get("/_sim/pagerduty/incidents").json()["incidents"]
    assert {i["dedup_key"]: i["status"] for i in incidents} == {dedup_key: "resolved", generated: "triggered"}


def test_pagerduty_client_sends_a_change_event(
    events: pagerduty.EventsApiV2Client, control: httpx.Client
) -> None:
    # The client's own default timestamp is broken in this release (datetime.timezone on the
    # class), so the test passes one, as a caller of submit() has to.
    events.submit(
        "shop-web dpl_a promoted",
        source="gatekeeper",
        custom_details={"deployment_id": "dpl_a"},
        timestamp="2026-01-01T10:56:10.000+0000",
    )
    [change] = control.get("/_sim/pagerduty/incidents").json()["change_events"]
    assert change["payload"]["summary"] == "shop-web dpl_a promoted"


def test_pagerduty_client_raises_on_an_invalid_event(
    events: pagerduty.EventsApiV2Client, control: httpx.Client
) -> None:
    with pytest.raises(pagerduty.HttpError) as raised:
        events.trigger("Bad severity", "gatekeeper", severity="fatal")
    response = raised.value.response
    assert response is not None
    assert response.status_code == 400
    assert response.json()["status"] == "invalid event"


# --- Vercel: @vercel/sdk through Node's test runner --------------------------------------------


def _npm_ci(npm: str) -> None:
    """Install the pinned SDK once per lockfile: the stamp in node_modules says which lockfile
    it came from, so a run with nothing changed installs nothing."""
    lock = (VERCEL_SDK / "package-lock.json").read_bytes()
    stamp = VERCEL_SDK / "node_modules" / ".gatekeeper-lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    done = subprocess.run(
        [npm, "ci", *NPM_CI_FLAGS, "--cache", str(NPM_CACHE)],
        cwd=VERCEL_SDK,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "npm_config_update_notifier": "false"},
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    stamp.write_text(digest)


def test_vercel_sdk_parses_every_answer(sim: Simulator, control: httpx.Client) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run @vercel/sdk")
    _npm_ci(npm)
    run = subprocess.run(
        [node, "--test", "--test-reporter=spec", "vercel_sdk.test.mjs"],
        cwd=VERCEL_SDK,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SIM_URL": sim.url, "VERCEL_TOKEN": VERCEL_TOKEN, "NO_COLOR": "1"},
        check=False,
    )
    assert run.returncode == 0, f"@vercel/sdk rejected the simulator's answers:\n{run.stdout}\n{run.stderr}"
