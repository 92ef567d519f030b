"""Actions through the outbox: done once, checked against the vendor, retried as the vendor asks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from releases.core import outbox
from releases.domain.lifecycle import ReleaseState
from releases.integrations import clients
from releases.integrations.vercel import aliasing
from releases.models import Action, Project, Release
from releases.scheduling import watchdog
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

    monkeypatch.setattr(aliasing, "CONFIRM_WINDOW", 0.0)
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
    assert not no_broker  # past MAX_COUNTDOWN: the watchdog sends it when due, no ETA message
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
        httpx.Response(429, headers={"Retry-After": "40"}, json={"ok": False, "error": "ratelimited"})
    ]
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.run(action.pk) == "retrying"
    action.refresh_from_db()
    assert action.next_attempt_at >= timezone.now() + timedelta(seconds=39)
    # Longer than MAX_COUNTDOWN: no ETA message waits in a worker; PostgreSQL keeps the time.
    assert not [name for name, *_ in no_broker if name == "releases.run_action"]


def test_a_short_wait_is_a_countdown_message(project: Project, fakes: Fakes, no_broker: list[Any]) -> None:
    release = make_release(project)
    fakes.slack.answers = [
        httpx.Response(429, headers={"Retry-After": "3"}, json={"ok": False, "error": "ratelimited"})
    ]
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.run(action.pk) == "retrying"
    ((name, args, kwargs),) = no_broker
    assert (name, args[0]) == ("releases.run_action", action.pk)
    assert 3 <= kwargs["countdown"] <= 30


def test_the_watchdog_sends_a_long_wait_when_it_is_due(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:

    release = make_release(project)
    fakes.slack.answers = [
        httpx.Response(429, headers={"Retry-After": "45"}, json={"ok": False, "error": "ratelimited"})
    ]
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.run(action.pk) == "retrying"
    watchdog.redrive()
    assert not [args for name, args, _ in no_broker if name == "releases.run_action"]  # not yet due
    action.refresh_from_db()
    watchdog.redrive(action.next_attempt_at + timedelta(seconds=20))
    assert [args[0] for name, args, _ in no_broker if name == "releases.run_action"] == [action.pk]


def test_only_one_worker_claims_an_action(project: Project) -> None:
    release = make_release(project)
    action = action_for(release, "slack", channel="#releases", text="x")
    assert outbox.claim(action.pk) is not None
    assert outbox.claim(action.pk) is None


def test_a_claim_loads_the_action_its_release_and_project_as_the_orm_would(project: Project) -> None:
    release = make_release(project, state=S.ROLLING_BACK)
    action = action_for(release, "rollback", deployment_id="dpl_old", nested={"list": [1, 2.5, None]})
    Action.objects.filter(pk=action.pk).update(result={"requested_at": "x"})
    claimed = outbox.claim(action.pk)
    assert claimed is not None
    fresh = Action.objects.select_related("release__project").get(pk=action.pk)
    for model_field in Action._meta.concrete_fields:
        assert getattr(claimed, model_field.attname) == getattr(fresh, model_field.attname), model_field.name
    for model_field in Release._meta.concrete_fields:
        assert getattr(claimed.release, model_field.attname) == getattr(fresh.release, model_field.attname)
    for model_field in Project._meta.concrete_fields:
        assert getattr(claimed.release.project, model_field.attname) == getattr(
            fresh.release.project, model_field.attname
        ), model_field.name
    assert claimed.payload["nested"] == {"list": [1, 2.5, None]}
    assert claimed.status == "running" and claimed.attempts == 1 and claimed.lease_until is not None
    assert not claimed._state.adding  # saved instances, as the ORM gives them


def test_a_claim_counts_attempts_for_sends_not_for_confirmation_checks(project: Project) -> None:
    release = make_release(project, state=S.PROMOTING)
    pending = action_for(release, "promote", deployment_id=release.deployment_id)
    confirming = Action.objects.create(
        release=release, kind="promote", key="promote:x:2", payload={}, status="confirming", attempts=1
    )
    waiting = Action.objects.create(
        release=release,
        kind="promote",
        key="promote:x:3",
        payload={},
        next_attempt_at=timezone.now() + timedelta(minutes=1),
    )
    assert outbox.claim(pending.pk).attempts == 1
    assert outbox.claim(confirming.pk).attempts == 1
    assert outbox.claim(waiting.pk) is None  # not due
    waiting.refresh_from_db()
    assert waiting.status == "pending" and waiting.attempts == 0


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
    from releases.core.outbox import ActionSpec

    release = make_release(project)
    spec = ActionSpec(kind="slack", key="slack:1:1", payload={"channel": "#r", "text": "x"})
    assert len(outbox.write_actions(release, [spec])) == 1
    assert outbox.write_actions(release, [spec]) == []
    assert Action.objects.count() == 1


def test_a_batch_with_some_intents_already_recorded_writes_only_the_new_ones(project: Project) -> None:
    from releases.core.outbox import ActionSpec

    release = make_release(project)
    old = ActionSpec(kind="slack", key="slack:1:1", payload={"text": "x"})
    (first,) = outbox.write_actions(release, [old])
    new = [
        ActionSpec(kind="rollback", key="rollback:1:1", payload={"deployment_id": "dpl_a"}),
        old,
        ActionSpec(kind="pagerduty", key="pagerduty:1:1", payload={"dedup_key": "k"}),
    ]
    written = outbox.write_actions(release, new)
    assert [a.key for a in written] == ["rollback:1:1", "pagerduty:1:1"]
    for action in written:
        stored = Action.objects.get(pk=action.pk)  # each id is its own row's
        assert (stored.key, stored.payload, stored.status) == (action.key, action.payload, "pending")
        assert stored.created_at is not None and not action._state.adding
    assert Action.objects.get(key="slack:1:1").pk == first.pk
    assert Action.objects.count() == 3


def test_a_5xx_that_may_have_landed_is_confirmed_before_sending_again(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(aliasing, "CONFIRM_WINDOW", 0.0)
    release = make_release(project, state=S.PROMOTING)
    fakes.vercel.fail_next = [httpx.Response(502, json={"error": {"code": "bad_gateway", "message": "x"}})]
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    assert outbox.run(action.pk) == "retrying"
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "confirming"  # no second POST while it may still land
    assert len(fakes.vercel.posts()) == 1
    monkeypatch.setattr(aliasing, "NO_JOB_GRACE", timedelta(0))
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "retrying"  # no job appeared: it never landed
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) in ("confirming", "succeeded")
    assert len(fakes.vercel.posts()) == 2


# --- a rollback of the live release: sent first, page and message after its request ---------


def live_rollback(project: Project, **payload: Any) -> tuple[Release, Action]:
    """The release production serves (by our records) and an intent to roll back from it."""
    release = make_release(project, deployment_id="dpl_bad", state=S.ROLLING_BACK)
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_bad")
    action = action_for(
        release, "rollback", **{"deployment_id": "dpl_old", "from_deployment_id": "dpl_bad", **payload}
    )
    return release, action


def test_a_fresh_rollback_of_the_live_release_is_sent_without_a_look_first(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    fakes.vercel.production = "dpl_bad"
    release, action = live_rollback(project)
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.calls[0] == ("POST", f"/v1/projects/{project.vercel_project_id}/rollback/dpl_old")
    assert fakes.vercel.posts() == [f"/v1/projects/{project.vercel_project_id}/rollback/dpl_old"]
    release.refresh_from_db()
    assert release.state == S.ROLLED_BACK


@pytest.mark.parametrize(
    "why",
    ["a retry", "an intent that waited", "production not serving the release, by our records"],
)
def test_a_rollback_looks_at_vercel_before_sending_unless_fresh_and_live(
    project: Project, fakes: Fakes, no_broker: list[Any], why: str
) -> None:
    fakes.vercel.production = "dpl_bad"
    _, action = live_rollback(project)
    if why == "a retry":
        Action.objects.filter(pk=action.pk).update(attempts=1)
    elif why == "an intent that waited":
        Action.objects.filter(pk=action.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    else:
        Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_other")
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.calls[0] == ("GET", f"/v9/projects/{project.vercel_project_id}")
    assert len(fakes.vercel.posts()) == 1


def test_a_first_rollback_refused_because_production_already_serves_the_target_is_done(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    # Someone rolled back by hand a moment before us: Vercel answers 409, the look finds it done.
    fakes.vercel.production = "dpl_old"
    fakes.vercel.fail_next = [
        httpx.Response(409, json={"error": {"code": "conflict", "message": "already current"}})
    ]
    release, action = live_rollback(project)
    assert outbox.run(action.pk) == "succeeded"
    action.refresh_from_db()
    assert "already served" in action.result["note"]
    assert "requested_at" not in action.result
    release.refresh_from_db()
    assert release.state == S.ROLLED_BACK


def test_a_first_rollback_refused_for_another_reason_fails_without_a_second_send(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    fakes.vercel.production = "dpl_bad"
    fakes.vercel.fail_next = [
        httpx.Response(409, json={"error": {"code": "conflict", "message": "rolling release active"}})
    ]
    release, action = live_rollback(project)
    assert outbox.run(action.pk) == "failed"
    assert len(fakes.vercel.posts()) == 1
    action.refresh_from_db()
    assert "rolling release active" in action.last_error
    release.refresh_from_db()
    assert release.state == S.HELD


def published(no_broker: list[Any]) -> list[int]:
    return [args[0] for name, args, _ in no_broker if name == "releases.run_action"]


def test_followers_are_dispatched_right_after_the_lead_request_goes_out(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.vercel.production = "dpl_bad"
    _, action = live_rollback(project)
    real = outbox.dispatch
    vercel_calls_at_dispatch: list[tuple[int, list[tuple[str, str]]]] = []

    def dispatch(action_id: int, *args: Any, **kwargs: Any) -> None:
        vercel_calls_at_dispatch.append((action_id, list(fakes.vercel.calls)))
        real(action_id, *args, **kwargs)

    monkeypatch.setattr(outbox, "dispatch", dispatch)
    assert outbox.run(action.pk, then=[901, 902]) == "succeeded"
    post = ("POST", f"/v1/projects/{project.vercel_project_id}/rollback/dpl_old")
    # After the rollback request, before the confirmation reads that follow it.
    assert vercel_calls_at_dispatch == [(901, [post]), (902, [post])]
    assert len(fakes.vercel.calls) > 1


@pytest.mark.parametrize("lead_fate", ["refused", "not claimable"])
def test_followers_are_dispatched_whatever_becomes_of_the_lead(
    project: Project, fakes: Fakes, no_broker: list[Any], lead_fate: str
) -> None:
    fakes.vercel.production = "dpl_bad"
    _, action = live_rollback(project)
    if lead_fate == "refused":
        fakes.vercel.fail_next = [httpx.Response(400, json={"error": {"code": "bad", "message": "no"}})]
    else:
        Action.objects.filter(pk=action.pk).update(status=Action.Status.SUCCEEDED)
    outbox.run(action.pk, then=[901, 902])
    assert published(no_broker) == [901, 902]


def test_actions_not_led_by_a_rollback_are_published_one_by_one_after_commit(
    project: Project, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = make_release(project, state=S.PROMOTING)
    slack = action_for(release, "slack", channel="#r", text="a")
    page = Action.objects.create(release=release, kind="pagerduty", key="pd:1", payload={})
    with django_capture_on_commit_callbacks(execute=True):
        outbox.enqueue_actions([slack, page])
        assert no_broker == []  # nothing before the decision commits
    assert [(args[0], kwargs.get("kwargs")) for _, args, kwargs in no_broker] == [
        (slack.pk, None),
        (page.pk, None),
    ]


def test_a_first_rollback_whose_answer_was_lost_is_adopted_by_the_retry_not_sent_twice(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    from tests.fakes import FakeVercel

    class AnswerLost(FakeVercel):
        """Vercel takes the request, and the answer never comes back."""

        def __call__(self, request: httpx.Request) -> httpx.Response:
            answer = super().__call__(request)
            if request.method == "POST":
                raise httpx.ReadTimeout("timed out", request=request)
            return answer

    fakes.vercel = AnswerLost(production="dpl_bad", finish_jobs=False)
    release, action = live_rollback(project)
    assert outbox.run(action.pk) == "retrying"
    fakes.vercel.finish_jobs = True
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "succeeded"
    assert len(fakes.vercel.posts()) == 1
    action.refresh_from_db()
    assert action.attempts == 2 and action.result["adopted_job"] is True
    release.refresh_from_db()
    assert release.state == S.ROLLED_BACK


# --- vendors failing part of the time (the faults bench/chaos.py injects) --------------------


def flaky_reads(monkeypatch: pytest.MonkeyPatch, fakes: Fakes, failures: int) -> list[int]:
    """Vercel answers the next ``failures`` reads after the first POST with a 502."""
    from releases.integrations.vercel.client import VercelClient

    left = [failures]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and fakes.vercel.posts() and left[0] > 0:
            left[0] -= 1
            return httpx.Response(502, json={"error": {"code": "bad_gateway", "message": "injected"}})
        return fakes.vercel(request)

    monkeypatch.setattr(
        clients,
        "vercel",
        lambda project: VercelClient("https://api.vercel.test", "t", transport=httpx.MockTransport(answer)),
    )
    return left


def test_failed_looks_at_vercel_after_the_promote_went_out_spend_no_attempts(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a fifth of Vercel's answers failing, eight failed looks must not give up a promote
    # that Vercel accepted (its release would be held instead of promoted).
    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    left = flaky_reads(monkeypatch, fakes, failures=12)
    results = []
    while left[0] > 0:
        Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
        results.append(outbox.run(action.pk))
    assert set(results) == {"confirming"}
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "succeeded"
    action.refresh_from_db()
    assert action.attempts == 1 and len(fakes.vercel.posts()) == 1
    release.refresh_from_db()
    assert release.state == S.PROMOTED


def test_failed_looks_still_give_up_waiting_after_three_minutes(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:

    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    flaky_reads(monkeypatch, fakes, failures=100)
    assert outbox.run(action.pk) == "confirming"
    monkeypatch.setattr(aliasing, "CONFIRM_GIVE_UP", timedelta(0))
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "retrying"  # counts again: Vercel may be down for good
    action.refresh_from_db()
    assert action.status == "pending" and "HTTP 502" in action.last_error


def test_a_staged_build_that_failed_never_rolls_back_a_newer_good_build(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    # A bad staged build failed while production served dpl_old; its rollback's first look at
    # Vercel is rate limited, and by the retry a newer good build is live. Rolling production
    # back to dpl_old then would undo the good promotion.
    old = make_release(project, deployment_id="dpl_old", state=S.SUPERSEDED, promoted_at=timezone.now())
    newer = make_release(project, deployment_id="dpl_newer", state=S.PROMOTED, promoted_at=timezone.now())
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_newer")
    staged = make_release(project, deployment_id="dpl_staged_bad", state=S.ROLLING_BACK)
    fakes.vercel.production = "dpl_newer"
    action = action_for(
        staged,
        "rollback",
        deployment_id="dpl_old",
        from_deployment_id="dpl_staged_bad",
        target_release_id=old.pk,
    )
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == []
    action.refresh_from_db()
    assert "nothing to roll back" in action.result["note"]
    staged.refresh_from_db()
    newer.refresh_from_db()
    project.refresh_from_db()
    assert staged.state == S.ROLLED_BACK and staged.rolled_back_at is not None
    assert newer.state == S.PROMOTED and project.live_deployment_id == "dpl_newer"


def test_a_live_release_is_still_rolled_back_after_a_retry(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    good = make_release(project, deployment_id="dpl_good", state=S.SUPERSEDED, promoted_at=timezone.now())
    bad = make_release(project, deployment_id="dpl_bad", state=S.ROLLING_BACK, promoted_at=timezone.now())
    fakes.vercel.production = "dpl_bad"
    action = action_for(
        bad, "rollback", deployment_id="dpl_good", from_deployment_id="dpl_bad", target_release_id=good.pk
    )
    Action.objects.filter(pk=action.pk).update(attempts=1)  # a retry: it looks first
    assert outbox.run(action.pk) == "succeeded"
    assert fakes.vercel.posts() == [f"/v1/projects/{project.vercel_project_id}/rollback/dpl_good"]


def test_a_promote_that_landed_and_was_overtaken_is_not_sent_again(
    project: Project, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The promote landed (Vercel's deployment.promoted marked the release live), its
    # confirmation waited out a killed worker, and meanwhile another alias job replaced it.
    # Seeing no job of its own, a retry that sent the promote again would bring the old build back.

    monkeypatch.setattr(aliasing, "CONFIRM_WINDOW", 0.0)
    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    fakes.vercel.finish_jobs = False
    assert outbox.run(action.pk) == "confirming"
    assert len(fakes.vercel.posts()) == 1
    Release.objects.filter(pk=release.pk).update(state=S.SUPERSEDED, promoted_at=timezone.now())
    fakes.vercel.job = {**(fakes.vercel.job or {}), "toDeploymentId": "dpl_other", "jobStatus": "succeeded"}
    fakes.vercel.production = "dpl_other"
    monkeypatch.setattr(aliasing, "NO_JOB_GRACE", timedelta(0))
    Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
    assert outbox.run(action.pk) == "succeeded"
    assert len(fakes.vercel.posts()) == 1
    action.refresh_from_db()
    assert action.result["untouched"] is True
    project.refresh_from_db()
    assert project.live_deployment_id == "dpl_old"  # the promote's success did not rewrite it


def test_a_promote_answered_after_a_newer_deployment_went_live_does_not_take_production_back(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    # Vercel's deployment.promoted for this build came first (it went live), then a newer
    # deployment's made that one live: our promote's answer arrives last.
    release = make_release(project, state=S.PROMOTING)
    action = action_for(release, "promote", deployment_id=release.deployment_id)
    Release.objects.filter(pk=release.pk).update(state=S.SUPERSEDED)
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_newer")
    assert outbox.run(action.pk) == "succeeded"
    project.refresh_from_db()
    release.refresh_from_db()
    assert project.live_deployment_id == "dpl_newer"
    assert release.state == S.SUPERSEDED
    assert not release.events.exists()  # no restore, no second supersede
