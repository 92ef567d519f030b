"""The state table: every allowed move works through ``transition()``, everything else is refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from releases.core.outbox import ActionSpec
from releases.core.transitions import transition
from releases.domain.lifecycle import ALLOWED, FINAL, IllegalTransition, ReleaseState, check_allowed
from releases.models import Action, Project, Release, ReleaseEvent
from tests.factories import make_analysis, make_project, make_release

pytestmark = pytest.mark.django_db

S = ReleaseState
STATES = [state.value for state in ReleaseState]
ALLOWED_MOVES = sorted((old, new) for old, nexts in ALLOWED.items() for new in nexts)
ILLEGAL_MOVES = sorted((old, new) for old in STATES for new in STATES if new not in ALLOWED[old])


@pytest.fixture
def project() -> Project:
    return make_project()


def snapshot(release: Release) -> tuple[Any, ...]:
    row = Release.objects.get(pk=release.pk)
    return (row.state, row.updated_at, ReleaseEvent.objects.count(), Action.objects.count())


def test_the_table_names_every_state_and_only_known_states() -> None:
    assert set(ALLOWED) == set([s.value for s in ReleaseState])
    for nexts in ALLOWED.values():
        assert nexts <= set([s.value for s in ReleaseState])


@pytest.mark.parametrize(("old", "new"), ALLOWED_MOVES, ids=[f"{o}->{n}" for o, n in ALLOWED_MOVES])
def test_every_allowed_move_writes_the_state_the_event_and_the_actions(
    project: Project, old: str, new: str
) -> None:
    release = make_release(project, state=old)
    spec = ActionSpec(kind=Action.Kind.SLACK, key=f"slack:{release.pk}:1", payload={"text": "hi"})

    written = transition(release, new, actor="user:alice", reason="because", data={"n": 1}, actions=[spec])

    assert written is not None
    assert [a.key for a in written] == [spec.key]
    assert release.state == new
    assert Release.objects.get(pk=release.pk).state == new
    event = ReleaseEvent.objects.get(release=release)
    assert (event.kind, event.from_state, event.to_state) == ("transition", old, new)
    assert (event.actor, event.reason, event.data) == ("user:alice", "because", {"n": 1})
    action = Action.objects.get(release=release)
    assert (action.kind, action.key, action.payload, action.status) == (
        "slack",
        spec.key,
        {"text": "hi"},
        "pending",
    )


@pytest.mark.parametrize(("old", "new"), ILLEGAL_MOVES, ids=[f"{o}->{n}" for o, n in ILLEGAL_MOVES])
def test_every_illegal_move_raises_and_changes_nothing(project: Project, old: str, new: str) -> None:
    release = make_release(project, state=old)
    before = snapshot(release)
    spec = ActionSpec(kind=Action.Kind.SLACK, key=f"slack:{release.pk}:1")

    with pytest.raises(IllegalTransition) as raised:
        transition(release, new, actor="gatekeeper", reason="nope", actions=[spec])

    assert (raised.value.old, raised.value.new) == (old, new)
    assert f"from {old} to {new}" in str(raised.value)
    assert snapshot(release) == before
    assert release.state == old


@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_states_have_no_way_out(final: str) -> None:
    assert ALLOWED[final] == frozenset()
    for new in [s.value for s in ReleaseState]:
        with pytest.raises(IllegalTransition):
            check_allowed(final, new)


def test_final_states_are_exactly_rolled_back_and_cancelled() -> None:
    assert frozenset({S.ROLLED_BACK, S.CANCELLED}) == FINAL


def test_the_same_idempotency_key_twice_is_one_action_row(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    spec = ActionSpec(kind=Action.Kind.SLACK, key="slack:held-once", payload={"text": "held"})

    first = transition(release, S.HELD, actor="gatekeeper", reason="no data", actions=[spec])
    second = transition(release, S.GATING, actor="user:bob", reason="resumed", actions=[spec])

    assert first is not None and [a.key for a in first] == ["slack:held-once"]
    assert second == []  # the move happened, the intent was already recorded
    assert Action.objects.filter(key="slack:held-once").count() == 1
    assert Release.objects.get(pk=release.pk).state == S.GATING
    assert ReleaseEvent.objects.filter(release=release).count() == 2


def test_an_action_with_a_skip_reason_is_recorded_as_skipped(project: Project) -> None:
    release = make_release(project, state=S.PASSED)
    spec = ActionSpec(kind=Action.Kind.PROMOTE, key="promote:dry", skip_reason="dry run")

    transition(release, S.PROMOTING, actor="gatekeeper", reason="passed", actions=[spec])

    action = Action.objects.get(key="promote:dry")
    assert action.status == Action.Status.SKIPPED
    assert action.result == {"skipped": "dry run"}
    assert action.finished_at is not None


def test_pending_actions_are_dispatched_only_after_commit(
    project: Project, no_broker: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    release = make_release(project, state=S.PASSED)
    specs = [
        ActionSpec(kind=Action.Kind.PROMOTE, key="promote:now"),
        ActionSpec(kind=Action.Kind.SLACK, key="slack:dry", skip_reason="dry run"),
    ]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        transition(release, S.PROMOTING, actor="gatekeeper", reason="passed", actions=specs)
        assert no_broker == []

    promote = Action.objects.get(key="promote:now")
    assert len(callbacks) == 1  # the skipped action is never dispatched
    # Flower and the worker's log name the action's kind and release (the task still takes the id).
    label = f"promote for release {promote.release_id}"
    assert no_broker == [
        (
            "releases.run_action",
            (promote.pk,),
            {
                "countdown": None,
                "retry": False,
                "shadow": f"releases.run_action: {label}",
                "argsrepr": f"({promote.pk}, {label!r})",
            },
        )
    ]


def test_the_move_is_dropped_when_the_row_moved_underneath(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    Release.objects.filter(pk=release.pk).update(state=S.HELD)  # another worker decided first
    spec = ActionSpec(kind=Action.Kind.PROMOTE, key="promote:late")

    result = transition(release, S.PASSED, actor="gatekeeper", reason="late", actions=[spec])

    assert result is None
    assert Release.objects.get(pk=release.pk).state == S.HELD
    assert release.state == S.GATING  # the caller's copy is not rewritten either
    assert not ReleaseEvent.objects.exists()
    assert not Action.objects.exists()


def test_expected_state_is_what_the_compare_and_set_checks(project: Project) -> None:
    release = make_release(project, state=S.HELD)
    stale = Release.objects.get(pk=release.pk)
    stale.state = S.GATING  # an old read of the row

    assert transition(stale, S.PASSED, actor="gatekeeper", reason="stale") is None
    moved = transition(stale, S.GATING, actor="user:bob", reason="resume", expected=S.HELD)

    assert moved == []
    assert Release.objects.get(pk=release.pk).state == S.GATING
    assert ReleaseEvent.objects.get().from_state == S.HELD


def test_fields_are_written_with_the_move(project: Project) -> None:
    release = make_release(project, state=S.GATING)

    transition(release, S.HELD, actor="gatekeeper", reason="x", fields={"verdict": "inconclusive"})

    row = Release.objects.get(pk=release.pk)
    assert (row.state, row.verdict) == (S.HELD, "inconclusive")
    assert row.updated_at == release.updated_at


def test_leaving_a_state_stops_its_open_analysis_and_no_other(project: Project) -> None:
    gated = make_release(project, state=S.GATING, gating_started_at=timezone.now())
    gate = make_analysis(gated)
    transition(gated, S.HELD, actor="user:bob", reason="paused")
    gate.refresh_from_db()
    assert (gate.phase, gate.next_check_at) == ("stopped", None) and gate.ended_at is not None

    # Promoted -> ... the bake watch stops; held -> gating keeps (reopens) the gate's own.
    live = make_release(project, state=S.PROMOTED, promoted_at=timezone.now())
    watch = make_analysis(live, "bake")
    transition(live, S.SUPERSEDED, actor="vercel", reason="newer release live")
    watch.refresh_from_db()
    assert watch.phase == "stopped"
    resumed = make_release(project, state=S.HELD)
    decided = make_analysis(resumed, phase="inconclusive", next_check_at=None)
    transition(resumed, S.GATING, actor="user:bob", reason="resume")
    decided.refresh_from_db()
    assert decided.phase == "inconclusive"  # ended before: a workflow reopens it, not the move


def test_a_release_has_at_most_one_open_analysis(project: Project) -> None:
    from django.db import IntegrityError, transaction

    release = make_release(project, state=S.GATING)
    make_analysis(release)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_analysis(release, "bake")
    make_analysis(release, "bake", phase="passed")  # a closed one beside it is fine


def test_a_saved_event_cannot_be_changed(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    transition(release, S.HELD, actor="gatekeeper", reason="original")
    event = ReleaseEvent.objects.get()

    event.reason = "rewritten"
    with pytest.raises(ValidationError, match="append-only"):
        event.save()

    assert ReleaseEvent.objects.get().reason == "original"


def test_a_saved_event_cannot_be_deleted(project: Project) -> None:
    release = make_release(project, state=S.GATING)
    transition(release, S.HELD, actor="gatekeeper", reason="original")
    event = ReleaseEvent.objects.get()

    with pytest.raises(ValidationError, match="append-only"):
        event.delete()

    assert ReleaseEvent.objects.filter(pk=event.pk).exists()
