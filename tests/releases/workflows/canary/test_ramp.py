"""The canary ramp engine, against a fake traffic router and scripted SLO results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from releases.core import outbox
from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Analysis, Project, RampCheck, Release, ReleaseEvent
from releases.ops import overrides
from releases.scheduling import dispatcher
from releases.workflows import polls
from releases.workflows.canary import ramp, traffic
from releases.workflows.canary.measuring import CheckResult, SloResult
from releases.workflows.canary.traffic import Traffic
from tests.factories import make_project, make_release
from tests.fakes import Fakes, install

pytestmark = pytest.mark.django_db
S = ReleaseState


@dataclass
class FakeRouter:
    """A router that does what it is told at once, and remembers it."""

    name: str = "fake"
    state: str = "none"
    canary: str | None = None
    stage: int | None = None
    stages: tuple[float, ...] = (5.0, 25.0, 100.0)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def now(self) -> Traffic:
        percent = self.stages[self.stage] if self.stage is not None and self.state == "active" else None
        return Traffic(self.state, self.canary, self.stage, percent, self.stages)

    def current(self, project: Project) -> Traffic:
        return self.now()

    def start(self, project: Project, canary_id: str) -> Traffic:
        self.calls.append(("start", canary_id))
        self.state, self.canary, self.stage = "active", canary_id, 0
        return self.now()

    def to_stage(self, project: Project, canary_id: str, index: int, *, from_index: int | None) -> Traffic:
        self.calls.append(("stage", index))
        self.stage = index
        return self.now()

    def complete(self, project: Project, canary_id: str) -> Traffic:
        self.calls.append(("complete", canary_id))
        self.state, self.stage = "complete", len(self.stages) - 1
        return self.now()

    def abort(self, project: Project, canary_id: str, previous_id: str) -> None:
        self.calls.append(("abort", previous_id))
        self.state, self.stage = "aborted", None


POLICY = {
    "router": "fake",
    "stages": [{"percent": 5, "hold": 0}, {"percent": 25, "hold": 0}, {"percent": 100, "hold": 0}],
    "confirmations": 2,
    "confirmation_interval": 30.0,
    "abort_on_failure": True,
    "failures_to_abort": 1,
    "checks": [{"kind": "sentry_error_rate", "name": "errors", "max": 0.01, "window": 300.0}],
}


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> FakeRouter:
    fake = FakeRouter()
    monkeypatch.setitem(traffic.ROUTERS, "fake", fake)
    return fake


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return install(monkeypatch)


class Script:
    """What the SLO checks will say, one result per tick."""

    def __init__(self) -> None:
        self.results: list[bool | None] = []
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, project: Project, release: Release, previous: Release | None, **_: Any) -> SloResult:
        self.calls.append((release.deployment_id, previous.deployment_id if previous else None))
        ok = self.results.pop(0)
        check = CheckResult(
            name="errors",
            kind="sentry_error_rate",
            ok=bool(ok),
            value=None if ok is None else (0.001 if ok else 0.05),
            baseline=None,
            threshold="<= 0.01",
            reason="fine"
            if ok
            else ("could not measure: sentry down" if ok is None else "0.05 is above 0.01"),
            window_seconds=300,
            elapsed_ms=1.0,
        )
        return SloResult(
            bool(ok),
            release.deployment_id,
            previous.deployment_id if previous else None,
            timezone.now(),
            (check,),
        )


@pytest.fixture
def slo(monkeypatch: pytest.MonkeyPatch) -> Script:
    script = Script()
    monkeypatch.setattr(ramp, "run_checks", script)
    return script


def setup_ramp(policy: dict[str, Any] | None = None) -> tuple[Project, Release, Release]:
    project = make_project(canary=policy or POLICY, slack_channel="#releases")
    previous = make_release(
        project, deployment_id=f"dpl_prev_{project.pk}", state=S.PROMOTED, promoted_at=timezone.now()
    )
    Project.objects.filter(pk=project.pk).update(live_deployment_id=previous.deployment_id)
    project.refresh_from_db()
    canary = make_release(project, deployment_id=f"dpl_canary_{project.pk}")
    canary.project = project
    return project, previous, canary


def run_traffic(release: Release) -> list[str]:
    """Perform every pending traffic move (and what follows it), as a worker would."""
    done = []
    for action in Action.objects.filter(
        release=release, kind="traffic", status__in=["pending", "confirming"]
    ).order_by("id"):
        Action.objects.filter(pk=action.pk).update(next_attempt_at=timezone.now())
        done.append(outbox.run(action.pk))
    return done


def stage_of(release: Release) -> Analysis:
    """The ramp's open stage analysis."""
    stage = release.open_analysis()
    assert stage is not None and stage.kind == "canary"
    return stage


