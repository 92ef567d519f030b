"""`manage.py replay_scenario`: a scenario played through the simulator, its verdicts printed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from releases.models import Release
from tests.conftest import Simulator
from tests.e2e.conftest import E2E_PROJECT

pytestmark = pytest.mark.e2e


def scenario(tmp_path: Path, *deploys: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "projects": [
                    {
                        "id": E2E_PROJECT,
                        "name": "shop-web",
                        "domains": ["shop.example.com"],
                        "sentry": {"org": "acme", "project": "shop-web", "environment": "production"},
                    }
                ],
                "events": [{"at": 0.2 * i, "deploy": deploy} for i, deploy in enumerate(deploys)],
            }
        )
    )
    return path


def staged(crash_rate: float) -> dict[str, Any]:
    return {
        "project_id": E2E_PROJECT,
        "live": False,
        "traffic": {"sessions_per_minute": 12000, "crash_rate": crash_rate},
        "webhooks": ["deployment.succeeded"],
    }


def test_replay_prints_each_verdict_with_its_figures(project: Any, e2e: Simulator, tmp_path: Path) -> None:
    out = io.StringIO()
    call_command(
        "replay_scenario",
        str(scenario(tmp_path, staged(0.0), staged(0.05))),
        simulator=e2e.url,
        timeout=60,
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("playing ") and "2 deployment(s) to gate" in lines[0]
    verdicts = sorted(Release.objects.exclude(verdict="").values_list("verdict", "state"))
    assert verdicts == [("fail", "rolled_back"), ("pass", "promoted")]
    assert lines[1].split()[:4] == ["PROJECT", "RELEASE", "STATE", "METHOD"]
    printed = "\n".join(lines[2:])
    assert "promoted" in printed and "rolled_back" in printed
    assert "99.50%" in printed and "evidence" in printed


def test_replay_without_a_simulator_says_so(project: Any, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="did not take the scenario"):
        call_command(
            "replay_scenario", str(scenario(tmp_path, staged(0.0))), simulator="http://127.0.0.1:9", timeout=1
        )
