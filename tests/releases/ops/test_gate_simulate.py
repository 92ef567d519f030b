"""`manage.py gate_simulate`: a policy's error rates and time to a decision, before turning it on."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.factories import make_project


def simulate(*args: str) -> list[list[str]]:
    out = StringIO()
    call_command("gate_simulate", *args, stdout=out)
    lines = out.getvalue().splitlines()
    header = lines.index(next(line for line in lines if line.lstrip().startswith("crash-free")))
    return [line.split() for line in lines[header + 1 :]]


def row(rows: list[list[str]], rate: str) -> dict[str, float]:
    (found,) = [r for r in rows if r[0] == rate]
    return {"promote": float(found[1]), "rollback": float(found[2]), "timeout": float(found[3])}


def test_it_prints_the_error_rates_the_policy_states_at_its_good_and_bad_rates() -> None:
    rows = simulate("--threshold", "0.995", "--tolerance", "0.003", "--sessions-per-minute", "40")
    assert row(rows, "99.20%")["promote"] <= 0.05
    assert row(rows, "99.80%")["rollback"] <= 0.05
    assert row(rows, "97.10%")["rollback"] == 1.0


def test_too_little_traffic_shows_up_as_timeouts_not_as_promotes() -> None:
    rows = simulate("--sessions-per-minute", "1", "--rates", "0.999")
    assert row(rows, "99.90%")["promote"] == 0.0
    assert row(rows, "99.90%")["timeout"] > 0.95


@pytest.mark.django_db
def test_it_starts_from_a_projects_policy() -> None:
    make_project(name="legacy", gate_method="fixed", min_sessions=500)
    out = StringIO()
    call_command("gate_simulate", "--project", "legacy", "--sessions-per-minute", "25", stdout=out)
    assert "policy: fixed, 500 sessions at 99.50% crash-free" in out.getvalue()
    rows = simulate("--project", "legacy", "--sessions-per-minute", "25", "--rates", "0.992")
    assert row(rows, "99.20%")["promote"] == pytest.approx(0.237, abs=0.001)  # the fixed rule's 1 in 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sessions-per-minute", "40", "--tolerance", "0.0005"], "too few to tell"),
        (["--sessions-per-minute", "0"], "must be above 0"),
        (["--sessions-per-minute", "40", "--rates", "99.5"], "--rates"),
        (["--sessions-per-minute", "40", "--max-wait", "soon"], "soon"),
    ],
)
def test_a_policy_it_cannot_run_is_refused_with_the_reason(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("gate_simulate", *args, stdout=StringIO())
