"""`manage.py gate_report`: a header row, then each release with the figures and what decided it."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from releases.domain.evidence import Evidence
from releases.domain.verdict import evaluate
from tests.factories import make_analysis, make_project, make_release

pytestmark = pytest.mark.django_db


def test_it_prints_a_header_and_the_evidence_that_decided_each_release() -> None:
    project = make_project(gate_method="sequential", min_sessions=None)
    now = timezone.now()
    verdict = evaluate(project.policy(), Evidence(1240, 1, 300.0))
    release = make_release(
        project,
        version="a1b2c3d4e5f6a7b8",
        state="promoted",
        sessions=1240,
        crashed=1,
        crash_free_rate=1239 / 1240,
        verdict="pass",
        verdict_rule=verdict.rule,
        verdict_reasons=list(verdict.reasons),
        gating_started_at=now - timedelta(minutes=5),
        decided_at=now,
    )
    make_analysis(release)
    out = StringIO()
    call_command("gate_report", stdout=out)
    header, line = out.getvalue().splitlines()
    assert header.split()[:9] == [
        "PROJECT",
        "RELEASE",
        "STATE",
        "METHOD",
        "SESSIONS",
        "CRASHED",
        "CRASH-FREE",
        "THRESHOLD",
        "TOOK",
    ]
    assert line.split()[:9] == [
        "shop-web",
        "a1b2c3d4e5f6",
        "promoted",
        "sequential",
        "1,240",
        "1",
        "99.92%",
        "99.50%",
        "5m",
    ]
    assert "evidence 779:1 that the crash-free rate is 99.80% or better rather than 99.20%" in line


def test_with_no_releases_it_says_so() -> None:
    out = StringIO()
    call_command("gate_report", stdout=out)
    assert out.getvalue() == "no releases yet\n"
