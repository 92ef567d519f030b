"""The admin: releases with their history, the overrides recorded with the user, and no secrets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import SUCCESS, WARNING
from django.test import Client
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, GateCheck, Project, RampCheck, Release, ReleaseEvent
from tests.factories import gating_release, make_analysis, make_project, make_release

pytestmark = pytest.mark.django_db

S = ReleaseState
CHANGELIST = "/admin/releases/release/"


@pytest.fixture
def staff(client: Client) -> Client:
    # No password: logging in through the form is Django's business, not ours.
    user = User.objects.create_superuser("carol", email="carol@example.com", password=None)
    client.force_login(user)
    return client


@pytest.fixture
def project() -> Project:
    return make_project()


def act(client: Client, action: str, *releases: Release, note: str = "checked by hand") -> Any:
    """An override confirmed on its confirmation page, with a note."""
    return client.post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": [r.pk for r in releases],
            "index": 0,
            "confirm": "yes",
            "note": note,
        },
        follow=True,
    )


def messages_of(response: Any) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


def test_the_admin_requires_login(client: Client, project: Project) -> None:
    release = make_release(project, state=S.GATING)

    for path in (CHANGELIST, f"{CHANGELIST}{release.pk}/change/", "/admin/releases/project/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/admin/login/"), path


def test_a_superuser_sees_releases_with_state_project_and_crash_free(staff: Client, project: Project) -> None:
    make_release(project, state=S.GATING, version="v-gating-1", sessions=750, crash_free_rate=0.996)

    response = staff.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<td class="field-version_short">v-gating-1</td>' in html
    assert '<td class="field-project nowrap">shop-web</td>' in html
    assert '<td class="field-state">Gating</td>' in html
    assert '<td class="field-crash_free">99.60% / 99.50%</td>' in html
    assert '<td class="field-sessions">750</td>' in html


def test_the_changelist_filters_by_state(staff: Client, project: Project) -> None:
    make_release(project, state=S.GATING, version="v-gating-1")
    make_release(project, state=S.HELD, version="v-held-1")

    html = staff.get(CHANGELIST, {"state__exact": "held"}).content.decode()

    assert '<td class="field-version_short">v-held-1</td>' in html
    assert "v-gating-1" not in html
    assert '<td class="field-state">Gating</td>' not in html


def test_the_change_page_shows_checks_events_and_actions(staff: Client, project: Project) -> None:
    release = gating_release(project, version="v-detail-1")
    GateCheck.objects.create(
        release=release,
        analysis=release.analyses.get(),
        generation=1,
        sessions=321,
        crashed=1,
        crash_free_rate=0.9969,
        outcome="wait",
        rule="waiting",
        reasons=["321 of 500 sessions so far"],
    )
    act(staff, "pause", release)

    response = staff.get(f"{CHANGELIST}{release.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "321 of 500 sessions so far" in html  # the check
    assert "99.69%" in html
    assert "paused by carol: checked by hand" in html  # the event, with its note
    assert "<td>carol</td>" in html  # who
    assert "Sentry release" in html  # the links
    assert "Held:" in html


def test_a_ramping_release_shows_its_stages_checks_and_traffic_over_time(
    staff: Client, project: Project
) -> None:
    policy = {"stages": [{"percent": 5, "hold": 0}, {"percent": 25, "hold": 0}, {"percent": 100, "hold": 0}]}
    release = make_release(project, state=S.RAMPING)
    make_analysis(release, "canary", stage=0, policy=policy, phase="passed")
    stage = make_analysis(release, "canary", stage=1, policy=policy)
    RampCheck.objects.create(
        release=release,
        analysis=stage,
        stage=1,
        percent=25,
        confirmation=1,
        ok=False,
        checks=[
            {
                "name": "errors",
                "ok": False,
                "value": 0.0421,
                "baseline": 0.004,
                "threshold": "<= max(2 x 0.004, 0) = 0.008",
            }
        ],
        reasons=["errors: 0.0421 is more than 2 x the previous deployment's 0.004"],
    )
    for percent in (5, 25):
        ReleaseEvent.objects.create(
            release=release, kind="traffic", actor="gatekeeper", reason="moved", data={"percent": percent}
        )

    html = staff.get(f"{CHANGELIST}{release.pk}/change/").content.decode()

    assert "5% → [25%] → 100%" in html  # the stages, the current one marked
    assert "FAIL errors: 0.0421 (previous 0.004)" in html
    assert "more than 2 x the previous" in html
    assert html.count("<td>Traffic</td>") == 2  # the traffic moves, in the history


def test_the_change_page_lists_the_actions(staff: Client, project: Project) -> None:
    release = make_release(project, state=S.GATING)
    act(staff, "approve_promote_now", release)

    html = staff.get(f"{CHANGELIST}{release.pk}/change/").content.decode()

    assert "<td>Promote</td><td>Pending</td><td>0 of 8</td>" in html
    assert "<td>Slack</td>" in html


def test_approve_from_the_admin_promotes_and_records_the_user(staff: Client, project: Project) -> None:
    release = make_release(project, state=S.GATING)

    response = act(staff, "approve_promote_now", release)

    assert response.status_code == 200
    assert Release.objects.get(pk=release.pk).state == S.PROMOTING
    assert Action.objects.filter(release=release, kind=Action.Kind.PROMOTE).exists()
    actors = set(ReleaseEvent.objects.filter(release=release).values_list("actor", flat=True))
    assert actors == {"user:carol"}
    recorded = "approve (promote now; a canary: advance now) recorded"
    assert any(recorded in text for _, text in messages_of(response))


def test_reject_from_the_admin_rolls_back_and_records_the_user(staff: Client, project: Project) -> None:
    good = make_release(project, state=S.PROMOTED, promoted_at=timezone.now() - timedelta(hours=1))
    release = make_release(project, state=S.GATING)

    act(staff, "reject_roll_back_now", release)

    fresh = Release.objects.get(pk=release.pk)
    assert (fresh.state, fresh.rollback_target) == (S.ROLLING_BACK, good.deployment_id)
    event = ReleaseEvent.objects.filter(release=release).last()
    assert (event.to_state, event.actor) == (S.ROLLING_BACK, "user:carol")


def test_pause_and_resume_from_the_admin_record_the_user(
    staff: Client, project: Project, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = gating_release(project)
    Analysis.objects.filter(release=release).update(generation=2)

    act(staff, "pause", release)
    assert Release.objects.get(pk=release.pk).state == S.HELD
    with django_capture_on_commit_callbacks(execute=True):
        act(staff, "resume", release)

    fresh = Release.objects.get(pk=release.pk)
    gate = fresh.analyses.get()  # the same gate, carrying on
    assert (fresh.state, gate.phase, gate.generation) == (S.GATING, "running", 3)
    events = list(ReleaseEvent.objects.filter(release=release).values_list("to_state", "actor"))
    assert events == [(S.HELD, "user:carol"), (S.GATING, "user:carol")]
    assert ReleaseEvent.objects.filter(release=release, reason="resumed by carol: checked by hand").exists()
    assert gate.next_check_at <= timezone.now() and no_broker == []  # due; dispatch_due sends it


def test_extend_from_the_admin_adds_thirty_minutes_and_records_the_user(
    staff: Client, project: Project
) -> None:
    release = gating_release(project)

    act(staff, "extend_wait_by_30_minutes", release)

    assert release.analyses.get().extra_wait == timedelta(minutes=30)
    event = ReleaseEvent.objects.get(release=release)
    assert (event.kind, event.actor) == (ReleaseEvent.Kind.OVERRIDE, "user:carol")


def test_a_refused_override_warns_and_changes_nothing(staff: Client, project: Project) -> None:
    release = make_release(project, state=S.PROMOTED, promoted_at=timezone.now())

    response = act(staff, "pause", release)

    assert (WARNING, f"{release}: only a gating release can be paused; this one is promoted") in messages_of(
        response
    )
    assert Release.objects.get(pk=release.pk).state == S.PROMOTED
    assert not ReleaseEvent.objects.exists()
    assert not Action.objects.exists()


def test_one_refusal_does_not_stop_the_other_selected_releases(staff: Client, project: Project) -> None:
    gating = make_release(project, state=S.GATING)
    held = make_release(project, state=S.HELD)

    response = act(staff, "pause", gating, held)

    assert Release.objects.get(pk=gating.pk).state == S.HELD
    assert Release.objects.get(pk=held.pk).state == S.HELD
    levels = sorted(level for level, _ in messages_of(response))
    assert levels == sorted([WARNING, SUCCESS])


def test_releases_cannot_be_added_or_deleted_from_the_admin(staff: Client, project: Project) -> None:
    release = make_release(project, state=S.GATING)

    assert staff.get(f"{CHANGELIST}add/").status_code == 403
    assert staff.get(f"{CHANGELIST}{release.pk}/delete/").status_code == 403


def test_no_secret_appears_in_the_project_admin(
    staff: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "VERCEL_TOKEN": "vercel-tok-7f3a9c1e-DO-NOT-SHOW",
        "VERCEL_WEBHOOK_SECRET": "vercel-hook-2b8d4e6f-DO-NOT-SHOW",
        "SENTRY_AUTH_TOKEN": "sntrys-5c1e9a7b-DO-NOT-SHOW",
        "SENTRY_WEBHOOK_SECRET": "sentry-hook-8e2f4a6c-DO-NOT-SHOW",
        "SLACK_BOT_TOKEN": "xoxb-3d5f7a9b-DO-NOT-SHOW",
        "DD_API_KEY": "dd-api-1a3c5e7f-DO-NOT-SHOW",
        "DD_APP_KEY": "dd-app-9b7d5f3a-DO-NOT-SHOW",
        "POSTHOG_API_KEY": "phx-4e6a8c0b-DO-NOT-SHOW",
    }
    for name, value in secrets.items():
        setattr(settings, name, value)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "pd-routing-6f8b0d2e-DO-NOT-SHOW")
    project = make_project(pagerduty_routing_key_env="PAGERDUTY_ROUTING_KEY")
    make_release(project, state=S.GATING)

    pages = [
        staff.get("/admin/releases/project/"),
        staff.get(f"/admin/releases/project/{project.pk}/change/"),
        staff.get(CHANGELIST),
    ]

    for response in pages:
        assert response.status_code == 200
        html = response.content.decode()
        assert "DO-NOT-SHOW" not in html
    assert "PAGERDUTY_ROUTING_KEY" in pages[1].content.decode()  # the variable's name, not its value


# --- who may see and move what ---------------------------------------------------------------


def staff_member(client: Client, name: str, *perms: str) -> User:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user(name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    client.force_login(user)
    return user


def test_a_staff_member_who_may_only_view_cannot_pause_a_gate(client: Client, project: Project) -> None:
    from tests.factories import make_operator

    release = make_release(project, state=S.GATING)
    dave = staff_member(client, "dave", "view_release", "view_project")
    make_operator(dave, project, override=False)

    page = client.get(CHANGELIST)
    answer = act(client, "pause", release)

    assert page.status_code == 200 and b'value="pause"' not in page.content
    assert answer.status_code == 200
    assert Release.objects.get(pk=release.pk).state == S.GATING
    assert not ReleaseEvent.objects.filter(release=release, actor="user:dave").exists()


def test_an_operator_with_the_permission_pauses_and_is_recorded(client: Client, project: Project) -> None:
    from tests.factories import make_operator

    release = make_release(project, state=S.GATING)
    make_analysis(release, "gate")
    erin = staff_member(client, "erin", "view_release", "view_project")
    make_operator(erin, project)

    act(client, "pause", release)

    assert ReleaseEvent.objects.filter(release=release, actor="user:erin").exists()


def test_staff_see_only_the_releases_of_projects_they_operate(client: Client, project: Project) -> None:
    from tests.factories import make_operator

    other = make_project(name="shop-api", vercel_project_id="prj_api")
    mine, theirs = make_release(project, version="mine-1"), make_release(other, version="theirs-1")
    frank = staff_member(client, "frank", "view_release", "view_project", "change_project")
    make_operator(frank, project)

    listed = client.get(CHANGELIST).content

    assert b"mine-1" in listed and b"theirs-1" not in listed
    assert client.get(f"{CHANGELIST}{theirs.pk}/change/").status_code == 302  # "does not exist"
    assert client.get(f"{CHANGELIST}{mine.pk}/change/").status_code == 200
    projects = client.get("/admin/releases/project/").content
    assert b"shop-api" not in projects
    # Who operates a project is a superuser's to change, not an operator's.
    form = client.get(f"/admin/releases/project/{project.pk}/change/").context["adminform"].form
    assert "operators" not in form.fields


def test_the_admin_login_locks_out_after_five_wrong_passwords(client: Client) -> None:
    User.objects.create_superuser("grace", email="grace@example.com", password="right-horse-battery")

    wrong = [
        client.post("/admin/login/", {"username": "grace", "password": f"guess-{n}"}).status_code
        for n in range(5)
    ]
    locked = client.post("/admin/login/", {"username": "grace", "password": "right-horse-battery"})

    assert wrong == [200, 200, 200, 200, 429]  # the form again, with the error; the fifth locks
    assert locked.status_code == 429  # even the right password, until the cool-off ends
    assert "_auth_user_id" not in client.session


def test_a_right_password_before_the_limit_logs_in_and_clears_the_count(client: Client) -> None:
    User.objects.create_superuser("heidi", email="heidi@example.com", password="right-horse-battery")
    for n in range(4):
        client.post("/admin/login/", {"username": "heidi", "password": f"guess-{n}"})

    answer = client.post("/admin/login/", {"username": "heidi", "password": "right-horse-battery"})

    assert answer.status_code == 302 and "_auth_user_id" in client.session