def tick(release: Release) -> str:
    stage = stage_of(release)
    Analysis.objects.filter(pk=stage.pk).update(next_check_at=timezone.now())  # the interval has passed
    return polls.poll_once(stage.pk, stage.generation)


def test_a_healthy_canary_climbs_every_stage_and_completes(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    project, previous, canary = setup_ramp()
    assert ramp.start_ramp(canary)
    canary.refresh_from_db()
    assert canary.state == S.RAMPING and canary.rollback_target == previous.deployment_id
    assert run_traffic(canary) == ["succeeded"]
    assert router.calls == [("start", canary.deployment_id)]
    slo.results = [True, True, True, True]
    assert tick(canary) == "confirming"  # one pass of two: no move yet
    assert router.calls == [("start", canary.deployment_id)]
    assert tick(canary) == "advancing"
    assert run_traffic(canary) == ["succeeded"]
    assert router.calls[-1] == ("stage", 1)
    assert tick(canary) == "confirming"
    assert tick(canary) == "advancing"
    run_traffic(canary)
    assert router.calls[-1] == ("complete", canary.deployment_id)
    canary.refresh_from_db()
    project.refresh_from_db()
    assert canary.state == S.PROMOTED and project.live_deployment_id == canary.deployment_id
    assert [c.ok for c in RampCheck.objects.filter(release=canary)] == [True] * 4
    shares = [e.data["percent"] for e in ReleaseEvent.objects.filter(release=canary, kind="traffic")]
    assert shares == [5, 25, 100]
    # relative checks compare with the deployment being replaced
    assert {prev for _, prev in slo.calls} == {previous.deployment_id}


@pytest.mark.usefixtures("fakes")
def test_a_failing_canary_is_aborted_at_its_stage_traffic_back_paged_and_told(
    router: FakeRouter,
    slo: Script,
    no_broker: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "r" * 32)
    project, previous, canary = setup_ramp()
    Project.objects.filter(pk=project.pk).update(pagerduty_routing_key_env="PAGERDUTY_ROUTING_KEY")
    canary.project.refresh_from_db()
    ramp.start_ramp(canary)
    run_traffic(canary)
    slo.results = [True, True, False]
    tick(canary)
    tick(canary)
    run_traffic(canary)  # now at 25 %
    with django_capture_on_commit_callbacks(execute=True):
        assert tick(canary) == "aborting"
    canary.refresh_from_db()
    assert canary.state == S.ROLLING_BACK and canary.verdict_rule == "slo"
    abort, page, slack = Action.objects.filter(release=canary).order_by("-id")[:3][::-1]
    assert (abort.kind, page.kind, slack.kind) == ("traffic", "pagerduty", "slack")
    assert page.payload["custom_details"]["stage_percent"] == "25%"
    assert page.payload["custom_details"]["failed_checks"][0]["reason"] == "0.05 is above 0.01"
    # the page and the message wait for the abort's request (they follow it)
    published = [kwargs.get("kwargs") for name, args, kwargs in no_broker if args == (abort.pk,)]
    assert published == [{"then": [page.pk, slack.pk]}]
    run_traffic(canary)
    assert router.calls[-1] == ("abort", previous.deployment_id)
    canary.refresh_from_db()
    project.refresh_from_db()
    assert canary.state == S.ROLLED_BACK and canary.rolled_back_at is not None
    assert project.live_deployment_id == previous.deployment_id
    assert ReleaseEvent.objects.filter(release=canary, kind="traffic").last().data["percent"] == 0


@pytest.mark.parametrize("failure", [False, None], ids=["failed-check", "unreachable-provider"])
def test_one_failed_confirmation_of_two_never_advances(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any], failure: bool | None
) -> None:
    policy = {**POLICY, "abort_on_failure": False}
    _, _, canary = setup_ramp(policy)
    ramp.start_ramp(canary)
    run_traffic(canary)
    slo.results = [True, failure, True, failure, True, True]
    outcomes = [tick(canary) for _ in range(4)]
    assert outcomes == ["confirming", "failed-check", "confirming", "failed-check"]
    assert router.calls == [("start", canary.deployment_id)]  # still at 5 %
    canary.refresh_from_db()
    assert canary.state == S.RAMPING and stage_of(canary).stage == 0
    assert (stage_of(canary).passes, stage_of(canary).failures) == (0, 1)
    assert tick(canary) == "confirming"
    assert tick(canary) == "advancing"  # two passes in a row


