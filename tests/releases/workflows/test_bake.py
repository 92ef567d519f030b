"""The bake watch: a release that just went live is polled for a while, and a breach rolls it back
through the same path as a Sentry alert, so a release is rolled back once whichever comes first."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from releases.core import outbox
from releases.core.production import mark_live
from releases.domain.lifecycle import ReleaseState
from releases.integrations import clients
from releases.integrations.sentry.client import SentryClient
from releases.integrations.vercel import aliasing
from releases.models import Action, Analysis, GateCheck, Project, Release, ReleaseEvent
from releases.scheduling import dispatcher
from releases.workflows import polls
from releases.workflows.bake import watch_policy
from tests.factories import SENTRY_SECRET, make_analysis, make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState
PD_KEY = "3fa9c2d41b7e4e0a9c6d5b8f2a1e0c73"
WATCH = timedelta(minutes=30)
CRITICAL = Path(__file__).resolve().parents[2] / "payloads" / "sentry" / "metric_alert_critical.json"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    monkeypatch.setattr(aliasing, "CONFIRM_POLL", 0.0)  # the fake's alias job moves on every read
    return install(monkeypatch)


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("PD_KEY", PD_KEY)
    return make_project(
        pagerduty_routing_key_env="PD_KEY",
        min_sessions=500,
        crash_free_threshold=0.995,
        watch_threshold=0.99,
        watch_after_promotion=WATCH,
        poll_interval=timedelta(seconds=60),
        max_consecutive_errors=2,
    )


def known_good(project: Project) -> Release:
    return make_release(
        project,
        deployment_id="dpl_good",
        state=S.SUPERSEDED,
        promoted_at=timezone.now() - timedelta(days=1),
    )


def watching(project: Project, **fields: Any) -> Release:
    """A live release ten minutes into its watch (fields of the release or of its bake
    analysis), its next poll due now."""
    now = timezone.now()
    watch: dict[str, Any] = {
        "generation": 3,
        "started_at": now - timedelta(minutes=10),
        "ends_at": now + WATCH - timedelta(minutes=10),
        "next_check_at": now,
    }
    watch.update({name: fields.pop(name) for name in (*watch, "phase") if name in fields})
    values: dict[str, Any] = {
        "state": S.PROMOTED,
        "deployment_created_at": now - timedelta(minutes=40),
        "gating_started_at": now - timedelta(minutes=38),
        "promoted_at": now - timedelta(minutes=10),
    }
    values.update(fields)
    release = make_release(project, **values)
    make_analysis(release, Analysis.Kind.BAKE, **watch)
    Project.objects.filter(pk=project.pk).update(
        live_deployment_id=release.deployment_id, live_since=values["promoted_at"]
    )
    project.refresh_from_db()
    return release


def watch_of(release: Release) -> Analysis | None:
    return release.latest_analysis(Analysis.Kind.BAKE)


def poll(release: Release, captured: Any) -> str:
    watch = watch_of(release)
    assert watch is not None
    with captured(execute=True):
        outcome = polls.poll_once(watch.pk, watch.generation)
    release.refresh_from_db()
    return outcome


def sent_polls(no_broker: list[Any]) -> list[tuple[Any, ...]]:
    return [args for name, args, _ in no_broker if name == "releases.poll_release"]


def signed_critical(started_ago: timedelta = timedelta(minutes=1)) -> tuple[bytes, dict[str, str]]:
    payload = json.loads(CRITICAL.read_text())
    started = timezone.now() - started_ago
    payload["data"]["metric_alert"]["date_started"] = started.astimezone(UTC).isoformat()
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {
        "HTTP_SENTRY_HOOK_RESOURCE": "metric_alert",
        "HTTP_SENTRY_HOOK_TIMESTAMP": str(int(time.time())),
        "HTTP_SENTRY_HOOK_SIGNATURE": hmac.new(SENTRY_SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "HTTP_REQUEST_ID": "3f6c1a0e9b2d4c8fa7e51d2b6c9a0f13",
    }


def deliver_critical(client: Client) -> Any:
    body, headers = signed_critical()
    return client.post("/webhooks/sentry/", data=body, content_type="application/json", **headers)


# --- when a watch starts ----------------------------------------------------------------------


def test_a_completed_promote_starts_the_watch_and_schedules_its_first_poll(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    make_release(project, deployment_id="dpl_old", state=S.PROMOTED, promoted_at=timezone.now())
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_old")
    release = make_release(project, state=S.PROMOTING)
    action = Action.objects.create(
        release=release, kind="promote", key="promote:x:1", payload={"deployment_id": release.deployment_id}
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.run(action.pk) == "succeeded"
    release.refresh_from_db()
    now = timezone.now()
    assert release.state == S.PROMOTED
    watch = watch_of(release)
    assert watch is not None and watch.phase == "running"
    assert abs(watch.ends_at - (now + WATCH)) < timedelta(seconds=5)
    assert abs(watch.next_check_at - (now + timedelta(seconds=60))) < timedelta(seconds=5)
    assert watch.generation == 1
    assert watch.policy["crash_free_threshold"] == 0.99  # the watch's bar, snapshotted
    assert sent_polls(no_broker) == []  # no countdown message: due in 60 s, dispatch_due sends it


def test_a_rollback_target_serving_again_is_not_watched_again(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    good = known_good(project)
    bad = watching(project, state=S.ROLLING_BACK, phase="stopped", rollback_target=good.deployment_id)
    fakes.vercel.production = bad.deployment_id
    action = Action.objects.create(
        release=bad,
        kind="rollback",
        key="rollback:x:1",
        payload={"deployment_id": good.deployment_id, "from_deployment_id": bad.deployment_id},
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.run(action.pk) == "succeeded"
    good.refresh_from_db()
    bad.refresh_from_db()
    assert bad.state == S.ROLLED_BACK
    assert good.state == S.PROMOTED
    assert watch_of(good) is None
    assert sent_polls(no_broker) == []


def test_a_dry_run_project_never_watches(
    fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    project = make_project(dry_run=True, watch_after_promotion=WATCH)
    release = make_release(project, state=S.PASSED)
    with django_capture_on_commit_callbacks(execute=True):
        mark_live(project, release.deployment_id, actor="vercel", reason="promoted in Vercel")
    release.refresh_from_db()
    assert release.state == S.PROMOTED
    assert watch_of(release) is None
    assert sent_polls(no_broker) == []


# --- while watching ---------------------------------------------------------------------------


def test_a_bake_poll_records_its_check_as_the_bake_phase(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = watching(project)
    fakes.sentry.totals[release.version] = (2000, 4)
    poll(release, django_capture_on_commit_callbacks)
    check = GateCheck.objects.get()
    assert (check.analysis.kind, check.sessions, check.crashed) == ("bake", 2000, 4)
    assert check.figures["threshold"] == 0.99  # the watch's bar, not the gate's
    assert check.generation == 4


def test_a_healthy_sample_keeps_watching_and_schedules_the_next_poll(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = watching(project)
    ends_at = watch_of(release).ends_at
    fakes.sentry.totals[release.version] = (2000, 4)
    assert poll(release, django_capture_on_commit_callbacks) == "wait"
    watch = watch_of(release)
    assert release.state == S.PROMOTED and (watch.phase, watch.ends_at) == ("running", ends_at)
    assert watch.next_check_at > timezone.now() + timedelta(seconds=55)
    assert (release.sessions, release.crash_free_rate) == (2000, 0.998)
    assert watch.generation == 4 and sent_polls(no_broker) == []  # due again at next_check_at
    assert not Action.objects.exists()


def test_a_sample_below_the_gate_threshold_but_above_the_watch_threshold_keeps_watching(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    known_good(project)
    release = watching(project)
    fakes.sentry.totals[release.version] = (1000, 8)  # 99.2%: fails 99.5%, keeps 99%
    assert poll(release, django_capture_on_commit_callbacks) == "wait"
    assert release.state == S.PROMOTED
    assert not Action.objects.exists()


@pytest.mark.parametrize(
    "case",
    [
        pytest.param((0.99, (1000, 20)), id="below-watch-threshold"),
        pytest.param((None, (1000, 8)), id="below-gate-threshold-when-no-watch-threshold"),
    ],
)
def test_a_breach_rolls_back_pages_and_tells_slack(
    project: Project,
    fakes: Fakes,
    no_broker: list[Any],
    django_capture_on_commit_callbacks: Any,
    case: tuple[float | None, tuple[int, int]],
) -> None:
    watch_threshold, sample = case
    Project.objects.filter(pk=project.pk).update(watch_threshold=watch_threshold)
    project.refresh_from_db()  # the watch snapshots the project's policy as it starts
    good = known_good(project)
    release = watching(project)
    fakes.sentry.totals[release.version] = sample
    assert poll(release, django_capture_on_commit_callbacks) == "breach"
    assert release.state == S.ROLLING_BACK
    assert release.rollback_target == good.deployment_id
    watch = watch_of(release)
    assert (watch.phase, watch.next_check_at) == ("failed", None)
    actions = list(Action.objects.order_by("id"))
    assert [a.kind for a in actions] == ["rollback", "pagerduty", "slack"]
    rollback, page, slack = actions
    assert rollback.payload["deployment_id"] == good.deployment_id
    assert rollback.payload["cause"].startswith("bake watch: crash-free")
    assert page.payload["severity"] == "critical"
    assert page.payload["custom_details"]["cause"].startswith("bake watch")
    assert page.payload["custom_details"]["crash_free_rate"] == (sample[0] - sample[1]) / sample[0]
    assert page.payload["custom_details"]["threshold"] == (watch_threshold or 0.995)
    assert page.key.endswith(":rollback:breach")
    assert "bake watch" in json.dumps(slack.payload["blocks"])
    # The rollback is published alone; the page and the message follow once its request is out.
    assert [
        (args[0], kwargs.get("kwargs", {}).get("then"))
        for name, args, kwargs in no_broker
        if name == "releases.run_action"
    ] == [(rollback.pk, [page.pk, slack.pk])]
    assert sent_polls(no_broker) == []


def test_provider_errors_never_roll_back_and_the_watch_goes_on(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    known_good(project)
    release = watching(project)
    fakes.sentry.errors = [httpx.Response(503, json={"detail": "down"}) for _ in range(4)]
    outcomes = []
    for _ in range(4):  # twice max_consecutive_errors
        Analysis.objects.filter(release=release).update(next_check_at=timezone.now())
        outcomes.append(poll(release, django_capture_on_commit_callbacks))
    assert outcomes == ["wait"] * 4
    watch = watch_of(release)
    assert release.state == S.PROMOTED and watch.phase == "running"
    assert watch.consecutive_errors == 4
    assert GateCheck.objects.filter(analysis__kind="bake").exclude(error="").count() == 4
    assert GateCheck.objects.order_by("id").last().rule == "errors_exhausted"
    assert not Action.objects.exists()
    assert watch.next_check_at > timezone.now()  # still scheduled: the watch goes on


def test_the_first_poll_after_the_watch_ends_it(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = watching(project, ends_at=timezone.now() - timedelta(seconds=1), sessions=3000)
    assert poll(release, django_capture_on_commit_callbacks) == "watch-ended"
    assert fakes.sentry.requests == []
    assert release.state == S.PROMOTED
    watch = watch_of(release)
    assert (watch.phase, watch.next_check_at) == ("passed", None)
    note = ReleaseEvent.objects.get(release=release)
    assert note.kind == "note" and "bake watch ended" in note.reason
    assert sent_polls(no_broker) == []
    assert polls.poll_once(watch.pk, watch.generation) == "not-running"


# --- an alert and a breach --------------------------------------------------------------------


def test_a_breach_then_an_alert_rolls_back_once(
    client: Client,
    project: Project,
    fakes: Fakes,
    no_broker: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    known_good(project)
    release = watching(project)
    fakes.sentry.totals[release.version] = (1000, 30)
    assert poll(release, django_capture_on_commit_callbacks) == "breach"
    response = deliver_critical(client)
    assert response.status_code == 202, response.content
    assert "nothing more to do" in response.json()["detail"]
    assert Action.objects.filter(kind="rollback").count() == 1
    assert Action.objects.get(kind="rollback").payload["cause"].startswith("bake watch")


def test_an_alert_while_a_bake_poll_asks_sentry_wins_and_the_poll_stands_down(
    client: Client,
    project: Project,
    fakes: Fakes,
    no_broker: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    known_good(project)
    release = watching(project)
    fakes.sentry.totals[release.version] = (1000, 30)  # a breach, had the alert not come first

    def alert_arrives_mid_poll(request: httpx.Request) -> httpx.Response:
        assert deliver_critical(client).status_code == 202
        return fakes.sentry(request)

    transport = httpx.MockTransport(alert_arrives_mid_poll)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            clients,
            "sentry",
            lambda timeout=None: SentryClient("https://sentry.test", "t", transport=transport),
        )
        assert poll(release, django_capture_on_commit_callbacks) == "moved-on"
    assert len(fakes.sentry.requests) == 1
    assert release.state == S.ROLLING_BACK
    rollback = Action.objects.get(kind="rollback")
    assert rollback.payload["cause"].startswith("Sentry critical alert")
    assert not GateCheck.objects.exists()
    assert sent_polls(no_broker) == []


# --- the watchdog -----------------------------------------------------------------------------


def test_the_dispatcher_sends_an_overdue_bake_poll(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    overdue = watching(project, next_check_at=timezone.now() - timedelta(minutes=2), generation=9)
    make_analysis(  # live once, no longer watched: nothing to poll
        make_release(project, state=S.PROMOTED),
        Analysis.Kind.BAKE,
        phase="passed",
        next_check_at=timezone.now() - timedelta(minutes=2),
    )
    assert dispatcher.dispatch_due()["due"] == 1
    (batch,) = [args[0] for name, args, _ in no_broker if name == "releases.poll_batch"]
    assert [item[:2] for item in batch] == [(watch_of(overdue).pk, 9)]
    fakes.sentry.totals[overdue.version] = (2000, 2)
    assert poll(overdue, django_capture_on_commit_callbacks) == "wait"
    assert GateCheck.objects.get().analysis.kind == "bake"


def test_a_breach_with_no_known_good_deployment_pages_once_and_ends_the_watch(
    project: Project, fakes: Fakes, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = watching(project)
    fakes.sentry.totals[release.version] = (800, 40)
    assert poll(release, django_capture_on_commit_callbacks) == "breach"
    assert release.state == S.PROMOTED
    watch = watch_of(release)
    assert (watch.phase, watch.next_check_at) == ("failed", None)
    assert sorted(Action.objects.values_list("kind", flat=True)) == ["pagerduty", "slack"]
    assert "NOT rolled back" in Action.objects.get(kind="pagerduty").payload["summary"]


# --- the sequential watch of a project on the default method ----------------------------------


@pytest.fixture
def sequential_project(monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("PD_KEY", PD_KEY)
    return make_project(
        pagerduty_routing_key_env="PD_KEY",
        gate_method="sequential",
        min_sessions=None,
        watch_after_promotion=WATCH,
        max_consecutive_errors=2,
    )


def test_a_sequential_project_watches_with_its_own_bounded_false_alarm_test(
    sequential_project: Project,
) -> None:
    policy = watch_policy(sequential_project)
    assert policy.method == "watch" and policy.false_alarm == 0.01
    assert (policy.watch().good, policy.watch().bad) == (0.002, 0.008)


@pytest.mark.parametrize(
    "case",
    [
        ((20_000, 50), "wait"),  # 99.75%: between good and bad, no alarm however long
        ((2_000, 4), "wait"),  # 99.8%, the good rate
        ((300, 8), "breach"),  # 97.3%: far below the bar, caught within a few hundred sessions
        ((6_000, 60), "breach"),  # 99.0%: worse than bad, once the evidence is in
    ],
)
def test_the_sequential_watch_rolls_back_on_the_evidence_not_on_a_single_poll_below_the_bar(
    sequential_project: Project,
    fakes: Fakes,
    no_broker: list[Any],
    django_capture_on_commit_callbacks: Any,
    case: tuple[tuple[int, int], str],
) -> None:
    sample, outcome = case
    known_good(sequential_project)
    release = watching(sequential_project)
    fakes.sentry.totals[release.version] = sample
    assert poll(release, django_capture_on_commit_callbacks) == outcome
    check = GateCheck.objects.get(release=release)
    assert check.figures["method"] == "watch"
    if outcome == "breach":
        assert release.state == S.ROLLING_BACK and check.rule == "watch_alarm"
        assert "has fallen to 99.20% or worse" in check.reasons[0]
        details = Action.objects.get(kind="pagerduty").payload["custom_details"]
        assert details["crashed"] == sample[1]
        assert details["evidence"].startswith("evidence ")
        assert "that the crash-free rate is 99.20% or worse rather than 99.80%" in details["evidence"]
        assert details["rollback_level"] == pytest.approx(math.log(100))
    else:
        assert release.state == S.PROMOTED and "more crashed would alarm" in check.reasons[0]
