"""on_no_traffic: promote_after_checks: a held build without traffic is promoted only if its gate
checks pass, twice, and stays held for a human otherwise."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from releases.core import outbox
from releases.domain.lifecycle import ReleaseState
from releases.domain.slo_rules import parse_check
from releases.models import Action, Project, Release
from releases.workflows import polls
from tests.factories import make_analysis, make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return install(monkeypatch)


def project_with_checks() -> Project:
    spec, problems = parse_check({"kind": "sentry_error_rate", "max": 0.01}, "gate.checks[0]")
    assert spec is not None and not problems
    return make_project(
        gate_method="sequential",
        min_sessions=None,
        on_no_traffic="promote_after_checks",
        gate_checks=[spec.to_json()],
    )


def held_without_traffic(project: Project, fakes: Fakes, captured: Any) -> Release:
    release = make_release(
        project,
        state=S.GATING,
        gating_started_at=timezone.now() - timedelta(minutes=11),
        deployment_created_at=timezone.now() - timedelta(minutes=12),
    )
    gate = make_analysis(release)
    fakes.sentry.totals[release.version] = (5, 0)
    with captured(execute=False):
        assert polls.poll_once(gate.pk, gate.generation) == "inconclusive"
    release.refresh_from_db()
    return release


def run(action: Action) -> str:
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    return outbox.run(action.pk)


def test_too_little_traffic_holds_the_build_and_runs_its_gate_checks(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = held_without_traffic(project_with_checks(), fakes, django_capture_on_commit_callbacks)
    assert release.state == S.HELD and release.verdict_rule == "no_traffic"
    slack = Action.objects.get(kind="slack")
    assert "running its 1 gate check(s); promoted if they pass twice" in slack.payload["text"]
    checks = Action.objects.get(kind="checks")
    fakes.sentry.error_events = {release.version: 0}
    assert run(checks) == "confirming"  # one pass of two
    assert run(checks) == "succeeded"
    release.refresh_from_db()
    assert release.state == S.PROMOTING
    assert Action.objects.get(kind="promote").status == "pending"
    assert [r["ok"] for r in Action.objects.get(kind="checks").result["runs"]] == [True, True]


def test_a_failing_gate_check_leaves_the_build_held_and_says_why(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = held_without_traffic(project_with_checks(), fakes, django_capture_on_commit_callbacks)
    fakes.sentry.error_events = {release.version: 3}  # 3 errors in 5 sessions: 0.6 > 0.01
    assert run(Action.objects.get(kind="checks")) == "succeeded"
    release.refresh_from_db()
    assert release.state == S.HELD
    assert not Action.objects.filter(kind="promote").exists()
    told = Action.objects.filter(kind="slack").order_by("-id").first()
    assert told is not None and "still held" in told.payload["text"]


def test_a_human_who_decided_meanwhile_is_not_overruled(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = held_without_traffic(project_with_checks(), fakes, django_capture_on_commit_callbacks)
    Release.objects.filter(pk=release.pk).update(state=S.ROLLING_BACK)
    fakes.sentry.error_events = {release.version: 0}
    assert run(Action.objects.get(kind="checks")) == "succeeded"
    assert not Action.objects.filter(kind="promote").exists()


def test_without_promote_after_checks_nothing_is_checked_and_a_human_decides(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    project = make_project(gate_method="sequential", min_sessions=None)
    release = held_without_traffic(project, fakes, django_capture_on_commit_callbacks)
    assert release.state == S.HELD
    assert not Action.objects.filter(kind="checks").exists()
    assert "a human decides" in Action.objects.get(kind="slack").payload["text"]