def test_failures_to_abort_rides_out_one_flaky_check(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    _, _, canary = setup_ramp({**POLICY, "failures_to_abort": 2})
    ramp.start_ramp(canary)
    run_traffic(canary)
    slo.results = [False, True, False, False]
    assert [tick(canary) for _ in range(4)] == ["failed-check", "confirming", "failed-check", "aborting"]


def test_the_hold_is_waited_out_before_any_check(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    policy = {**POLICY, "stages": [{"percent": 10, "hold": 600}, {"percent": 100, "hold": 0}]}
    router.stages = (10.0, 100.0)
    _, _, canary = setup_ramp(policy)
    ramp.start_ramp(canary)
    run_traffic(canary)
    stage = stage_of(canary)
    assert stage.next_check_at >= timezone.now() + timedelta(seconds=590)
    assert polls.poll_once(stage.pk, stage.generation) == "holding"
    assert slo.calls == []


def test_traffic_moves_once_per_stage_even_when_decided_twice(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    _, _, canary = setup_ramp()
    ramp.start_ramp(canary)
    run_traffic(canary)
    canary.refresh_from_db()
    ramp.advance(canary, actor="test", reason="first")
    ramp.advance(canary, actor="test", reason="again")
    assert Action.objects.filter(release=canary, kind="traffic", key__endswith="stage-1").count() == 1
    run_traffic(canary)
    # and a move already in place is not sent again
    Action.objects.filter(release=canary, key__endswith="stage-1").update(status="pending", result={})
    run_traffic(canary)
    assert router.calls.count(("stage", 1)) == 1


def test_overrides_advance_pause_resume_and_abort(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    _, previous, canary = setup_ramp()
    ramp.start_ramp(canary)
    with pytest.raises(overrides.OverrideRefused):
        overrides.approve(canary.pk, "ops")  # traffic still moving to its first stage
    run_traffic(canary)
    overrides.approve(canary.pk, "ops", "looks fine")
    run_traffic(canary)
    assert router.calls[-1] == ("stage", 1)
    overrides.pause(canary.pk, "ops")
    stage = stage_of(canary)
    assert (stage.stage, stage.phase, stage.next_check_at) == (1, "paused", None)
    assert polls.poll_once(stage.pk, stage.generation) == "not-running"
    overrides.resume(canary.pk, "ops")
    stage = stage_of(canary)
    assert stage.phase == "running" and stage.next_check_at is not None
    overrides.reject(canary.pk, "ops", "abort now")
    run_traffic(canary)
    assert router.calls[-1] == ("abort", previous.deployment_id)
    canary.refresh_from_db()
    assert canary.state == S.ROLLED_BACK
    actors = set(ReleaseEvent.objects.filter(release=canary).values_list("actor", flat=True))
    assert "user:ops" in actors


def test_without_a_previous_deployment_the_build_is_gated_instead(fakes: Fakes, no_broker: list[Any]) -> None:
    project = make_project(canary=POLICY)
    release = make_release(project)
    release.project = project
    assert ramp.start_ramp(release) is False
    release.refresh_from_db()
    assert release.state == S.RECEIVED


def test_the_dispatcher_sends_an_overdue_ramp_tick(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    _, _, canary = setup_ramp()
    ramp.start_ramp(canary)
    run_traffic(canary)
    stage = stage_of(canary)
    Analysis.objects.filter(pk=stage.pk).update(next_check_at=timezone.now() - timedelta(minutes=5))
    no_broker.clear()
    assert dispatcher.dispatch_due()["ticks"] == 1
    sent = [tuple(args) for name, args, _ in no_broker if name == "releases.poll_release"]
    assert sent == [(stage.pk, stage.generation)]


def test_router_stages_that_differ_from_the_policy_hold_the_ramp_for_a_human(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    router.stages = (5.0, 50.0, 100.0)
    _, _, canary = setup_ramp()
    ramp.start_ramp(canary)
    assert run_traffic(canary) == ["failed"]
    canary.refresh_from_db()
    assert canary.state == S.HELD
    held = ReleaseEvent.objects.filter(release=canary, to_state=S.HELD).get()
    assert "stages are 5%, 50%, 100% but canary.stages says 5%, 25%, 100%" in held.reason
    told = Action.objects.filter(release=canary, kind="slack").exclude(key__endswith="ramp-start").get()
    assert "canary traffic move failed: a human decides" in told.payload["text"]


def test_a_completion_that_landed_is_done_even_once_the_next_ramp_has_started(
    router: FakeRouter, slo: Script, fakes: Fakes, no_broker: list[Any]
) -> None:
    # The complete landed but its answer was lost; Vercel's deployment.promoted made the canary
    # live and the project's next release started ramping. The retry sees someone else's rolling
    # release: completing again would be refused (404) and the move recorded as failed though it
    # happened.
    from releases.core.production import mark_live
    from releases.core.transitions import GATEKEEPER

    project, _, canary = setup_ramp()
    assert ramp.start_ramp(canary)
    run_traffic(canary)
    slo.results = [True, True, True, True]
    tick(canary), tick(canary)
    run_traffic(canary)
    tick(canary), tick(canary)  # advancing: the complete move is written, not yet run
    mark_live(project, canary.deployment_id, actor=GATEKEEPER, reason="deployment.promoted")
    router.state, router.canary, router.stage = "active", "dpl_the_next_one", 0
    calls = len(router.calls)
    assert run_traffic(canary) == ["succeeded"]
    assert len(router.calls) == calls
    move = Action.objects.get(release=canary, key=f"traffic:{canary.pk}:complete")
    assert move.result["note"] == "already complete"


def test_a_tick_killed_mid_check_is_due_again_after_its_checks_could_have_run_not_three_minutes(
    router: FakeRouter, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed during a canary's checks (3 s timeouts): the ramp must be due again once
    # its checks could have run, not after the 180 s cap.
    quick = {**POLICY, "checks": [{**POLICY["checks"][0], "timeout": 3.0}]}
    _, _, canary = setup_ramp(quick)
    assert ramp.start_ramp(canary)
    run_traffic(canary)
    due_again: list[float] = []

    def dies_mid_check(project: Project, release: Release, previous: Release | None, **_: Any) -> SloResult:
        stored = stage_of(release)
        assert stored.next_check_at is not None
        due_again.append((stored.next_check_at - timezone.now()).total_seconds())
        raise SystemExit("worker killed")

    monkeypatch.setattr(ramp, "run_checks", dies_mid_check)
    with pytest.raises(SystemExit):
        tick(canary)
    assert 2 * 3.0 + ramp.TICK_MARGIN - 2 < due_again[0] <= 2 * 3.0 + ramp.TICK_MARGIN


def test_the_tick_lease_follows_the_slowest_check_and_never_exceeds_the_cap() -> None:
    from releases.domain.slo_rules import CheckSpec

    def lease(*timeouts: float) -> float:
        specs = [CheckSpec(kind="http", name=f"c{n}", timeout=t) for n, t in enumerate(timeouts)]
        return ramp.tick_lease(specs).total_seconds()

    assert lease(3.0, 10.0) == 2 * 10.0 + ramp.TICK_MARGIN
    assert lease(60.0, 60.0) == min(ramp.TICK_LEASE.total_seconds(), 140.0)
    assert lease() == ramp.TICK_MARGIN  # no checks: the tick records a failed check at once


def test_failed_looks_after_an_abort_went_out_spend_no_attempts(
    router: FakeRouter, slo: Script, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from releases.core.errors import ProviderError

    _, previous, canary = setup_ramp()
    ramp.start_ramp(canary)
    run_traffic(canary)
    slo.results = [False]
    assert tick(canary) == "aborting"
    looks = {"n": 0}
    real_current = router.current

    def flaky_current(project: Project) -> Traffic:
        looks["n"] += 1
        if looks["n"] > 1:  # the look before sending works; the ones after it fail
            raise ProviderError("GET rolling-release: 502", provider="vercel", status=502)
        return real_current(project)

    monkeypatch.setattr(router, "current", flaky_current)
    assert run_traffic(canary) == ["confirming"]
    assert router.calls[-1] == ("abort", previous.deployment_id)
    abort = Action.objects.get(release=canary, key=f"traffic:{canary.pk}:abort")
    assert abort.attempts == 1 and abort.status == "confirming"
    monkeypatch.setattr(router, "current", real_current)
    assert run_traffic(canary) == ["succeeded"]
    assert [call for call in router.calls if call[0] == "abort"] == [("abort", previous.deployment_id)]


def test_an_abort_that_never_landed_is_sent_again(
    router: FakeRouter, slo: Script, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The abort's rollback gets a 5xx that changed nothing. A 5xx may have landed, so the retries
    # wait to see it; if they never sent it again, after eight attempts the aborting canary would
    # be held at its stage with its traffic still on it.
    from releases.core.errors import ProviderError
    from releases.workflows.canary import moves as ramp_moves

    _, previous, canary = setup_ramp()
    ramp.start_ramp(canary)
    run_traffic(canary)
    slo.results = [False]
    assert tick(canary) == "aborting"
    real_abort = router.abort

    def lost(project: Project, canary_id: str, previous_id: str) -> None:
        router.calls.append(("abort", previous_id))
        raise ProviderError("POST rollback: 503", provider="vercel", status=503, maybe_delivered=True)

    monkeypatch.setattr(router, "abort", lost)
    assert run_traffic(canary) == ["retrying"]
    assert run_traffic(canary) == ["confirming"]  # it may still land: look, do not resend yet
    monkeypatch.setattr(ramp_moves, "ABORT_LANDS_WITHIN", timedelta(0))
    monkeypatch.setattr(router, "abort", real_abort)
    assert run_traffic(canary) == ["retrying"]  # still ramping: it never landed
    assert run_traffic(canary) == ["succeeded"]
    assert [call for call in router.calls if call[0] == "abort"] == [("abort", previous.deployment_id)] * 2
    canary.refresh_from_db()
    assert canary.state == S.ROLLED_BACK and router.state == "aborted"


class Undecided(Script):
    """SLO checks whose one sequential crash-free check has not decided yet."""

    def __call__(self, project: Project, release: Release, previous: Release | None, **kw: Any) -> SloResult:
        self.calls.append((release.deployment_id, previous.deployment_id if previous else None))
        self.since = kw.get("since")
        check = CheckResult(
            name="crash-free",
            kind="sentry_crash_free",
            ok=False,
            value=1.0,
            baseline=None,
            threshold="sequential test around 0.995",
            reason="undecided: 40 sessions, 0 crashed so far",
            window_seconds=60,
            elapsed_ms=1.0,
            pending=True,
        )
        return SloResult(False, release.deployment_id, None, timezone.now(), (check,))


def test_an_undecided_sequential_check_holds_the_stage_until_max_hold_then_counts_as_failed(
    router: FakeRouter, fakes: Fakes, no_broker: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Undecided()
    monkeypatch.setattr(ramp, "run_checks", script)
    stages = [
        {"percent": 5, "hold": 0, "max_hold": 600},
        {"percent": 25, "hold": 0},
        {"percent": 100, "hold": 0},
    ]
    _, _, canary = setup_ramp({**POLICY, "stages": stages})
    assert ramp.start_ramp(canary)
    run_traffic(canary)
    stage = stage_of(canary)
    for _ in range(3):  # no pass, no failure: the stage holds, however many times it looks
        assert tick(canary) == "undecided"
    stage.refresh_from_db()
    assert (stage.passes, stage.failures, stage.phase) == (0, 0, "running")
    assert script.since == stage.started_at  # judged on the sessions since the stage began
    assert [c.ok for c in RampCheck.objects.filter(release=canary)] == [False] * 3
    # Past max_hold the evidence still has not decided: a failed check, and the ramp aborts.
    Analysis.objects.filter(pk=stage.pk).update(started_at=timezone.now() - timedelta(seconds=601))
    assert tick(canary) == "aborting"
    last = RampCheck.objects.filter(release=canary).order_by("-id").first()
    assert last is not None and last.reasons[0] == "no verdict within max_hold (600s)"
