"""In-process fakes of Vercel, Sentry, Slack and PagerDuty behind httpx.MockTransport, for unit tests.

They follow docs/vendor-apis.md closely enough for the code paths under test; the end-to-end tests
use the real simulator over HTTP instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from notifications import clients as notification_clients
from notifications.pagerduty import PagerDutyClient
from notifications.slack import SlackClient
from releases.integrations import clients
from releases.integrations.sentry.client import SentryClient
from releases.integrations.vercel.client import VercelClient


@dataclass
class FakeVercel:
    production: str = "dpl_old"
    job: dict[str, Any] | None = None
    finish_jobs: bool = True  # alias jobs succeed as soon as they are read
    fail_next: list[httpx.Response] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append((request.method, path))
        if request.method == "POST" and self.fail_next:
            return self.fail_next.pop(0)
        if request.method == "POST" and ("/promote/" in path or "/rollback/" in path):
            kind = "promote" if "/promote/" in path else "rollback"
            target = path.rsplit("/", 1)[-1]
            self.job = {
                "fromDeploymentId": self.production,
                "toDeploymentId": target,
                "jobStatus": "pending",
                "requestedAt": int(time.time() * 1000),
                "type": kind,
            }
            return httpx.Response(201 if kind == "rollback" else 202)
        if request.method == "GET" and path.startswith("/v9/projects/"):
            answer = httpx.Response(
                200,
                json={
                    "id": "prj",
                    "lastAliasRequest": dict(self.job or {}) or None,
                    "targets": {"production": {"id": self.production}},
                },
            )
            self._advance()  # after answering: a job moves on between two reads, as Vercel's does
            return answer
        if request.method == "GET" and path == "/v4/aliases":
            return httpx.Response(
                200,
                json={
                    "aliases": [
                        {
                            "uid": "a1",
                            "alias": "shop.example.com",
                            "deploymentId": self.production,
                            "projectId": "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7",
                            "created": "2026-01-01T00:00:00.000Z",
                        }
                    ],
                    "pagination": {"count": 1, "next": None, "prev": None},
                },
            )
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "not found"}})

    def _advance(self) -> None:
        if not self.job or not self.finish_jobs:
            return
        steps = {"pending": "in-progress", "in-progress": "succeeded"}
        self.job["jobStatus"] = steps.get(self.job["jobStatus"], self.job["jobStatus"])
        if self.job["jobStatus"] == "succeeded":
            self.production = self.job["toDeploymentId"]

    def posts(self) -> list[str]:
        return [path for method, path in self.calls if method == "POST"]


@dataclass
class FakeSentry:
    """Sessions per release: ``totals[release] = (sessions, crashed)``; ``errors`` answered first."""

    totals: dict[str, tuple[int, int]] = field(default_factory=dict)
    errors: list[httpx.Response] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    error_events: dict[str, int] = field(default_factory=dict)  # per release, for /events/

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.errors:
            return self.errors.pop(0)
        if request.url.path.endswith("/events/"):
            query = request.url.params.get("query", "")
            count = sum(n for release, n in self.error_events.items() if f'"{release}"' in query)
            return httpx.Response(
                200,
                json={"data": [{"count()": count}], "meta": {"fields": {"count()": "integer"}, "units": {}}},
            )
        groups = []
        for release, (sessions, crashed) in self.totals.items():
            if release not in request.url.params.get("query", ""):
                continue
            groups.append(
                {
                    "by": {"release": release},
                    "totals": {
                        "sum(session)": sessions,
                        "crash_rate(session)": crashed / sessions if sessions else None,
                    },
                }
            )
        return httpx.Response(
            200,
            json={
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00Z",
                "intervals": ["2026-01-01T00:00:00Z"],
                "groups": groups,
                "query": request.url.params.get("query", ""),
            },
        )


@dataclass
class FakeSlack:
    answers: list[httpx.Response | Exception] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        body = json.loads(request.content)
        self.posted.append(body)
        ts = f"{time.time():.6f}"
        return httpx.Response(200, json={"ok": True, "channel": "C0RELEASES", "ts": ts})


@dataclass
class FakePagerDuty:
    """Events API v2 (docs/vendor-apis.md §4.1): every event received is kept; ``answers`` go first."""

    answers: list[httpx.Response] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.events.append(body)
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(
            202, json={"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")}
        )


@dataclass
class Fakes:
    vercel: FakeVercel
    sentry: FakeSentry
    slack: FakeSlack
    pagerduty: FakePagerDuty = field(default_factory=FakePagerDuty)


def install(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    fakes = Fakes(FakeVercel(), FakeSentry(), FakeSlack())
    monkeypatch.setattr(
        clients,
        "vercel",
        lambda project: VercelClient(
            "https://api.vercel.test",
            "t",
            team_id=project.vercel_team_id or None,
            transport=httpx.MockTransport(fakes.vercel),
        ),
    )
    monkeypatch.setattr(
        clients,
        "sentry",
        lambda timeout=None: SentryClient(
            "https://sentry.test", "t", transport=httpx.MockTransport(fakes.sentry)
        ),
    )
    monkeypatch.setattr(
        notification_clients,
        "slack",
        lambda: SlackClient("https://slack.test/api", "xoxb-t", transport=httpx.MockTransport(fakes.slack)),
    )
    monkeypatch.setattr(
        notification_clients,
        "pagerduty",
        lambda: PagerDutyClient(
            "https://events.pagerduty.test", transport=httpx.MockTransport(fakes.pagerduty)
        ),
    )
    return fakes
