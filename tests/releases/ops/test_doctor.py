"""``manage.py doctor`` against the simulator answering as the vendors do: a healthy install passes
every check, and each usual mistake fails its own line with what to fix."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from releases.models import Project
from tests.conftest import Simulator
from tests.factories import make_project

PROJECT = "prj_doctor000000000000000001"
KEY = "doctor0routing0key0000000000abcd"  # 32 letters and digits


@pytest.fixture
def vendors(module_simulator: Simulator, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """Vercel serves a live deployment on the domain, Sentry has its sessions, Slack its channel."""
    module_simulator.control("POST", "/reset")
    for name, value in module_simulator.provider_env().items():
        setattr(settings, name, value)
    sentry = {"org": "acme", "project": "shop-web", "project_id": 4507, "environment": "production"}
    module_simulator.control(
        "POST",
        "/vercel/projects",
        json={"id": PROJECT, "name": "shop-web", "domains": ["shop.example.com"], "sentry": sentry},
    )
    module_simulator.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": PROJECT,
            "id": "dpl_doctorLive00000000000001",
            "live": True,
            "target": "production",
            "traffic": {"release": "web@1.4.2", "sessions_per_minute": 60, "start": time.time() - 600},
            "webhooks": [],
        },
    )
    module_simulator.control("POST", "/slack/channels", json={"name": "releases"})
    monkeypatch.setenv("DOCTOR_PD_KEY", KEY)
    return module_simulator


def installed(**overrides: Any) -> Project:
    values = {
        "vercel_project_id": PROJECT,
        "production_domains": ["shop.example.com"],
        "slack_channel": "#releases",
        "pagerduty_routing_key_env": "DOCTOR_PD_KEY",
        "sentry_project_id": None,
        "sentry_project_slug": "",
        **overrides,
    }
    return make_project(**values)


def doctor() -> tuple[list[str], str]:
    """(lines, summary): the summary is the CommandError's text when a check failed."""
    out = StringIO()
    try:
        call_command("doctor", stdout=out)
        lines = out.getvalue().splitlines()
        return lines[:-1], lines[-1]
    except CommandError as failed:
        return out.getvalue().splitlines(), str(failed)


def line(lines: list[str], check: str) -> str:
    (found,) = [entry for entry in lines if f"  {check} " in entry]
    return found


@pytest.mark.django_db
def test_a_healthy_install_passes_every_check(vendors: Simulator) -> None:
    installed()

    lines, summary = doctor()

    assert summary == f"{len(lines)} ok, 0 warning(s), 0 failed"
    assert all(entry.startswith("ok ") for entry in lines), lines
    assert "shop-web is project 4507" in line(lines, "sentry.project")
    assert "latest release web@1.4.2" in line(lines, "sentry.sessions")
    assert "shop.example.com serves dpl_doctorLive" in line(lines, "vercel.domains")
    assert "the bot is in it" in line(lines, "slack.channel")
    assert Project.objects.get().sentry_project_id is None  # read-only: nothing stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "project", "check", "says"),
    [
        ({}, {"sentry_project": "shop-wbe"}, "sentry.project", "Sentry has no project 'shop-wbe'"),
        ({}, {"sentry_environment": "prod"}, "sentry.environment", "no environment 'prod' in shop-web"),
        ({}, {"sentry_org": "acne"}, "sentry.org", "Sentry answered 404 for organisation 'acne'"),
        ({"scopes": ["org:read"]}, {}, "sentry.project", "project:read"),
        ({"role": "VIEWER"}, {}, "vercel.promote", "the token's role is VIEWER: it cannot promote"),
        (
            {},
            {"production_domains": ["www.example.com"]},
            "vercel.domains",
            "not a domain of this Vercel project",
        ),
        ({}, {"vercel_project_id": "prj_nope"}, "vercel.project", "Vercel has no project prj_nope"),
        ({"not_in_channel": True}, {}, "slack.channel", "the bot is not in #releases: /invite"),
        (
            {},
            {"slack_channel": "#no-such-channel"},
            "slack.channel",
            "no channel #no-such-channel the bot can see",
        ),
        ({"pd_key": "not-a-key"}, {}, "pagerduty.key", "does not hold an integration key"),
        ({}, {"pagerduty_routing_key_env": "DOCTOR_UNSET"}, "pagerduty.key", "DOCTOR_UNSET is not set"),
    ],
)
def test_each_mistake_fails_its_line_with_what_to_fix(  # noqa: PLR0917 - pytest's fixtures and cases
    vendors: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, Any],
    project: dict[str, Any],
    check: str,
    says: str,
) -> None:
    if "scopes" in setup:
        vendors.control("POST", "/sentry/scopes", json={"scopes": setup["scopes"]})
    if "role" in setup:
        vendors.control("POST", "/vercel/token", json={"role": setup["role"]})
        # A team's project: the token's role in that team is what decides.
        team = {"vercel_project_id": "prj_team", "vercel_team_id": "team_doctor", "production_domains": []}
        project = {**project, **team}
        vendors.control(
            "POST", "/vercel/projects", json={"id": "prj_team", "name": "t", "team_id": "team_doctor"}
        )
    if "not_in_channel" in setup:
        vendors.control("POST", "/slack/channels", json={"name": "releases", "not_in_channel": True})
    if "pd_key" in setup:
        monkeypatch.setenv("DOCTOR_PD_KEY", setup["pd_key"])
    installed(**project)

    lines, summary = doctor()

    failing = line(lines, check)
    assert failing.startswith("FAIL") and says in failing, lines
    assert summary.endswith("1 failed"), lines


@pytest.mark.django_db
def test_rolling_releases_without_a_canary_and_no_pagerduty_are_warnings(vendors: Simulator) -> None:
    vendors.control("PATCH", f"/vercel/projects/{PROJECT}", json={"rolling_release": {"stages": [10, 100]}})
    installed(pagerduty_routing_key_env="")

    lines, summary = doctor()

    assert line(lines, "vercel.rolling").startswith("warn") and "add canary:" in line(lines, "vercel.rolling")
    assert line(lines, "pagerduty.key").startswith("warn")
    assert summary.endswith("2 warning(s), 0 failed")


@pytest.mark.django_db
def test_with_no_projects_it_says_to_sync_first(vendors: Simulator) -> None:
    with pytest.raises(CommandError, match="run sync_config"):
        call_command("doctor", stdout=StringIO())
