"""The REST API: token auth, filtered lists, details, and the overrides recorded with the user."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, GateCheck, Project, RampCheck, Release, ReleaseEvent
from tests.factories import (
    gating_release,
    make_analysis,
    make_operator,
    make_project,
    make_release,
    make_token,
)

pytestmark = pytest.mark.django_db

S = ReleaseState


@pytest.fixture
def user() -> User:
    return User.objects.create_user("alice")  # token auth only: no password to hash


@pytest.fixture
def api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    return client


@pytest.fixture
def project(user: User) -> Project:
    project = make_project()
    make_operator(user, project)  # alice operates it and may override its releases
    return project


def url(release: Release, verb: str = "") -> str:
    return f"/api/releases/{release.pk}/" + (f"{verb}/" if verb else "")


def row(release: Release) -> Release:
    return Release.objects.get(pk=release.pk)


# --- authentication ---------------------------------------------------------------------------


def test_anonymous_requests_are_refused(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    client = APIClient()

    assert client.get("/api/releases/").status_code in (401, 403)
    assert client.get(url(release)).status_code in (401, 403)
    assert client.post(url(release, "approve")).status_code in (401, 403)
    assert row(release).state == S.GATING


def test_a_wrong_token_is_refused() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    assert client.get("/api/releases/").status_code == 401


def test_a_valid_token_lists_releases(api: APIClient, project: Project) -> None:
    release = make_release(project, state=S.GATING)

    response = api.get("/api/releases/")

    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [release.pk]


def test_drf_create_token_issues_a_token_that_works(user: User, project: Project) -> None:
    out = StringIO()
    call_command("drf_create_token", "alice", stdout=out)

    key = out.getvalue().split("Generated token ", 1)[1].split()[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/releases/").status_code == 200


# --- list and detail --------------------------------------------------------------------------


def test_the_list_filters_by_project_state_and_deployment(
    api: APIClient, project: Project, user: User
) -> None:
    other = make_project(name="shop-api", vercel_project_id="prj_api")
    make_operator(user, other)
    gating = make_release(project, state=S.GATING, deployment_id="dpl_gating")
    held = make_release(project, state=S.HELD, deployment_id="dpl_held")
    elsewhere = make_release(other, state=S.GATING, deployment_id="dpl_elsewhere")

    def ids(query: str) -> set[int]:
        response = api.get(f"/api/releases/?{query}")
        assert response.status_code == 200
        return {r["id"] for r in response.json()["results"]}

    assert ids("") == {gating.pk, held.pk, elsewhere.pk}
    assert ids("project=shop-web") == {gating.pk, held.pk}
    assert ids("state=gating") == {gating.pk, elsewhere.pk}
    assert ids("project=shop-web&state=gating") == {gating.pk}
    assert ids("deployment=dpl_held") == {held.pk}
    assert ids("deployment=dpl_unknown") == set()


def test_the_list_shows_state_figures_and_decision(api: APIClient, project: Project) -> None:
    make_release(
        project,
        state=S.FAILED,
        sessions=800,
        crashed=12,
        crash_free_rate=0.985,
        verdict="fail",
        verdict_rule="seed_fail",
    )

    (item,) = api.get("/api/releases/").json()["results"]

    assert item["project"] == "shop-web"
    assert (item["state"], item["sessions"], item["crashed"]) == ("failed", 800, 12)
    assert (item["crash_free_rate"], item["threshold"]) == (0.985, 0.995)
    assert (item["verdict"], item["verdict_rule"]) == ("fail", "seed_fail")
    assert "checks" not in item


def test_the_detail_includes_checks_events_and_actions(api: APIClient, project: Project) -> None:
    release = gating_release(project)
    GateCheck.objects.create(
        release=release,
        analysis=release.analyses.get(),
        generation=1,
        sessions=120,
        crashed=0,
        outcome="wait",
        rule="waiting",
    )
    api.post(url(release, "approve"))

    body = api.get(url(release)).json()

    assert body["id"] == release.pk
    assert [(c["phase"], c["sessions"], c["rule"]) for c in body["checks"]] == [("gate", 120, "waiting")]
    # The gate's analysis, ended by the approval: with the bar it was judged by.
    (gate,) = body["analyses"]
    assert (gate["kind"], gate["phase"], gate["next_check_at"]) == ("gate", "stopped", None)
    assert gate["policy"]["crash_free_threshold"] == project.crash_free_threshold
    assert [(e["from_state"], e["to_state"]) for e in body["events"]] == [
        ("gating", "passed"),
        ("passed", "promoting"),
    ]
    assert [(a["kind"], a["status"]) for a in body["actions"]] == [
        ("promote", "pending"),
        ("slack", "pending"),
    ]


def test_the_detail_of_a_ramping_release_has_its_stage_and_canary_checks(
    api: APIClient, project: Project
) -> None:
    release = make_release(project, state=S.RAMPING)
    make_analysis(release, "canary", stage=0, phase="passed")
    stage = make_analysis(release, "canary", stage=1)
    RampCheck.objects.create(
        release=release,
        analysis=stage,
        stage=1,
        percent=25,
        confirmation=1,
        ok=True,
        checks=[{"name": "errors", "value": 0.003, "threshold": "<= 0.01", "ok": True}],
    )

    body = api.get(url(release)).json()

    assert body["ramp_stage"] == 1 and body["ramp_paused"] is False
    assert [(c["stage"], c["percent"], c["ok"]) for c in body["ramp_checks"]] == [(1, 25.0, True)]
    assert body["ramp_checks"][0]["checks"][0]["value"] == 0.003


def test_an_unknown_release_is_404(api: APIClient) -> None:
    assert api.get("/api/releases/999999/").status_code == 404
    assert api.post("/api/releases/999999/approve/").status_code == 404


# --- overrides --------------------------------------------------------------------------------


def test_approve_promotes_a_gating_release_and_records_the_user(
    api: APIClient, project: Project, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = gating_release(project)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(release, "approve"), {"note": "hotfix"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "promoting"
    fresh = row(release)
    gate = fresh.analyses.get()
    assert (fresh.state, fresh.verdict, gate.phase, gate.next_check_at) == (
        S.PROMOTING,
        "approved",
        "stopped",
        None,
    )
    assert response.json()["next_poll_at"] is None
    promote = Action.objects.get(release=release, kind=Action.Kind.PROMOTE)
    assert promote.status == Action.Status.PENDING
    assert promote.payload == {"deployment_id": release.deployment_id}
    events = list(ReleaseEvent.objects.filter(release=release))
    assert {e.actor for e in events} == {"user:alice"}
    assert events[0].reason == "approved by alice: hotfix"
    dispatched = {args[0] for name, args, _ in no_broker if name == "releases.run_action"}
    assert promote.pk in dispatched


def test_reject_rolls_back_to_the_known_good_release(api: APIClient, project: Project) -> None:
    good = make_release(project, state=S.PROMOTED, promoted_at=timezone.now() - timedelta(hours=1))
    release = make_release(project, state=S.GATING)

    response = api.post(url(release, "reject"))

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rolling_back"
    fresh = row(release)
    assert (fresh.state, fresh.rollback_target) == (S.ROLLING_BACK, good.deployment_id)
    rollback = Action.objects.get(release=release, kind=Action.Kind.ROLLBACK)
    assert rollback.status == Action.Status.PENDING
    assert rollback.payload["deployment_id"] == good.deployment_id
    assert rollback.payload["target_release_id"] == good.pk
    assert set(ReleaseEvent.objects.filter(release=release).values_list("actor", flat=True)) == {"user:alice"}


def test_reject_without_a_known_good_release_stays_failed_and_says_so_in_slack(
    api: APIClient, project: Project
) -> None:
    rolled_back = make_release(
        project,
        state=S.ROLLED_BACK,
        promoted_at=timezone.now() - timedelta(hours=2),
        rolled_back_at=timezone.now() - timedelta(hours=1),
    )
    release = make_release(project, state=S.GATING)

    response = api.post(url(release, "reject"))

    assert response.status_code == 200, response.content
    assert row(release).state == S.FAILED
    assert not Action.objects.filter(kind=Action.Kind.ROLLBACK).exists()
    slack = Action.objects.get(release=release, kind=Action.Kind.SLACK)
    assert slack.payload["channel"] == "#releases"
    assert "no known-good deployment" in slack.payload["text"]
    assert rolled_back.deployment_id not in slack.payload["text"]


def test_pause_holds_a_gating_release(api: APIClient, project: Project) -> None:
    release = gating_release(project)
    assert api.get(url(release)).json()["next_poll_at"] is not None

    response = api.post(url(release, "pause"), {"note": "checking logs"}, format="json")

    assert response.status_code == 200
    fresh = row(release)
    assert (fresh.state, fresh.analyses.get().next_check_at) == (S.HELD, None)
    assert response.json()["next_poll_at"] is None
    event = ReleaseEvent.objects.get(release=release)
    assert (event.actor, event.reason) == ("user:alice", "paused by alice: checking logs")


def test_resume_restarts_the_gate_with_a_new_generation_and_a_poll(
    api: APIClient, project: Project, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = make_release(project, state=S.HELD, gating_started_at=timezone.now())
    make_analysis(release, phase="inconclusive", generation=4, next_check_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(release, "resume"))

    assert response.status_code == 200, response.content
    fresh = row(release)
    gate = fresh.analyses.get()  # the same gate, carrying on with its own clock
    assert (fresh.state, gate.phase, gate.generation) == (S.GATING, "running", 5)
    assert gate.next_check_at is not None
    assert gate.next_check_at <= timezone.now()  # due: the next dispatch sends its poll
    assert no_broker == []
    assert ReleaseEvent.objects.get(release=release).reason == "resumed by alice"


def test_extend_adds_to_the_wait_of_a_gating_release(api: APIClient, project: Project) -> None:
    release = gating_release(project)

    response = api.post(url(release, "extend"), {"by": "30m"}, format="json")

    assert response.status_code == 200, response.content
    fresh = row(release)
    gate = fresh.analyses.get()
    assert (fresh.state, gate.extra_wait) == (S.GATING, timedelta(minutes=30))
    event = ReleaseEvent.objects.get(release=release)
    assert (event.kind, event.actor) == ("override", "user:alice")
    assert gate.verdict_policy().max_wait == (project.max_wait + timedelta(minutes=30)).total_seconds()


def test_extend_refuses_a_duration_without_a_unit(api: APIClient, project: Project) -> None:
    release = gating_release(project)

    response = api.post(url(release, "extend"), {"by": "30"}, format="json")

    assert response.status_code == 400
    assert "by" in response.json()
    assert release.analyses.get().extra_wait == timedelta(0)


@pytest.mark.parametrize(
    ("verb", "state", "detail"),
    [
        ("approve", S.PROMOTED, "cannot approve a release that is promoted"),
        ("reject", S.CANCELLED, "cannot reject a release that is cancelled"),
        ("pause", S.HELD, "only a gating release can be paused; this one is held"),
        ("resume", S.GATING, "only a held release can be resumed; this one is gating"),
        ("extend", S.ROLLED_BACK, "cannot extend the wait of a release that is rolled_back"),
    ],
)
def test_an_override_in_the_wrong_state_is_a_409_that_changes_nothing(
    api: APIClient, project: Project, verb: str, state: str, detail: str
) -> None:
    release = make_release(project, state=state)
    body = {"by": "30m"} if verb == "extend" else {}

    response = api.post(url(release, verb), body, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": detail}
    assert row(release).state == state
    assert not ReleaseEvent.objects.exists()
    assert not Action.objects.exists()


def test_approve_in_dry_run_records_a_skipped_promote_and_does_not_promote(
    api: APIClient, user: User, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    project = make_project(dry_run=True)
    make_operator(user, project)
    release = make_release(project, state=S.GATING)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(release, "approve"))

    assert response.status_code == 200, response.content
    assert row(release).state == S.PASSED
    assert not ReleaseEvent.objects.filter(to_state=S.PROMOTING).exists()
    promote = Action.objects.get(release=release, kind=Action.Kind.PROMOTE)
    assert promote.status == Action.Status.SKIPPED
    assert "dry run" in promote.result["skipped"]
    slack = Action.objects.get(release=release, kind=Action.Kind.SLACK)
    assert slack.payload["text"].split(" ", 1)[1].startswith("[dry run]")
    assert promote.pk not in {args[0] for _, args, _ in no_broker}


# --- schema -----------------------------------------------------------------------------------


def test_the_openapi_schema_lists_the_release_paths(api: APIClient) -> None:
    response = api.get("/api/schema/?format=json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/releases/",
        "/api/releases/{id}/",
        "/api/releases/{id}/approve/",
        "/api/releases/{id}/reject/",
        "/api/releases/{id}/pause/",
        "/api/releases/{id}/resume/",
        "/api/releases/{id}/extend/",
    ):
        assert path in schema["paths"], path


# --- who may see and move what ---------------------------------------------------------------


def token_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    return client


def test_a_login_that_operates_no_project_sees_nothing_and_moves_nothing(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    bob = token_for(User.objects.create_user("bob"))

    assert bob.get("/api/releases/").json()["results"] == []
    assert bob.get(url(release)).status_code == 404
    assert bob.post(url(release, "approve"), {"note": "ship it"}).status_code == 404
    assert row(release).state == S.GATING and not Action.objects.exists()


def test_an_operator_without_the_override_permission_may_look_but_not_move(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    carol = User.objects.create_user("carol")
    make_operator(carol, project, override=False)
    client = token_for(carol)

    assert client.get(url(release)).status_code == 200
    refused = client.post(url(release, "approve"), {"note": "ship it"})
    extend = client.post(url(release, "extend"), {"by": "30m"})

    assert refused.status_code == extend.status_code == 403
    assert "releases.override_release" in refused.json()["detail"]
    assert row(release).state == S.GATING and not Action.objects.exists()


def test_each_user_sees_only_the_projects_they_operate(api: APIClient, project: Project) -> None:
    other = make_project(name="shop-api", vercel_project_id="prj_api")
    mine, theirs = make_release(project, state=S.GATING), make_release(other, state=S.GATING)

    listed = {r["id"] for r in api.get("/api/releases/").json()["results"]}

    assert listed == {mine.pk}
    assert api.get(url(theirs)).status_code == 404
    assert api.post(url(theirs, "reject"), {"note": "no"}).status_code == 404


def test_a_superuser_sees_every_project(project: Project) -> None:
    other = make_project(name="shop-api", vercel_project_id="prj_api")
    releases = {make_release(project).pk, make_release(other).pk}
    root = token_for(User.objects.create_superuser("root", email="root@example.com", password=None))

    assert {r["id"] for r in root.get("/api/releases/").json()["results"]} == releases


def test_overrides_are_throttled_per_user(
    api: APIClient, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releases.ops.api import OverrideThrottle

    monkeypatch.setattr(OverrideThrottle, "THROTTLE_RATES", {"override": "2/min"})
    release = make_release(project, state=S.PROMOTED)

    codes = [api.post(url(release, "approve"), {"note": "again"}).status_code for _ in range(4)]

    assert codes == [409, 409, 429, 429]
