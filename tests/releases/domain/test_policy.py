"""One set of defaults: the config file, the Project model and the verdict's Policy agree."""

from __future__ import annotations

from dataclasses import fields

import yaml

from releases.domain.gate_policy import Policy
from releases.domain.policy import CANARY, GATE, CanaryPolicy, Stage
from releases.models import Project
from releases.ops.config import parse
from tests.releases.ops.test_config import project_doc

# The project's column for a gate setting, where its name differs from the config key's.
STORED_AS = {"method": "gate_method"}
# What the fixed rule waits for when min_sessions is left out: a default, not a setting of its own.
SETTINGS = [field.name for field in fields(GATE) if field.name != "fixed_min_sessions"]


def test_a_project_left_to_its_defaults_has_the_gate_defaults() -> None:
    project = Project()
    for name in SETTINGS:
        assert getattr(project, STORED_AS.get(name, name)) == getattr(GATE, name), name


def test_a_config_without_a_gate_section_parses_to_the_gate_defaults() -> None:
    doc = project_doc()
    doc.pop("gate", None)
    (parsed,) = parse(yaml.safe_dump({"projects": [doc]}))
    for name in SETTINGS:
        assert parsed[STORED_AS.get(name, name)] == getattr(GATE, name), name


def test_the_verdicts_policy_defaults_are_the_gate_defaults() -> None:
    policy = Policy(crash_free_threshold=0.9, max_wait=60.0)
    assert policy.method == GATE.method
    assert (policy.tolerance, policy.false_promote, policy.false_rollback) == (
        GATE.tolerance,
        GATE.false_promote,
        GATE.false_rollback,
    )
    assert (policy.min_sessions, policy.max_sessions) == (GATE.min_sessions, GATE.max_sessions)
    assert policy.max_consecutive_errors == GATE.max_consecutive_errors
    assert policy.on_timeout == GATE.on_timeout
    assert policy.fail_fast == GATE.fail_fast
    assert policy.early_fail_min_sessions == GATE.early_fail_min_sessions


def test_a_project_policy_left_to_its_defaults_is_the_sequential_test() -> None:
    policy = Project(crash_free_threshold=0.995).policy()
    assert policy.method == "sequential"
    design = policy.design()
    assert (design.good, design.bad) == (0.002, 0.008)
    assert design.floor == 373  # ln(20) / -ln(0.992) = 372.99...: zero crashes in 373 rule out 0.8%


def test_a_stored_canary_policy_reads_with_the_defaults_for_what_it_leaves_out() -> None:
    policy = CanaryPolicy.from_json({"stages": [{"percent": 5, "hold": 600}, {"percent": 100}]})
    assert policy.stages == (Stage(5.0, 600.0), Stage(100.0, 0.0))
    assert (policy.confirmations, policy.confirmation_interval) == (CANARY.confirmations, 30.0)
    assert (policy.abort_on_failure, policy.failures_to_abort, policy.router) == (True, 1, "vercel")


def test_a_config_canary_section_stores_the_canary_defaults() -> None:
    doc = project_doc(
        canary={
            "stages": [{"percent": 5}, {"percent": 100}],
            "checks": [{"kind": "http", "url": "https://status.example.com/slo"}],
        }
    )
    (parsed,) = parse(yaml.safe_dump({"projects": [doc]}))
    stored = CanaryPolicy.from_json(parsed["canary"])
    assert stored.confirmations == CANARY.confirmations
    assert stored.confirmation_interval == CANARY.confirmation_interval
    assert stored.failures_to_abort == CANARY.failures_to_abort
