"""One set of defaults: the config file, the Project model and the verdict's Policy agree."""

from __future__ import annotations

from dataclasses import fields

import yaml

from releases.domain.policy import CANARY, GATE, CanaryPolicy, Stage
from releases.domain.verdict import Policy
from releases.models import Project
from releases.ops.config import parse
from tests.releases.ops.test_config import project_doc


def test_a_project_left_to_its_defaults_has_the_gate_defaults() -> None:
    project = Project()
    for field in fields(GATE):
        assert getattr(project, field.name) == getattr(GATE, field.name), field.name


def test_a_config_without_a_gate_section_parses_to_the_gate_defaults() -> None:
    doc = project_doc()
    doc.pop("gate", None)
    (parsed,) = parse(yaml.safe_dump({"projects": [doc]}))
    for field in fields(GATE):
        assert parsed[field.name] == getattr(GATE, field.name), field.name


def test_the_verdicts_policy_defaults_are_the_gate_defaults() -> None:
    policy = Policy(min_sessions=1, crash_free_threshold=0.9, max_wait=60.0)
    assert policy.max_consecutive_errors == GATE.max_consecutive_errors
    assert policy.on_timeout == GATE.on_timeout
    assert policy.fail_fast == GATE.fail_fast
    assert policy.early_fail_min_sessions == GATE.early_fail_min_sessions


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
