"""The migration that gives each analysis its own row keeps what the release rows held."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("releases", "0005_release_indexes")]
AFTER = [("releases", "0007_analyses_own_their_counters")]


@pytest.fixture
def migrator(transactional_db: Any) -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    executor.loader.build_graph()
    try:
        yield executor
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_gate_the_bake_watch_and_the_canary_stages_become_analyses(migrator: MigrationExecutor) -> None:
    old = migrator.loader.project_state(BEFORE).apps
    Project, Release = old.get_model("releases", "Project"), old.get_model("releases", "Release")
    GateCheck, RampCheck = old.get_model("releases", "GateCheck"), old.get_model("releases", "RampCheck")
    now = timezone.now()
    # Due later than the test lasts: a worker of the e2e tests, on the same database, would
    # otherwise dispatch these rows and move their next check while this test reads it.
    due = now + timedelta(hours=1)
    project = Project.objects.create(
        name="shop-web",
        vercel_project_id="prj_1",
        sentry_org="acme",
        sentry_project="shop-web",
        min_sessions=500,
        crash_free_threshold=0.995,
        watch_threshold=0.99,
        watch_after_promotion=timedelta(hours=1),
    )
    gating = Release.objects.create(
        project=project,
        deployment_id="dpl_gating",
        state="gating",
        generation=7,
        next_poll_at=due,
        gating_started_at=now - timedelta(minutes=5),
        consecutive_errors=2,
        extra_wait=timedelta(minutes=30),
    )
    GateCheck.objects.create(release=gating, generation=7, phase="gate", outcome="wait", rule="waiting")
    watched = Release.objects.create(
        project=project,
        deployment_id="dpl_watched",
        state="promoted",
        verdict="pass",
        generation=4,
        next_poll_at=due,
        gating_started_at=now - timedelta(hours=1),
        promoted_at=now - timedelta(minutes=10),
        watch_until=now + timedelta(minutes=50),
    )
    GateCheck.objects.create(release=watched, generation=2, phase="gate", outcome="pass", rule="seed_pass")
    GateCheck.objects.create(release=watched, generation=4, phase="bake", outcome="wait", rule="waiting")
    policy = {"stages": [{"percent": 5}, {"percent": 25}, {"percent": 100}]}
    ramping = Release.objects.create(
        project=project,
        deployment_id="dpl_ramping",
        state="ramping",
        generation=9,
        next_poll_at=due,
        gating_started_at=now - timedelta(minutes=20),
        ramp_policy=policy,
        ramp_stage=1,
        ramp_stage_since=now - timedelta(minutes=3),
        ramp_passes=1,
        ramp_paused=True,
    )
    for stage in (0, 0, 1):
        RampCheck.objects.create(release=ramping, stage=stage, percent=5, confirmation=1, ok=True)

    migrator.loader.build_graph()
    migrator.migrate(AFTER)
    new = MigrationExecutor(connection).loader.project_state(AFTER).apps
    Analysis = new.get_model("releases", "Analysis")
    NewCheck, NewRampCheck = new.get_model("releases", "GateCheck"), new.get_model("releases", "RampCheck")

    (gate,) = Analysis.objects.filter(release_id=gating.pk)
    assert (gate.kind, gate.phase, gate.generation, gate.next_check_at) == ("gate", "running", 7, due)
    assert (gate.consecutive_errors, gate.extra_wait) == (2, timedelta(minutes=30))
    assert gate.started_at == gating.gating_started_at
    assert (gate.policy["min_sessions"], gate.policy["crash_free_threshold"]) == (500, 0.995)

    kinds = {a.kind: a for a in Analysis.objects.filter(release_id=watched.pk)}
    assert (kinds["gate"].phase, kinds["gate"].next_check_at) == ("passed", None)
    bake = kinds["bake"]
    assert (bake.phase, bake.generation, bake.next_check_at) == ("running", 4, due)
    assert bake.ends_at == watched.watch_until and bake.policy["crash_free_threshold"] == 0.99
    assert sorted(
        NewCheck.objects.filter(release_id=watched.pk).values_list("analysis__kind", flat=True)
    ) == [
        "bake",
        "gate",
    ]

    stages = list(Analysis.objects.filter(release_id=ramping.pk).order_by("stage"))
    assert [(a.kind, a.stage, a.phase) for a in stages] == [("canary", 0, "passed"), ("canary", 1, "paused")]
    current = stages[1]
    assert (current.generation, current.passes, current.policy) == (9, 1, policy)
    assert current.started_at == ramping.ramp_stage_since
    by_stage = dict(NewRampCheck.objects.filter(release_id=ramping.pk).values_list("id", "analysis__stage"))
    assert sorted(by_stage.values()) == [0, 0, 1]
    # Every check belongs to an analysis of its own release, and a release has one open at most.
    assert not NewCheck.objects.filter(analysis__isnull=True).exists()
    assert Analysis.objects.filter(phase__in=["waiting", "running", "paused"]).count() == 3


def test_projects_on_the_old_default_sample_get_the_sequential_test_with_a_derived_floor(
    transactional_db: Any,
) -> None:
    before, after = [("releases", "0007_analyses_own_their_counters")], [("releases", "0008_sequential_gate")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("releases", "Project")
        fields = {"sentry_org": "acme", "sentry_project": "shop-web", "crash_free_threshold": 0.995}
        old.objects.create(name="default", vercel_project_id="prj_1", min_sessions=500, **fields)
        old.objects.create(name="chosen", vercel_project_id="prj_2", min_sessions=1200, **fields)
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps.get_model("releases", "Project")
        rows = {p.name: (p.gate_method, p.min_sessions, p.tolerance) for p in new.objects.all()}
        assert rows == {"default": ("sequential", None, 0.003), "chosen": ("sequential", 1200, 0.003)}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
