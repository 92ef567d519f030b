"""Actions through the outbox: done once, checked against the vendor, retried as the vendor asks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from releases import outbox
from releases.models import Action, Project, Release
from releases.states import ReleaseState
from tests.factories import make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return install(monkeypatch)


@pytest.fixture
def project() -> Project:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_old")
    project.refresh_from_db()
    return project


def action_for(release: Release, kind: str, **payload: Any) -> Action:
    return Action.objects.create(release=release, kind=kind, key=f"{kind}:{release.pk}:1", payload=payload)


def test_promote_is_sent_once_and_done_when_vercel_finishes_the_alias_job(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    old = make_release(project, deployment_id="dpl_old", state=S.PROMOTED, promoted_at=timezone.now())
    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == [
        f"/v10/projects/{project.vercel_project_id}/promote/{release.deployment_id}"
    ]
    action.refresh_from_db()
    assert action.status == "succeeded" and action.attempts == 1
    assert action.result["job_status"] == "succeeded"
    release.refresh_from_db()
    old.refresh_from_db()
    project.refresh_from_db()
    assert release.state == S.PROMOTED and release.promoted_at is not None
    assert old.state == S.SUPERSEDED
    assert project.live_deployment_id == release.deployment_id


def test_promote_is_not_sent_when_production_already_serves_the_target(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    fakes.vercel.production = release.deployment_id
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == []
    release.refresh_from_db()
    assert release.state == S.PROMOTED


def test_a_retry_adopts_an_alias_job_already_running_instead_of_sending_again(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    fakes.vercel.job = {
        "fromDeploymentId": "dpl_old",
        "toDeploymentId": release.deployment_id,
        "jobStatus": "in-progress",
        "requestedAt": 1,
        "type": "promote",
    }
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == []
    action.refresh_from_db()
    assert action.result["adopted_job"] is True


def test_an_unfinished_alias_job_is_confirmed_later(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from releases import executors

    monkeypatch.setattr(executors, "CONFIRM_WINDOW", 0.0)
    fakes.vercel.finish_jobs = False
    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "confirming"
    action.refresh_from_db()
    assert action.status == "confirming" and action.result["requested_at"]
    assert no_broker[-1][0] == "releases.run_action"
    fakes.vercel.finish_jobs = True
    outcomes = []
    for _ in range(3):  # the fake's job moves one step per read: pending, in-progress, succeeded
        Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
        outcomes.append(outbox.run(action.pk))
    assert outcomes[-1] == "succeeded" and set(outcomes[:-1]) <= {"confirming", "not-claimed"}
    assert len(fakes.vercel.posts()) == 1  # confirming never sends again
    action.refresh_from_db()
    assert action.attempts == 1


def test_rate_limit_is_retried_after_vercels_reset(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    reset = int(timezone.now().timestamp()) + 120
    fakes.vercel.fail_next = [
        httpx.Response(
            429,
            headers={
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
            json={
                "error": {
                    "code": "rate_limited",
                    "message": "slow down",
                    "limit": {"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": 100},
                }
            },
        )
    ]
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "retrying"
    action.refresh_from_db()
    assert action.status == "pending" and "rate limited" in action.last_error
    assert action.next_attempt_at >= timezone.now() + timedelta(seconds=100)
    assert no_broker[-1][2]["countdown"] >= 100
    assert outbox.run(action.pk) == "not-claimed"  # not due yet
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "succeeded"
    assert len(fakes.vercel.posts()) == 2


def test_a_permanent_refusal_holds_the_release_and_tells_slack(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    fakes.vercel.fail_next = [
        httpx.Response(400, json={"error": {"code": "bad_request", "message": "deployment is not READY"}})
    ]
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "failed"
    action.refresh_from_db()
    assert action.status == "failed" and "not READY" in action.last_error
    release.refresh_from_db()
    assert release.state == S.HELD
    slack = Action.objects.get(kind="slack")
    assert "promote failed" in slack.payload["text"]


def test_retries_stop_after_max_attempts(project: Project, fakes: Fakes, no_broker: list[Any]) -> None:
    release = make_release(project, state=S.PROMOTING)
    # 429s were refused outright (unlike a 5xx, which may have landed and is confirmed first).
    fakes.vercel.fail_next = [
        httpx.Response(429, json={"error": {"code": "too_many_requests", "message": "x"}}) for _ in range(3)
    ]
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    Action.objects.filter(pk=action.pk).update(max_attempts=3)
    results = []
    for _ in range(3):
        Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
        results.append(outbox.run(action.pk))
    assert results == ["retrying", "retrying", "failed"]
    assert len(fakes.vercel.posts()) == 3
    release.refresh_from_db()
    assert release.state == S.HELD


def test_rollback_restores_the_target_and_marks_the_release_never_a_target_again(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    good = make_release(
        project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=timezone.now() - timedelta(days=1)
    )
    bad = make_release(project, deployment_id="dpl_bad", state=S.ROLLING_BACK, promoted_at=timezone.now())
    fakes.vercel.production = "dpl_bad"
    action = action_for(bad, "rollback", deployment_id="dpl_good")
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == [f"/v1/projects/{project.vercel_project_id}/rollback/dpl_good"]
    bad.refresh_from_db()
    good.refresh_from_db()
    project.refresh_from_db()
    assert bad.state == S.ROLLED_BACK and bad.rolled_back_at is not None
    assert good.state == S.PROMOTED
    assert project.live_deployment_id == "dpl_good"


def test_rollback_of_a_staged_build_keeps_production_without_a_call(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.ROLLING_BACK)
    fakes.vercel.production = "dpl_old"
    action = action_for(release, "rollback", deployment_id="dpl_old")
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == []
    release.refresh_from_db()
    assert release.state == S.ROLLED_BACK


def test_slack_message_is_posted_with_its_blocks(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "slack", channel="#releases", text="hello", blocks=[{"type": "divider"}])
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.slack.posted == [{"channel": "#releases", "text": "hello", "blocks": [{"type": "divider"}]}]
    action.refresh_from_db()
    assert action.result["channel"] == "C0RELEASES" and action.result["ts"]


def test_slack_refusal_fails_the_message_and_nothing_else(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    fakes.slack.answers = [httpx.Response(200, json={"ok": False, "error": "channel_not_found"})]
    action = action_for(release, "slack", channel="#nope", text="x")
    assert outbox.run(action.pk) == "failed"
    release.refresh_from_db()
    assert release.state == S.PROMOTING


def test_slack_with_unknown_outcome_is_not_sent_twice(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project)
    fakes.slack.answers = [httpx.ReadTimeout("slow")]
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.run(action.pk) == "failed"
    action.refresh_from_db()
    assert "outcome unknown" in action.last_error
    assert fakes.slack.posted == []


def test_slack_rate_limit_is_retried_after_retry_after(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    release = make_release(project)
    fakes.slack.answers = [
        httpx.Response(429, headers={"Retry-After": "30"}, json={"ok": False, "error": "ratelimited"})
    ]
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.run(action.pk) == "retrying"
    action.refresh_from_db()
    assert action.next_attempt_at >= timezone.now() + timedelta(seconds=29)


def test_only_one_worker_claims_an_action(project: Project) -> None:
    release = make_release(project)
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.claim(action.pk) is not None
    assert outbox.claim(action.pk) is None


def test_the_watchdog_redrives_a_promote_whose_worker_died_and_gives_up_on_a_slack_post(
    project: Project, no_broker: list[Any]
) -> None:
    release = make_release(project, state=S.PROMOTING)
    expired = timezone.now() - timedelta(seconds=1)
    promote = Action.objects.create(
        release=release,
        kind="promote",
        key="p",
        status="running",
        lease_until=expired,
        attempts=1,
        payload={"deployment_id": "d"},
    )
    slack = Action.objects.create(
        release=release,
        kind="slack",
        key="s",
        status="running",
        lease_until=expired,
        attempts=1,
        result={"sending": True},
    )
    unsent = Action.objects.create(
        release=release, kind="slack", key="u", status="running", lease_until=expired, attempts=1
    )
    assert outbox.recover_expired() == (2, 1)
    promote.refresh_from_db()
    slack.refresh_from_db()
    unsent.refresh_from_db()
    assert promote.status == "pending"
    assert unsent.status == "pending"
    assert slack.status == "failed" and "not sent again" in slack.last_error
    assert {args for _, args, _ in no_broker} == {(promote.pk,), (unsent.pk,)}


def test_writing_the_same_intent_twice_is_one_row(project: Project) -> None:
    from releases.states import ActionSpec

    release = make_release(project)
    spec = ActionSpec(kind="slack", key="slack:1:1", payload={"channel": "#r", "text": "x"})
    assert len(outbox.write_actions(release, [spec])) == 1
    assert outbox.write_actions(release, [spec]) == []
    assert Action.objects.count() == 1


def test_a_5xx_that_may_have_landed_is_confirmed_before_sending_again(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from releases import executors

    monkeypatch.setattr(executors, "CONFIRM_WINDOW", 0.0)
    release = make_release(project, state=S.PROMOTING)
    fakes.vercel.fail_next = [httpx.Response(502, json={"error": {"code": "bad_gateway", "message": "x"}})]
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "retrying"
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "confirming"  # no second POST while it may still land
    assert len(fakes.vercel.posts()) == 1
    monkeypatch.setattr(executors, "NO_JOB_GRACE", timedelta(0))
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "retrying"  # no job appeared: it never landed
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) in ("confirming", "succeeded")
    assert len(fakes.vercel.posts()) == 2
