"""The poll loop: Sentry's answer, the stored check, the verdict, the reschedule or the decision."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, GateCheck, Project, Release
from releases.scheduling import dispatcher, watchdog
from releases.workflows import polls
from tests.factories import make_analysis, make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return install(monkeypatch)


@pytest.fixture
def project() -> Project:
    return make_project(
        min_sessions=500,
        crash_free_threshold=0.995,
        poll_interval=timedelta(seconds=60),
        max_consecutive_errors=3,
    )


def gating(project: Project, **fields: Any) -> Analysis:
    """A gating release and its gate analysis (fields of either), due now."""
    now = timezone.now()
    values = {
        "state": S.GATING,
        "gating_started_at": now,
        "deployment_created_at": now - timedelta(minutes=5),
    }
    analysis = {
        name: fields.pop(name)
        for name in ("generation", "next_check_at", "phase", "consecutive_errors")
        if name in fields
    }
    values.update(fields)
    return make_analysis(make_release(project, **values), **analysis)


def known_good(project: Project) -> Release:
    return make_release(
        project, state=S.PROMOTED, deployment_id="dpl_good", promoted_at=timezone.now() - timedelta(days=1)
    )


def poll(gate: Analysis, captured: Any) -> str:
    with captured(execute=True):
        outcome = polls.poll_once(gate.pk, gate.generation)
    release = gate.release
    gate.refresh_from_db()  # which forgets the cached release: keep the caller's, refreshed
    release.refresh_from_db()
    gate.release = release
    return outcome


def test_below_min_sessions_waits_records_the_check_and_reschedules(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (120, 0)
    assert poll(gate, django_capture_on_commit_callbacks) == "wait"
    assert release.state == S.GATING and gate.generation == 2
    check = GateCheck.objects.get()
    assert (check.sessions, check.crashed, check.outcome, check.rule) == (120, 0, "wait", "waiting")
    assert release.sessions == 120 and release.crash_free_rate == 1.0
    assert gate.next_check_at > timezone.now() + timedelta(seconds=55)
    assert no_broker == []  # no countdown message: dispatch_due sends the next poll when due


def test_the_sentry_query_covers_the_release_whole_life_in_its_environment(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    created = (timezone.now() - timedelta(hours=2)).replace(minute=42, second=7)
    gate = gating(project, deployment_created_at=created)
    release = gate.release
    fakes.sentry.totals[release.version] = (10, 0)
    poll(gate, django_capture_on_commit_callbacks)
    params = fakes.sentry.requests[0].url.params
    assert params["start"] == created.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")
    assert params["interval"] == "1h"
    assert params["environment"] == "production"
    assert params["project"] == "4507"  # the resolved id: Sentry refuses a slug here
    assert release.version in params["query"]
    assert params.get_list("groupBy") == ["release"]
    assert params.get_list("field") == ["sum(session)", "crash_rate(session)"]


def test_a_healthy_sample_passes_and_writes_promote_and_slack_actions(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (800, 2)
    assert poll(gate, django_capture_on_commit_callbacks) == "pass"
    assert release.state == S.PROMOTING
    assert release.verdict == "pass" and release.verdict_rule == "seed_pass"
    kinds = dict(Action.objects.values_list("kind", "status"))
    assert kinds == {"promote": "pending", "slack": "pending"}
    assert Action.objects.get(kind="promote").payload == {"deployment_id": release.deployment_id}
    slack = Action.objects.get(kind="slack").payload
    assert "99.75%" in slack["text"] and "800 sessions" in slack["text"]
    assert [name for name, *_ in no_broker] == ["releases.run_action", "releases.run_action"]
    assert list(release.events.values_list("to_state", flat=True)) == ["passed", "promoting"]


def test_a_bad_sample_fails_and_rolls_back_to_the_known_good_deployment(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    good = known_good(project)
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (600, 9)
    assert poll(gate, django_capture_on_commit_callbacks) == "fail"
    assert release.state == S.ROLLING_BACK
    assert release.rollback_target == good.deployment_id
    rollback = Action.objects.get(kind="rollback")
    assert rollback.payload["deployment_id"] == good.deployment_id
    assert good.deployment_id in Action.objects.get(kind="slack").payload["text"]


def test_fail_fast_decides_before_min_sessions(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    known_good(project)
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (100, 3)  # 0.5% of 500 allows 2 crashes
    assert poll(gate, django_capture_on_commit_callbacks) == "fail"
    assert release.verdict_rule == "fail_fast"


def test_a_failure_with_no_known_good_deployment_says_so_and_touches_nothing(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (600, 30)
    poll(gate, django_capture_on_commit_callbacks)
    assert release.state == S.FAILED
    assert not Action.objects.filter(kind="rollback").exists()
    assert "no known-good deployment" in Action.objects.get(kind="slack").payload["text"]


def test_provider_errors_never_pass_and_hold_the_release_when_exhausted(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    release = gate.release
    fakes.sentry.errors = [httpx.Response(503, json={"detail": "down"}) for _ in range(3)]
    outcomes = []
    for _ in range(3):
        Analysis.objects.filter(pk=gate.pk).update(next_check_at=timezone.now())
        gate.refresh_from_db(fields=["generation", "next_check_at"])
        outcomes.append(poll(gate, django_capture_on_commit_callbacks))
    assert outcomes == ["wait", "wait", "inconclusive"]
    assert release.state == S.HELD
    assert release.verdict_rule == "errors_exhausted"
    assert GateCheck.objects.exclude(error="").count() == 3
    assert "a human decides" in Action.objects.get(kind="slack").payload["text"]


def test_an_error_then_data_resets_the_error_count(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    release = gate.release
    fakes.sentry.errors = [httpx.Response(500, json={"detail": "boom"})]
    fakes.sentry.totals[release.version] = (10, 0)
    poll(gate, django_capture_on_commit_callbacks)
    assert gate.consecutive_errors == 1
    Analysis.objects.filter(pk=gate.pk).update(next_check_at=timezone.now())
    gate.refresh_from_db(fields=["generation", "next_check_at"])
    poll(gate, django_capture_on_commit_callbacks)
    assert gate.consecutive_errors == 0


def test_a_rate_limited_poll_waits_until_sentry_resets(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    reset = int(timezone.now().timestamp()) + 300
    fakes.sentry.errors = [
        httpx.Response(
            429, headers={"X-Sentry-Rate-Limit-Reset": str(reset)}, text='{"detail":"too frequently"}'
        )
    ]
    poll(gate, django_capture_on_commit_callbacks)
    assert gate.next_check_at >= timezone.now() + timedelta(seconds=250)


def test_timeout_with_rollback_policy_rolls_back(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    project = make_project(on_timeout="rollback", max_wait=timedelta(minutes=10))
    good = known_good(project)
    gate = gating(project, gating_started_at=timezone.now() - timedelta(minutes=11))
    release = gate.release
    fakes.sentry.totals[release.version] = (40, 0)
    poll(gate, django_capture_on_commit_callbacks)
    assert release.state == S.ROLLING_BACK
    assert release.verdict_rule == "timeout"
    assert Action.objects.get(kind="rollback").payload["deployment_id"] == good.deployment_id


def test_timeout_with_hold_policy_asks_a_human(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project, gating_started_at=timezone.now() - timedelta(hours=3))
    release = gate.release
    fakes.sentry.totals[release.version] = (40, 0)
    poll(gate, django_capture_on_commit_callbacks)
    assert release.state == S.HELD
    assert not Action.objects.filter(kind__in=["promote", "rollback"]).exists()


def test_dry_run_decides_and_reports_but_never_promotes(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    project = make_project(dry_run=True)
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (900, 0)
    poll(gate, django_capture_on_commit_callbacks)
    assert release.state == S.PASSED
    promote = Action.objects.get(kind="promote")
    assert promote.status == "skipped" and "dry run" in promote.result["skipped"]
    assert "[dry run]" in Action.objects.get(kind="slack").payload["text"]
    assert "would promote" in Action.objects.get(kind="slack").payload["text"]


def test_a_stale_generation_is_dropped(project: Project, fakes: Fakes, no_broker: list[Any]) -> None:
    gate = gating(project, generation=5)
    assert polls.poll_once(gate.pk, 4) == "stale"
    assert not GateCheck.objects.exists() and fakes.sentry.requests == []


def test_a_release_no_longer_gating_is_dropped(project: Project, fakes: Fakes) -> None:
    gate = gating(project, state=S.HELD, phase=Analysis.Phase.INCONCLUSIVE)
    assert polls.poll_once(gate.pk, gate.generation) == "not-running"
    assert fakes.sentry.requests == []


def test_a_duplicate_message_cannot_poll_twice(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (10, 0)
    with django_capture_on_commit_callbacks(execute=True):
        first = polls.poll_once(gate.pk, 1)
        second = polls.poll_once(gate.pk, 1)
    assert (first, second) == ("wait", "stale")
    assert len(fakes.sentry.requests) == 1


def batches(no_broker: list[Any]) -> list[list[list[int]]]:
    """Each published batch as (release, generation) pairs; the due time rides along as a third."""
    return [[item[:2] for item in args[0]] for name, args, _ in no_broker if name == "releases.poll_batch"]


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])  # make run's SQLite takes the ORM path
def test_dispatch_sends_due_polls_one_batch_per_project_and_leases_them(
    project: Project, no_broker: list[Any], vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    monkeypatch.setattr(connection, "vendor", vendor)
    other = make_project(name="blog", vercel_project_id="prj_blog", sentry_project="blog")
    now = timezone.now()
    due = [gating(project, next_check_at=now - timedelta(seconds=s)) for s in (3, 2, 1)]
    elsewhere = gating(other, next_check_at=now)
    gating(project, next_check_at=now + timedelta(minutes=5))  # not due
    gating(project, state=S.HELD, next_check_at=now, phase=Analysis.Phase.INCONCLUSIVE)  # not polled
    counts = dispatcher.dispatch_due(now)
    assert counts == {"due": 4, "batches": 2, "ticks": 0}
    assert sorted(batches(no_broker)) == sorted(
        [[(r.pk, r.generation) for r in due], [(elsewhere.pk, elsewhere.generation)]]
    )
    # Leased: the next run does not send them again while their messages wait in the queue...
    no_broker.clear()
    assert dispatcher.dispatch_due(now + timedelta(seconds=1))["due"] == 0
    # ...and a message lost with Redis costs one lease: then they are due again.
    assert dispatcher.dispatch_due(now + timedelta(seconds=61))["due"] == 4


def test_a_dispatched_batch_is_named_by_its_project_and_releases_in_flower(
    project: Project, no_broker: list[Any]
) -> None:
    now = timezone.now()
    due = [gating(project, next_check_at=now - timedelta(seconds=s)) for s in (2, 1)]
    dispatcher.dispatch_due(now)
    ((_, _, options),) = [sent for sent in no_broker if sent[0] == "releases.poll_batch"]
    assert options["shadow"] == f"releases.poll_batch: project {project.pk}, 2 releases"
    assert f"releases [{due[0].release_id}, {due[1].release_id}]" in options["argsrepr"]


def test_dispatch_splits_a_big_project_into_batches_of_one_hundred(
    project: Project, no_broker: list[Any]
) -> None:
    now = timezone.now()
    for _ in range(250):
        gating(project, next_check_at=now)
    dispatcher.dispatch_due(now)
    assert sorted(len(batch) for batch in batches(no_broker)) == [50, 100, 100]


def test_a_batch_asks_sentry_once_for_all_its_releases_and_judges_each(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    releases = [gating(project) for _ in range(3)]
    due = (timezone.now() - timedelta(seconds=2)).timestamp()
    fakes.sentry.totals = {
        releases[0].release.version: (900, 0),
        releases[1].release.version: (100, 0),
        releases[2].release.version: (900, 90),
    }
    outcomes = polls.poll_batch([(r.pk, r.generation, due) for r in releases])
    (request,) = fakes.sentry.requests
    assert request.url.params["query"].startswith("release:[")
    assert all(r.release.version in request.url.params["query"] for r in releases)
    assert [outcomes[r.pk] for r in releases] == ["pass", "wait", "fail"]
    assert GateCheck.objects.count() == 3
    assert all(2000 <= check.lag_ms < 10000 for check in GateCheck.objects.all())  # how late it ran
    # A second delivery of the same batch claims nothing.
    assert polls.poll_batch([(r.pk, r.generation) for r in releases]) == {}
    assert len(fakes.sentry.requests) == 1


def test_a_batch_splits_by_sentry_window_and_records_one_error_for_all(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    now = timezone.now()
    early = gating(project, deployment_created_at=now - timedelta(hours=3))
    late = [gating(project, deployment_created_at=now - timedelta(minutes=1)) for _ in range(2)]
    fakes.sentry.errors = [httpx.Response(503, json={"detail": "down"})]
    outcomes = polls.poll_batch([(r.pk, r.generation) for r in (early, *late)])
    assert len(fakes.sentry.requests) == 2  # two windows: the release's whole life each
    starts = sorted(r.url.params["start"] for r in fakes.sentry.requests)
    assert starts[0] < starts[1]
    # The failed request's releases each get a check with the error; the other request's do not.
    failed = fakes.sentry.requests[0].url.params["query"]
    errored = {c.release.version for c in GateCheck.objects.exclude(error="").select_related("release")}
    assert errored and all(version in failed for version in errored)
    assert len(errored) == failed.count(",") + 1 and set(outcomes.values()) == {"wait"}


def test_a_human_decision_during_the_poll_wins(project: Project, fakes: Fakes, no_broker: list[Any]) -> None:
    gate = gating(project)
    assert (
        polls.record(gate.pk, 99, sessions=900, crashed=0, error="", retry_after=None, duration_ms=5)
        == "moved-on"
    )
    assert not GateCheck.objects.exists()


def test_the_watchdog_redrives_due_actions_and_orphaned_gates(project: Project, no_broker: list[Any]) -> None:
    overdue = gating(project, next_check_at=timezone.now() - timedelta(minutes=2), generation=7)
    orphan = gating(project, next_check_at=None)
    action = Action.objects.create(
        release=overdue.release,
        kind="promote",
        key="promote:x:1",
        next_attempt_at=timezone.now() - timedelta(minutes=1),
    )
    counts = watchdog.redrive()
    label = f"{action.kind} for release {action.release_id}"
    named = {"shadow": f"releases.run_action: {label}", "argsrepr": f"({action.pk}, {label!r})"}
    assert ("releases.run_action", (action.pk,), {"countdown": None, "retry": False, **named}) in no_broker
    assert not [name for name, *_ in no_broker if name.startswith("releases.poll")]  # dispatch_due's job
    assert counts["orphans"] == 1 and counts["actions"] == 1
    orphan.refresh_from_db()
    assert orphan.next_check_at is not None


def test_a_projects_polls_due_soon_go_with_those_due_now(project: Project, no_broker: list[Any]) -> None:
    other = make_project(name="blog", vercel_project_id="prj_blog", sentry_project="blog")
    now = timezone.now()
    due = gating(project, next_check_at=now)
    soon = gating(project, next_check_at=now + timedelta(seconds=8))  # within POLL_COALESCE
    later = gating(project, next_check_at=now + timedelta(seconds=30))
    elsewhere = gating(other, next_check_at=now + timedelta(seconds=5))  # its project has nothing due
    assert dispatcher.dispatch_due(now)["due"] == 2
    assert batches(no_broker) == [[(due.pk, due.generation), (soon.pk, soon.generation)]]
    for gate in (later, elsewhere):
        gate.refresh_from_db()
        assert gate.next_check_at > now


def test_the_next_poll_is_an_interval_after_dispatch_so_a_batch_stays_together(
    project: Project, fakes: Fakes, no_broker: list[Any]
) -> None:
    releases = [gating(project) for _ in range(2)]
    dispatched = timezone.now() - timedelta(seconds=20)  # the batch waited 20 s in the queue
    polls.poll_batch([(r.pk, r.generation) for r in releases], dispatched)
    for gate in releases:
        gate.refresh_from_db()
        assert gate.next_check_at == dispatched + timedelta(seconds=60)


def test_one_request_per_release_when_the_batch_size_is_one(
    project: Project, fakes: Fakes, no_broker: list[Any], settings: Any
) -> None:
    settings.POLL_BATCH = 1
    releases = [gating(project) for _ in range(3)]
    dispatcher.dispatch_due()
    assert len(batches(no_broker)) == 3
    polls.poll_batch([(r.pk, r.generation) for r in releases])
    assert len(fakes.sentry.requests) == 3


def test_recording_locks_the_releases_and_analyses_not_their_project(project: Project, fakes: Fakes) -> None:
    # mark_live locks the project and then its releases; locking a batch's project after its
    # releases (what a joined FOR UPDATE does) would deadlock the two.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = (10, 0)
    with CaptureQueriesContext(connection) as queries:
        polls.poll_batch([(gate.pk, gate.generation)])
    locking = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    assert locking
    for sql in locking:
        joined = " JOIN " in sql
        assert not joined or 'FOR UPDATE OF "releases_analysis"' in sql, sql
        assert '"releases_project"' not in sql.split("FOR UPDATE", 1)[1], sql


def test_due_polls_are_topped_up_to_whole_batches_with_those_due_next(
    project: Project, no_broker: list[Any], settings: Any
) -> None:
    settings.POLL_BATCH = 4
    now = timezone.now()
    due = [gating(project, next_check_at=now - timedelta(seconds=5 - i)) for i in range(5)]
    soon = [gating(project, next_check_at=now + timedelta(seconds=1 + i)) for i in range(4)]
    later = gating(project, next_check_at=now + timedelta(seconds=30))
    assert dispatcher.dispatch_due(now)["due"] == 8  # two full batches: the 5 due and the 3 due next
    sent = batches(no_broker)
    assert [len(batch) for batch in sent] == [4, 4]
    assert {pk for batch in sent for pk, _ in batch} == {r.pk for r in [*due, *soon[:3]]}
    for gate in (soon[3], later):
        gate.refresh_from_db()
        assert gate.next_check_at <= now + timedelta(seconds=30)  # not leased: left for later


def test_a_canary_tick_is_never_taken_early(project: Project, no_broker: list[Any]) -> None:
    now = timezone.now()
    gating(project, next_check_at=now)
    tick = gating(project, next_check_at=now + timedelta(seconds=2))
    Release.objects.filter(pk=tick.release_id).update(state="ramping")
    Analysis.objects.filter(pk=tick.pk).update(kind=Analysis.Kind.CANARY)
    assert dispatcher.dispatch_due(now) == {"due": 1, "batches": 1, "ticks": 0}


def test_a_claimed_poll_is_due_again_after_its_lease_not_a_fixed_minute(
    project: Project, fakes: Fakes, no_broker: list[Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PROVIDER_TIMEOUT = 5.0
    gate = gating(project)
    seen: list[Any] = []

    def die(*args: Any, **kwargs: Any) -> Any:  # the worker is killed while Sentry answers
        seen.append(Analysis.objects.get(pk=gate.pk).next_check_at)
        raise SystemExit

    monkeypatch.setattr(polls, "_poll_group", die)
    before = timezone.now()
    with pytest.raises(SystemExit):
        polls.poll_batch([(gate.pk, gate.generation)])
    assert before + timedelta(seconds=20) <= seen[0] <= timezone.now() + timedelta(seconds=20)


@pytest.mark.parametrize(
    "case",
    [
        ((431, 0), "wait", S.GATING, "waiting"),
        ((432, 0), "pass", S.PROMOTING, "sequential_pass"),
        ((100, 3), "fail", S.ROLLING_BACK, "sequential_fail"),
    ],
)
def test_a_project_on_the_default_sequential_test_decides_as_soon_as_the_evidence_does(
    case: tuple[tuple[int, int], str, str, str],
    fakes: Fakes,
    no_broker: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    totals, outcome, state, rule = case
    project = make_project(gate_method="sequential", min_sessions=None)
    known_good(project)
    gate = gating(project)
    release = gate.release
    fakes.sentry.totals[release.version] = totals
    assert poll(gate, django_capture_on_commit_callbacks) == outcome
    assert release.state == state
    check = GateCheck.objects.get()
    assert check.rule == rule
    # The stored check carries the test's figures: what decided, and what would have.
    figures = check.figures
    assert figures["method"] == "sequential" and figures["min_sessions"] == 373
    assert (figures["good_crash_rate"], figures["bad_crash_rate"]) == (0.002, 0.008)
    assert figures["promote_level"] > 0 and figures["rollback_level"] > 0
    if outcome == "wait":
        assert (figures["clean_to_promote"], figures["crashes_to_rollback"]) == (1, 5)
        assert "1 more crash-free session would promote" in check.reasons[0]
        return
    # Slack says what decided it, in words.
    text = Action.objects.get(kind="slack").payload["text"]
    if outcome == "pass":
        assert "Evidence 32:1 that the crash-free rate is 99.80% or better rather than 99.20%" in text
    else:
        assert "Evidence 214:1 that the crash-free rate is 99.20% or worse rather than 99.80%" in text


def test_a_staged_build_with_too_little_traffic_is_held_once_with_the_reason_and_the_options(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    project = make_project(gate_method="sequential", min_sessions=None)
    gate = gating(project, gating_started_at=timezone.now() - timedelta(minutes=11))
    release = gate.release
    fakes.sentry.totals[release.version] = (11, 0)
    assert poll(gate, django_capture_on_commit_callbacks) == "inconclusive"
    assert release.state == S.HELD and release.verdict_rule == "no_traffic"
    slack = Action.objects.get(kind="slack").payload
    assert "held, too little traffic to judge" in slack["text"]
    blocks = str(slack["blocks"])
    assert "11 sessions in 11m" in blocks and "Rolling Releases" in blocks
    assert Action.objects.filter(kind="promote").count() == 0
    assert gate.next_check_at is None  # said once: the gate stops polling
