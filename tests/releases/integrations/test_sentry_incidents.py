"""The Sentry client's open-incidents list (docs/vendor-apis.md §3.6), against httpx.MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from releases.core.errors import ProviderError
from releases.integrations.sentry.incidents import CRITICAL, WARNING
from tests.http import Vendor
from tests.releases.integrations.test_sentry import sentry

CRASH_RATE = "percentage(sessions_crashed, sessions) AS _crash_rate_alert_aggregate"


def incident(ident: str, status: int = CRITICAL, aggregate: str = CRASH_RATE, **rule: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "identifier": f"5{ident}",
        "organizationId": "1203",
        "projects": ["shop-web"],
        "status": status,
        "statusMethod": 3,
        "type": 2,
        "title": "Crash-free sessions below 99.5%",
        "dateStarted": "2026-01-01T10:52:00.000000Z",
        "dateDetected": "2026-01-01T10:53:00.000000Z",
        "dateCreated": "2026-01-01T10:53:02.000000Z",
        "dateClosed": None,
        "alertRule": {
            "id": "341",
            "name": "Crash-free sessions below 99.5%",
            "aggregate": aggregate,
            "query": "",
            "environment": "production",
            **rule,
        },
    }


def test_it_asks_for_open_incidents_of_the_project_ids_and_follows_the_cursor() -> None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if request.url.params.get("cursor") == "100:1:0":
            return httpx.Response(200, json=[incident("813", WARNING)])
        link = (
            '<https://sentry.test/x?cursor=100:0:1>; rel="previous"; results="false"; cursor="100:0:1", '
            '<https://sentry.test/x?cursor=100:1:0>; rel="next"; results="true"; cursor="100:1:0"'
        )
        return httpx.Response(200, json=[incident("812")], headers={"Link": link})

    found = sentry(Vendor(answer, answer)).open_incidents("acme", ["4507", "4508"])
    assert [(i.id, i.action) for i in found] == [("812", "critical"), ("813", "warning")]
    assert asked[0].url.path == "/api/0/organizations/acme/incidents/"
    assert asked[0].url.params.get_list("project") == ["4507", "4508"]
    assert asked[0].url.params["status"] == "open"
    assert found[0].environment == "production" and found[0].started_at is not None
    assert found[0].started_at.isoformat() == "2026-01-01T10:52:00+00:00"


@pytest.mark.parametrize(
    ("aggregate", "crashes"),
    [
        (CRASH_RATE, True),
        ("percentage(users_crashed, users) AS _crash_rate_alert_aggregate", True),
        ("crash_free_rate(session)", True),
        ("p95(transaction.duration)", False),
        ("count()", False),
    ],
)
def test_only_rules_that_measure_crashes_count(aggregate: str, crashes: bool) -> None:
    found = sentry(Vendor(lambda _: httpx.Response(200, json=[incident("812", aggregate=aggregate)])))
    assert found.open_incidents("acme", ["4507"])[0].measures_crashes is crashes


def test_a_closed_or_plain_open_status_is_no_action() -> None:
    answer = [incident("1", status=2), incident("2", status=1)]
    found = sentry(Vendor(lambda _: httpx.Response(200, json=answer))).open_incidents("acme", ["4507"])
    assert [i.action for i in found] == ["", ""]


@pytest.mark.parametrize(
    "body",
    [
        {"detail": "not a list"},
        [{"id": "812", "status": "critical", "projects": ["shop-web"]}],
        [{"id": "812", "status": 20, "projects": "shop-web"}],
        [{"status": 20, "projects": ["shop-web"]}],
    ],
)
def test_an_answer_of_another_shape_is_a_provider_error(body: Any) -> None:
    client = sentry(Vendor(lambda _: httpx.Response(200, json=body)))
    with pytest.raises(ProviderError):
        client.open_incidents("acme", ["4507"])


def test_a_refusal_is_a_permanent_provider_error() -> None:
    client = sentry(Vendor(lambda _: httpx.Response(403, json={"detail": "You do not have permission"})))
    with pytest.raises(ProviderError) as raised:
        client.open_incidents("acme", ["4507"])
    assert raised.value.permanent and "permission" in raised.value.message
