"""The admin's release page: a verdict to read, a chart, the history to the second, and overrides
that show what they overrule and ask why."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import (
    Action,
    Analysis,
    GateCheck,
    Incident,
    Project,
    RampCheck,
    Release,
    ReleaseEvent,
)
from tests.factories import gating_release, make_analysis, make_operator, make_project, make_release

pytestmark = pytest.mark.django_db

S = ReleaseState
CHANGELIST = "/admin/releases/release/"


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("alice", email="alice@example.com", password=None))
    return client


@pytest.fixture
def project() -> Project:
    return make_project()


def page(client: Client, release: Release) -> str:
    response = client.get(f"{CHANGELIST}{release.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def add_checks(release: Release, *counts: tuple[int, int]) -> None:
    analysis = release.analyses.filter(kind=Analysis.Kind.GATE).first() or make_analysis(release)
    start = release.gating_started_at or timezone.now()
    for minute, (sessions, crashed) in enumerate(counts, start=1):
        GateCheck.objects.create(
            release=release,
            analysis=analysis,
            generation=1,
            checked_at=start + timedelta(minutes=minute, seconds=7),
            sessions=sessions,
            crashed=crashed,
            crash_free_rate=1 - crashed / sessions,
            outcome="wait",
            rule="waiting",
            figures={"sessions": sessions, "crashed": crashed, "crash_free_rate": 1 - crashed / sessions},
        )


def promoted(project: Project) -> Release:
    started = timezone.now() - timedelta(minutes=20)
    release = make_release(
        project,
        state=S.PROMOTED,
        version="abc1234",
        gating_started_at=started,
        sessions=1204,
        crashed=2,
        crash_free_rate=1 - 2 / 1204,
        verdict="pass",
        verdict_rule="seed_pass",
        decided_at=started + timedelta(minutes=10),
        promoted_at=started + timedelta(minutes=11),
    )
    make_analysis(release, phase=Analysis.Phase.PASSED, next_check_at=None)
    add_checks(release, (300, 1), (700, 1), (1204, 2))
    ReleaseEvent.objects.create(
        release=release,
        kind=ReleaseEvent.Kind.TRANSITION,
        from_state=S.GATING,
        to_state=S.PASSED,
        actor="gatekeeper",
        reason="passed",
        created_at=started.replace(microsecond=0) + timedelta(minutes=10, seconds=42),
    )
    Action.objects.create(release=release, kind=Action.Kind.PROMOTE, key=f"promote-{release.pk}")
    return release


def test_a_promoted_release_reads_as_a_verdict_with_its_figures(staff: Client, project: Project) -> None:
    release = promoted(project)

    html = page(staff, release)

    assert "Promoted: 99.83% crash-free over 1,204 sessions, above the 99.50% threshold" in html
    assert '<svg id="release-chart"' in html
    assert '<title id="release-chart-title">' in html
    assert 'class="threshold"' in html
    assert "0.9983" not in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html)
    assert "Promote" in html  # the action's kind in the actions table


def test_the_release_page_is_not_a_form(staff: Client, project: Project) -> None:
    html = page(staff, promoted(project))

    assert 'name="_save"' not in html
    assert "Save" not in html
    assert "object (" not in html
    assert "<canary" not in html and 'id="canary"' not in html


def test_a_sequential_verdict_says_what_the_test_found(staff: Client, project: Project) -> None:
    release = promoted(project)
    GateCheck.objects.filter(release=release).update(
        figures={
            "method": "sequential",
            "sessions": 1204,
            "crashed": 2,
            "crash_free_rate": 1 - 2 / 1204,
            "threshold": 0.995,
            "good_crash_rate": 0.002,
            "bad_crash_rate": 0.008,
            "promote_statistic": 4.7,
            "promote_level": 2.9,
            "rollback_statistic": -4.7,
            "rollback_level": 2.9,
            "promote_at_most": 3,
            "rollback_at_least": 9,
        }
    )

    html = page(staff, release)

    assert "(sequential test: evidence 110:1 that the crash-free rate is 99.80% or better" in html
    assert 'class="promote-at"' in html and 'class="rollback-at"' in html


def test_a_promoted_release_is_explained_by_its_gate_not_its_bake_watch(
    staff: Client, project: Project
) -> None:
    release = promoted(project)
    bake = make_analysis(release, Analysis.Kind.BAKE)
    GateCheck.objects.create(
        release=release,
        analysis=bake,
        generation=1,
        checked_at=timezone.now(),
        sessions=5000,
        crashed=40,
        crash_free_rate=0.992,
        outcome="wait",
        rule="waiting",
        figures={"method": "watch", "sessions": 5000, "crash_free_rate": 0.992},
    )

    html = page(staff, release)

    assert "Promoted: 99.83% crash-free over 1,204 sessions" in html
    assert "<td>5,000</td>" in html  # the bake check is still in the table


def test_a_release_rejected_by_hand_names_who_and_on_what_evidence(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc1234")
    add_checks(release, (8, 0))
    Release.objects.filter(pk=release.pk).update(sessions=8, crashed=0, crash_free_rate=1.0)
    good = make_release(project, state=S.PROMOTED, promoted_at=timezone.now() - timedelta(days=1))
    Project.objects.filter(pk=project.pk).update(live_deployment_id=good.deployment_id)
    staff.post(
        CHANGELIST,
        {
            "action": "reject_roll_back_now",
            "_selected_action": [release.pk],
            "index": 0,
            "confirm": "yes",
            "note": "checkout broken",
        },
    )
    release.refresh_from_db()
    Release.objects.filter(pk=release.pk).update(state=S.ROLLED_BACK, rolled_back_at=timezone.now())

    html = page(staff, release)

    assert "Rolled back by alice: rejected by hand with 8 sessions (100.00% crash-free" in html
    assert "below the 500-session minimum" in html
    assert f"{good.version} ({good.deployment_id})" in html  # production, and the rollback target
    assert "checkout broken" in html


def test_a_canary_shows_its_stages_and_their_checks(staff: Client) -> None:
    project = make_project(canary={"stages": [{"percent": 5}, {"percent": 25}, {"percent": 100}]})
    release = make_release(project, state=S.RAMPING, gating_started_at=timezone.now())
    first = make_analysis(release, Analysis.Kind.CANARY, stage=0, phase=Analysis.Phase.PASSED)
    make_analysis(release, Analysis.Kind.CANARY, stage=1)
    RampCheck.objects.create(
        release=release,
        analysis=first,
        stage=0,
        percent=5,
        confirmation=1,
        ok=True,
        checks=[{"name": "sentry_error_rate", "value": 0.004, "ok": True}],
    )

    html = page(staff, release)

    assert 'id="canary"' in html
    assert "<td>5%</td>" in html and "<td>25%</td>" in html
    assert "ok sentry_error_rate: 0.004" in html
    assert "Ramping" in html


def test_a_viewer_without_the_override_permission_gets_no_override_buttons(
    client: Client, project: Project
) -> None:
    release = gating_release(project)
    user = staff_member("fay")
    make_operator(user, project, override=False)
    client.force_login(user)

    html = page(client, release)

    assert "Gating:" in html
    assert 'name="_selected_action"' not in html


def test_a_held_release_says_why_it_waits(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc1234")
    add_checks(release, (120, 1))
    Release.objects.filter(pk=release.pk).update(
        state=S.HELD,
        sessions=120,
        crashed=1,
        crash_free_rate=1 - 1 / 120,
        verdict="inconclusive",
        verdict_rule="timeout",
        verdict_reasons=["no verdict after 2h: a human decides"],
    )

    html = page(staff, release)

    assert "Held: 99.17% crash-free over 120 sessions, below the 99.50% threshold" in html
    assert "no verdict after 2h: a human decides" in html
    assert '<svg id="release-chart"' in html


def test_a_login_that_does_not_operate_the_project_gets_no_page(client: Client, project: Project) -> None:
    release = promoted(project)
    other = make_project(name="blog", vercel_project_id="prj_blog")
    user = staff_member("bob")
    make_operator(user, other)
    client.force_login(user)

    response = client.get(f"{CHANGELIST}{release.pk}/change/", follow=True)

    assert response.redirect_chain[0][1] == 302  # "does not exist", as for a release that does not
    assert "abc1234" not in response.content.decode()


def test_an_operator_sees_the_page_of_a_project_they_operate(client: Client, project: Project) -> None:
    release = promoted(project)
    user = staff_member("dan")
    make_operator(user, project)
    client.force_login(user)

    html = page(client, release)

    assert "Promoted:" in html
    # The per-release override buttons: only those a promoted release admits.
    assert 'value="reject_roll_back_now"' in html
    assert 'value="approve_promote_now"' not in html and 'value="pause"' not in html


def staff_member(name: str) -> User:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user(name, password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_release", "view_project"]))
    return user


def override(client: Client, action: str, release: Release, **extra: Any) -> Any:
    data = {"action": action, "_selected_action": [release.pk], "index": 0, **extra}
    return client.post(CHANGELIST, data, follow=True)


def test_approving_first_shows_the_evidence_and_asks_for_a_note(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc")
    add_checks(release, (80, 1))
    Release.objects.filter(pk=release.pk).update(sessions=80, crashed=1, crash_free_rate=1 - 1 / 80)

    html = override(staff, "approve_promote_now", release).content.decode()

    assert "Approve shop-web@abc with 80 sessions (98.75% crash-free" in html
    assert "below the 500-session minimum" in html
    assert '<textarea name="note"' in html
    release.refresh_from_db()
    assert release.state == S.GATING


def test_an_override_without_a_note_is_refused(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc")

    response = override(staff, "approve_promote_now", release, confirm="yes", note="   ")

    assert "Say why in the note" in response.content.decode()
    release.refresh_from_db()
    assert release.state == S.GATING


def test_a_confirmed_approval_records_the_note_and_the_user(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc")

    override(staff, "approve_promote_now", release, confirm="yes", note="hotfix for the outage")

    event = release.events.get(to_state=S.PASSED)
    assert event.actor == "user:alice"
    assert "hotfix for the outage" in event.reason
    release.refresh_from_db()
    assert release.verdict_rule == "override:approve"


def test_a_confirmed_resume_is_recorded_as_the_user(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc")
    Release.objects.filter(pk=release.pk).update(state=S.HELD)

    override(staff, "resume", release, confirm="yes", note="traffic is back")

    event = release.events.filter(to_state=S.GATING).latest("created_at")
    assert event.actor == "user:alice"
    assert "traffic is back" in event.reason


def test_a_resume_through_the_api_is_recorded_as_the_user(project: Project) -> None:
    from rest_framework.test import APIClient

    release = gating_release(project, version="abc")
    Release.objects.filter(pk=release.pk).update(state=S.HELD)
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("erin", email="e@example.com", password=None))

    response = api.post(f"/api/releases/{release.pk}/resume/", {"note": "on call says go"}, format="json")

    assert response.status_code == 200
    event = release.events.filter(to_state=S.GATING).latest("created_at")
    assert event.actor == "user:erin"
    assert "on call says go" in event.reason


def test_an_approval_through_the_api_records_the_note_and_the_user(project: Project) -> None:
    from rest_framework.test import APIClient

    release = gating_release(project, version="abc")
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("gus", email="g@example.com", password=None))

    response = api.post(f"/api/releases/{release.pk}/approve/", {"note": "known flake"}, format="json")

    assert response.status_code == 200
    event = release.events.get(to_state=S.PASSED)
    assert (event.actor, event.reason) == ("user:gus", "approved by gus: known flake")
    assert response.json()["verdict_rule"] == "override:approve"


def test_the_list_shows_the_rule_of_an_override(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc")
    override(staff, "approve_promote_now", release, confirm="yes", note="ship it")

    html = staff.get(CHANGELIST).content.decode()

    assert "override:approve" in html
    assert "(only" in html or "no sessions" in html


def test_the_list_tells_a_bake_rollback_from_an_alert_one(staff: Client, project: Project) -> None:
    make_release(project, version="baked1", state=S.ROLLED_BACK, verdict="pass", verdict_rule="seed_pass")
    alerted = make_release(
        project, version="alerted1", state=S.ROLLED_BACK, verdict="pass", verdict_rule="seed_pass"
    )
    Incident.objects.create(project=project, release=alerted, sentry_id="inc-1")

    html = staff.get(CHANGELIST).content.decode()

    rules = re.findall(r'class="field-rule">([^<]*)<', html)
    assert sorted(rules) == ["alert", "bake"]


def test_the_list_shows_how_few_sessions_a_rejected_release_had(staff: Client, project: Project) -> None:
    release = gating_release(project, version="abc")
    Release.objects.filter(pk=release.pk).update(sessions=8, crashed=0, crash_free_rate=1.0)
    override(staff, "reject_roll_back_now", release, confirm="yes", note="bad checkout")

    html = staff.get(CHANGELIST).content.decode()

    assert '<td class="field-crash_free">100.00% / 99.50% (only 8 sessions)</td>' in html
    assert '<td class="field-rule">override:reject</td>' in html


def test_the_swagger_ui_loads_its_files_from_our_static_files(staff: Client) -> None:
    response = staff.get("/api/docs/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_the_swagger_ui_needs_a_login(client: Client) -> None:
    assert client.get("/api/docs/").status_code in {401, 403}


def test_a_rollback_decided_by_the_sequential_test_states_its_evidence_once(
    staff: Client, project: Project
) -> None:
    from notifications.messages import evidence

    release = make_release(
        project,
        state=S.ROLLED_BACK,
        version="bad1",
        gating_started_at=timezone.now() - timedelta(seconds=30),
        decided_at=timezone.now(),
        sessions=97,
        crashed=3,
        crash_free_rate=1 - 3 / 97,
        verdict="fail",
        verdict_rule="sequential_fail",
    )
    add_checks(release, (97, 3))
    figures = {
        "sessions": 97,
        "crashed": 3,
        "crash_free_rate": 1 - 3 / 97,
        "method": "sequential",
        "good_crash_rate": 0.002,
        "bad_crash_rate": 0.008,
        "rollback_statistic": 5.45,
        "rollback_level": 3.18,
    }
    GateCheck.objects.filter(release=release).update(figures=figures)
    # The rule's reason, as the gate writes it: the figures, then the same evidence clause.
    Release.objects.filter(pk=release.pk).update(
        verdict_reasons=[f"97 sessions, 3 crashed (crash-free 96.91%): {evidence(figures, 'fail')}"]
    )

    html = page(staff, release)

    verdict = re.search(r'id="verdict"><strong>(.*?)</strong>', html, re.S)
    assert verdict is not None and verdict.group(1).startswith(
        "Rolled back: 96.91% crash-free over 97 sessions"
    )
    assert "(sequential test: evidence" in verdict.group(1)
    assert verdict.group(1).count("rolls back at") == 1
