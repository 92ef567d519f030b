"""Every transaction that writes a release and may meet mark_live locks the project first.

mark_live takes the project, then its releases. A transaction that took a release's row first
and the project after (explicitly, or through the commit-time check of a row that names the
project) would deadlock against one doing it the other way round.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from releases.core.outbox import Done
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Project
from releases.workflows import promotion
from releases.workflows.canary import moves as ramp_moves
from tests.factories import make_project, make_release, signed
from tests.releases.inbound.test_sentry import alert, post

pytestmark = pytest.mark.django_db
S = ReleaseState
PAYLOADS = Path(__file__).resolve().parents[2] / "payloads" / "vercel"


def locks_in_order(queries: list[dict[str, Any]]) -> list[str]:
    """'project' or 'release' for each statement that locks or writes such a row, in order."""
    order = []
    for query in queries:
        sql = query["sql"]
        if sql.startswith("SELECT") and "FOR UPDATE" in sql:
            locked = re.search(r'FOR UPDATE OF "(\w+)"', sql) or re.search(r'FROM "(\w+)"', sql)
            table = locked.group(1) if locked else ""
        elif sql.startswith(("UPDATE", "INSERT")):
            table = (
                re.search(r'(?:UPDATE|INTO) "(\w+)"', sql) or re.search(r"(?:UPDATE|INTO) (\w+)", sql)
            ).group(1)
        else:
            continue
        if table == "releases_project":
            order.append("project")
        elif table in ("releases_release", "releases_releaseevent"):
            order.append("release")
    return order


def test_a_rollbacks_success_locks_the_project_first() -> None:
    project = make_project()
    target = make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=timezone.now())
    release = make_release(project, state=S.ROLLING_BACK, rollback_target=target.deployment_id)
    action = Action.objects.create(
        release=release, kind="rollback", key="rollback:1", payload={"deployment_id": target.deployment_id}
    )
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        promotion._rolled_back(action, Done(result={}))
    order = locks_in_order(queries.captured_queries)
    assert order[0] == "project" and "release" in order


def test_a_canary_abort_locks_the_project_first() -> None:
    project = make_project()
    target = make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=timezone.now())
    release = make_release(project, state=S.ROLLING_BACK, rollback_target=target.deployment_id)
    action = Action.objects.create(
        release=release, kind="traffic", key="traffic:1", payload={"op": "abort", "stage": 0}
    )
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        ramp_moves._moved(action, Done(result={}))
    order = locks_in_order(queries.captured_queries)
    assert order[0] == "project" and "release" in order


def test_a_promoted_webhook_locks_the_project_first(client: Client) -> None:
    project = make_project()
    make_release(project, state=S.PROMOTED, deployment_id="dpl_old")
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_old")
    event = json.loads((PAYLOADS / "deployment_promoted.json").read_text())
    event["createdAt"] = int(time.time() * 1000)  # as it arrives now: an old one is a replay
    body, signature = signed(event)
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/webhooks/vercel/", data=body, content_type="application/json", **signature)
    assert response.status_code == 202
    order = locks_in_order(queries.captured_queries)
    assert order[0] == "project" and "release" in order


def test_a_critical_alert_locks_the_project_before_rolling_the_live_release_back(client: Client) -> None:
    project = make_project(sentry_project="shop-web")
    make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=timezone.now())
    live = make_release(project, deployment_id="dpl_live", state=S.PROMOTED, promoted_at=timezone.now())
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id=live.deployment_id, live_since=timezone.now() - timedelta(hours=1)
    )
    with CaptureQueriesContext(connection) as queries:
        response = post(client, alert())
    assert response.status_code == 202, response.content
    order = locks_in_order(queries.captured_queries)
    assert order[0] == "project" and "release" in order
