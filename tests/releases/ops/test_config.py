"""gatekeeper.yaml: parsed whole, every problem named by its path, and applied by sync_config."""

from __future__ import annotations

import copy
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.core.management import CommandError, call_command

from releases.domain.release_names import render_release
from releases.integrations.sentry.client import SentryClient
from releases.integrations.vercel.client import VercelClient
from releases.models import Project
from releases.ops import sync as sync_module
from releases.ops.config import ConfigError, parse, parse_duration
from releases.workflows import sentry_project
from tests.factories import make_project

# The example gatekeeper.yaml of the design (the README, "Projects as code"), verbatim.
DESIGN_EXAMPLE = """\
projects:
  - name: shop-web
    vercel:
      project_id: prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7
      team_id: team_Ab12Cd34Ef56Gh78Ij90Kl12      # optional
      production_domains: [shop.example.com]
      start_on: deployment.succeeded             # or deployment.ready
    sentry:
      org: acme
      project: shop-web                          # slug or numeric id
      environment: production
      release: "{meta[githubCommitSha]}"         # how a Vercel deployment names its Sentry release
    slack:
      channel: "#releases"
    pagerduty:
      routing_key_env: PAGERDUTY_ROUTING_KEY     # the env var that holds the key; never the key itself
    gate:
      method: sequential                         # or fixed (the seed rule)
      crash_free_threshold: 0.995
      tolerance: 0.003                           # good >= 99.8%, bad <= 99.2%
      false_promote: 0.05
      false_rollback: 0.05
      min_sessions: 500                          # floor: nothing promotes below it
      max_sessions: 5000
      no_traffic_after: 10m
      on_no_traffic: hold                        # hold | rollback
      poll_interval: 60s
      max_wait: 2h
      on_timeout: hold                           # hold | rollback
      max_consecutive_errors: 4
      fail_fast: true
      watch_after_promotion: 60m
      dry_run: false                             # decide and report, never act
    canary:                                      # optional: ramp instead of a single promotion
      stages: [{percent: 5, hold: 10m}, {percent: 25, hold: 10m}, {percent: 100}]
      confirmations: 2
      confirmation_interval: 30s
      abort_on_failure: true
      checks:
        - {kind: sentry_error_rate, max: 0.01, window: 5m}
        - {kind: sentry_crash_free, min: 0.995, window: 5m}
        - {kind: datadog_query, query: "sum:next.server.request.error{deployment_id:$DEPLOYMENT_ID}.as_rate()", max: 0.01}
        - {kind: posthog_exceptions, max: 10, window: 5m}
        - {kind: http, url: "https://status.example.com/slo", timeout: 10s}
        - {kind: sentry_error_rate, relative_to_previous: 2.0, window: 5m}
"""  # noqa: E501

MINIMAL: dict[str, Any] = {
    "name": "shop-web",
    "vercel": {"project_id": "prj_shop"},
    "sentry": {"org": "acme", "project": "shop-web"},
    "gate": {"min_sessions": 500},
}


def project_doc(**sections: Any) -> dict[str, Any]:
    """The minimal project with some sections merged in (a value of None deletes the key)."""
    doc = copy.deepcopy(MINIMAL)
    for section, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(section), dict):
            doc[section].update(value)
            doc[section] = {k: v for k, v in doc[section].items() if v is not None}
        elif value is None:
            doc.pop(section, None)
        else:
            doc[section] = value
    return doc


def problems_of(*projects: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": list(projects)}))
    return refused.value.problems


# --- parse -------------------------------------------------------------------------------------


def test_the_design_example_parses_to_the_expected_fields() -> None:
    (project,) = parse(DESIGN_EXAMPLE)

    assert project == {
        "name": "shop-web",
        "allow_private_addresses": False,
        "vercel_project_id": "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7",
        "vercel_team_id": "team_Ab12Cd34Ef56Gh78Ij90Kl12",
        "production_domains": ["shop.example.com"],
        "start_on": "deployment.succeeded",
        "sentry_org": "acme",
        "sentry_project": "shop-web",
        "sentry_environment": "production",
        "release_template": "{meta[githubCommitSha]}",
        "slack_channel": "#releases",
        "pagerduty_routing_key_env": "PAGERDUTY_ROUTING_KEY",
        "gate_method": "sequential",
        "tolerance": 0.003,
        "false_promote": 0.05,
        "false_rollback": 0.05,
        "max_sessions": 5000,
        "min_sessions": 500,
        "crash_free_threshold": 0.995,
        "poll_interval": timedelta(seconds=60),
        "max_wait": timedelta(hours=2),
        "on_timeout": "hold",
        "no_traffic_after": timedelta(minutes=10),
        "on_no_traffic": "hold",
        "gate_checks": [],
        "max_consecutive_errors": 4,
        "fail_fast": True,
        "watch_after_promotion": timedelta(minutes=60),
        "dry_run": False,
        "early_fail_confidence": None,
        "early_fail_min_sessions": 50,
        "watch_threshold": None,
        "watch_false_alarm": 0.01,
        "on_warning": "notify",
        "canary": project["canary"],
    }


def test_the_design_example_canary_is_normalised_to_seconds() -> None:
    (project,) = parse(DESIGN_EXAMPLE)
    canary = project["canary"]

    assert canary["stages"] == [
        {"percent": 5, "hold": 600.0, "max_hold": 1800.0},
        {"percent": 25, "hold": 600.0, "max_hold": 1800.0},
        {"percent": 100, "hold": 0.0, "max_hold": 1800.0},
    ]
    assert canary["confirmations"] == 2
    assert canary["confirmation_interval"] == 30.0
    assert canary["abort_on_failure"] is True
    assert canary["failures_to_abort"] == 1
    assert [check["kind"] for check in canary["checks"]] == [
        "sentry_error_rate",
        "sentry_crash_free",
        "datadog_query",
        "posthog_exceptions",
        "http",
        "sentry_error_rate",
    ]
    assert "$DEPLOYMENT_ID" in canary["checks"][2]["query"]


def test_a_minimal_project_gets_the_documented_defaults() -> None:
    (project,) = parse(yaml.safe_dump({"projects": [project_doc(gate=None)]}))

    assert project["gate_method"] == "sequential"
    assert (project["tolerance"], project["false_promote"], project["false_rollback"]) == (0.003, 0.05, 0.05)
    assert project["min_sessions"] is None  # derived: the fewest sessions that rule out the bad rate
    assert project["max_sessions"] == 5000
    assert project["crash_free_threshold"] == 0.995
    assert project["poll_interval"] == timedelta(seconds=60)
    assert project["max_wait"] == timedelta(hours=2)
    assert project["on_timeout"] == "hold"
    assert project["start_on"] == "deployment.succeeded"
    assert project["release_template"] == "{meta[githubCommitSha]}"
    assert project["canary"] is None


def test_an_unknown_key_is_refused_with_a_did_you_mean_hint() -> None:
    problems = problems_of(project_doc(gate={"min_session": 500}))

    assert "projects[0].gate.min_session: unknown key (did you mean min_sessions?)" in problems


def test_an_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": [project_doc()], "projets": []}))

    assert refused.value.problems == ["projets: unknown top-level key"]


@pytest.mark.parametrize(
    ("sections", "path"),
    [
        ({"vercel": {"project_id": None}}, "projects[0].vercel.project_id"),
        ({"sentry": {"org": None}}, "projects[0].sentry.org"),
        ({"sentry": {"project": None}}, "projects[0].sentry.project"),
        ({"name": None}, "projects[0].name"),
    ],
    ids=["vercel.project_id", "sentry.org", "sentry.project", "name"],
)
def test_a_missing_required_field_is_refused_by_its_path(sections: dict[str, Any], path: str) -> None:
    assert problems_of(project_doc(**sections)) == [f"{path}: is required"]


def test_a_threshold_written_as_a_percentage_is_refused_with_the_fraction_to_write() -> None:
    problems = problems_of(project_doc(gate={"crash_free_threshold": 99.5}))

    assert problems == [
        "projects[0].gate.crash_free_threshold: is the crash-free fraction: write 0.995 for 99.5% crash-free"
    ]


def test_a_threshold_above_one_that_is_no_percentage_says_what_the_field_means() -> None:
    problems = problems_of(project_doc(gate={"crash_free_threshold": 1.5}))

    assert problems == [
        "projects[0].gate.crash_free_threshold: is the crash-free fraction, e.g. 0.995 for 99.5% crash-free "
        "(got 1.5)"
    ]


@pytest.mark.parametrize("min_sessions", [-5, 0])
def test_min_sessions_below_one_is_refused(min_sessions: int) -> None:
    problems = problems_of(project_doc(gate={"min_sessions": min_sessions}))

    assert problems == ["projects[0].gate.min_sessions: must be at least 1"]


def test_a_duration_in_words_is_refused() -> None:
    problems = problems_of(project_doc(gate={"poll_interval": "10 minutes"}))

    assert len(problems) == 1
    assert problems[0].startswith("projects[0].gate.poll_interval: '10 minutes' is not a duration")


def test_an_unknown_on_timeout_is_refused() -> None:
    problems = problems_of(project_doc(gate={"on_timeout": "maybe"}))

    assert problems == ["projects[0].gate.on_timeout: must be hold or rollback"]


@pytest.mark.parametrize(("poll_interval", "max_wait"), [("60s", "60s"), ("2m", "90s")])
def test_a_max_wait_not_longer_than_the_poll_interval_is_refused(poll_interval: str, max_wait: str) -> None:
    problems = problems_of(project_doc(gate={"poll_interval": poll_interval, "max_wait": max_wait}))

    assert problems == ["projects[0].gate.max_wait: must be longer than poll_interval"]


@pytest.mark.parametrize(
    "value",
    [
        "e93facc04764012d7bfb002500d5d1a6",  # a PagerDuty integration key, pasted
        "R015ABCDEFGHIJKLMNOPQRSTUVWXYZ12",  # a global event routing key
        "3a93facc04764012d7bfb002500d5d1a",
        "key with spaces",
    ],
)
def test_a_routing_key_instead_of_a_variable_name_is_refused(value: str) -> None:
    problems = problems_of(project_doc(pagerduty={"routing_key_env": value}))

    assert problems == [
        "projects[0].pagerduty.routing_key_env: must name an environment variable, never hold the key itself"
    ]


@pytest.mark.parametrize("value", ["PAGERDUTY_ROUTING_KEY", "PD_KEY_SHOP_WEB_2", "pd_key"])
def test_a_variable_name_is_accepted_as_routing_key_env(value: str) -> None:
    (project,) = parse(yaml.safe_dump({"projects": [project_doc(pagerduty={"routing_key_env": value})]}))

    assert project["pagerduty_routing_key_env"] == value


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{meta.__class__}",
            "projects[0].sentry.release: {meta.__class__}: only meta[key] lookups are allowed",
        ),
        ("{foo}", "projects[0].sentry.release: unknown field {foo}"),
        ("{id.__class__}", "projects[0].sentry.release: {id.__class__}: only meta[key] lookups are allowed"),
        (
            "{meta[a]!r}",
            "projects[0].sentry.release: {meta[a]}: format specs and conversions are not allowed",
        ),
    ],
)
def test_a_release_template_may_only_read_deployment_fields(template: str, expected: str) -> None:
    problems = problems_of(project_doc(sentry={"release": template}))

    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_a_value_longer_than_its_column_is_refused_by_its_path() -> None:
    problems = problems_of(project_doc(name="a" * 101, vercel={"project_id": "prj_" + "x" * 100}))

    assert problems == [
        "projects[0].name: at most 100 characters, got 101",
        "projects[0].vercel.project_id: at most 100 characters, got 104",
    ]


def test_duplicate_project_names_are_refused() -> None:
    second = project_doc(vercel={"project_id": "prj_other"})

    assert problems_of(project_doc(), second) == ["projects[1].name: same as projects[0]"]


def test_duplicate_vercel_project_ids_are_refused() -> None:
    second = project_doc(name="shop-api")

    assert problems_of(project_doc(), second) == ["projects[1].vercel.project_id: same as projects[0]"]


def test_a_file_that_is_not_yaml_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        parse("projects: [\n  - name: {unclosed")

    assert len(refused.value.problems) == 1
    assert refused.value.problems[0].startswith("not valid YAML")


@pytest.mark.parametrize("text", ["", "name: shop-web\n", "projects: shop-web\n", "- name: shop-web\n"])
def test_a_file_without_a_projects_list_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(text)

    assert refused.value.problems == ["projects: the file must have a top-level list 'projects:'"]


def test_every_problem_in_a_file_is_reported_together() -> None:
    bad = project_doc(
        gate={"crash_free_threshold": 99.5, "on_timeout": "maybe", "poll_interval": "10 minutes"},
        sentry={"org": None},
    )
    also_bad = project_doc(name="shop-api", vercel={"project_id": "prj_api", "projct_id": "x"})

    problems = problems_of(bad, also_bad)

    assert {p.split(":")[0] for p in problems} == {
        "projects[0].sentry.org",
        "projects[0].gate.crash_free_threshold",
        "projects[0].gate.on_timeout",
        "projects[0].gate.poll_interval",
        "projects[1].vercel.projct_id",
    }


# --- render_release and parse_duration ---------------------------------------------------------


def test_the_default_template_names_the_release_by_commit_sha() -> None:
    deployment = {"id": "dpl_1", "meta": {"githubCommitSha": "4e1b9c07"}}

    assert render_release("{meta[githubCommitSha]}", deployment) == "4e1b9c07"


def test_a_template_can_prefix_a_meta_value() -> None:
    deployment = {"id": "dpl_1", "meta": {"appVersion": "2.4.1", "githubCommitSha": "4e1b9c07"}}

    assert render_release("web@{meta[appVersion]}", deployment) == "web@2.4.1"


def test_a_missing_meta_key_raises_key_error() -> None:
    with pytest.raises(KeyError, match="appVersion"):
        render_release("web@{meta[appVersion]}", {"id": "dpl_1", "meta": {"githubCommitSha": "4e1b"}})


def test_a_template_that_renders_empty_raises_key_error() -> None:
    with pytest.raises(KeyError):
        render_release("{meta[githubCommitSha]}", {"meta": {"githubCommitSha": "  "}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations_are_read_with_their_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("value", ["10 minutes", "10", "", "-5s", "1w", "m", 60, 1.5, True, None])
def test_durations_without_a_known_unit_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="90s, 10m, 2h"):
        parse_duration(value)


# --- sync_config -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def sentry_knows_every_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """sync_config asks Sentry which project each entry is; here Sentry knows them all, each by
    its slug (tests/releases/ops/test_sentry_projects.py asks the simulator what Sentry says)."""

    def answer(request: httpx.Request) -> httpx.Response:
        slug = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        return httpx.Response(200, json={"id": str(4000 + len(slug)), "slug": slug, "name": slug})

    client = SentryClient("https://sentry.test", "t", transport=httpx.MockTransport(answer))
    monkeypatch.setattr(sentry_project.clients, "sentry", lambda timeout=None: client)
    # And Vercel's projects have no Rolling Releases: nothing to report.
    no_rolling = httpx.MockTransport(lambda request: httpx.Response(200, json={"rollingRelease": None}))
    monkeypatch.setattr(
        sync_module,
        "VercelClient",
        lambda url, token, **kwargs: VercelClient(url, token, **{**kwargs, "transport": no_rolling}),
    )


def write(path: Path, *projects: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"projects": list(projects)}))
    return path


def sync(*args: str) -> list[str]:
    out = StringIO()
    call_command("sync_config", *args, stdout=out)
    return out.getvalue().splitlines()


def db_state() -> list[dict[str, Any]]:
    # sentry_resolved_at says when Sentry last confirmed the project: every sync moves it.
    return [
        {k: v for k, v in row.items() if k != "sentry_resolved_at"}
        for row in Project.objects.order_by("name").values()
    ]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write(tmp_path / "gatekeeper.yaml", project_doc())


@pytest.mark.django_db
def test_sync_creates_the_projects_in_the_file(config: Path) -> None:
    assert sync(str(config)) == ["created shop-web"]

    project = Project.objects.get()
    assert (project.name, project.vercel_project_id, project.min_sessions) == ("shop-web", "prj_shop", 500)
    assert project.synced_from == str(config)


@pytest.mark.django_db
def test_syncing_the_design_example_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(DESIGN_EXAMPLE)
    assert sync(str(path)) == ["created shop-web"]
    before = db_state()

    assert sync(str(path)) == ["unchanged shop-web"]

    assert db_state() == before
    assert before[0]["canary"]["stages"][0] == {"percent": 5, "hold": 600.0, "max_hold": 1800.0}


@pytest.mark.django_db
def test_syncing_the_same_file_again_reports_unchanged_and_writes_nothing(config: Path) -> None:
    sync(str(config))
    updated_at = Project.objects.get().updated_at

    assert sync(str(config)) == ["unchanged shop-web"]

    assert Project.objects.get().updated_at == updated_at


@pytest.mark.django_db
def test_an_edited_value_is_updated_and_reported_with_old_and_new(config: Path) -> None:
    sync(str(config))
    updated_at = Project.objects.get().updated_at
    write(config, project_doc(gate={"min_sessions": 1000}))

    assert sync(str(config)) == ["updated shop-web: min_sessions: 500 -> 1000"]

    project = Project.objects.get()
    assert project.min_sessions == 1000
    assert project.updated_at > updated_at


@pytest.mark.django_db
def test_an_edited_duration_is_reported_in_seconds(config: Path) -> None:
    sync(str(config))
    write(config, project_doc(gate={"poll_interval": "30s"}))

    assert sync(str(config)) == ["updated shop-web: poll_interval: 60s -> 30s"]
    assert Project.objects.get().poll_interval == timedelta(seconds=30)


@pytest.mark.django_db
def test_a_bad_file_is_refused_naming_the_field_and_leaves_the_database_as_it_was(config: Path) -> None:
    sync(str(config))
    before = db_state()
    write(config, project_doc(gate={"min_sessions": 1000, "crash_free_threshold": 99.5}))

    with pytest.raises(
        CommandError, match=r"projects\[0\]\.gate\.crash_free_threshold: is the crash-free fraction"
    ):
        sync(str(config))

    assert db_state() == before


@pytest.mark.django_db
def test_a_bad_second_project_refuses_the_whole_file(tmp_path: Path) -> None:
    make_project(name="legacy", vercel_project_id="prj_legacy")
    before = db_state()
    path = write(
        tmp_path / "gatekeeper.yaml",
        project_doc(),
        project_doc(name="shop-api", vercel={"project_id": "prj_api"}, gate={"on_timeout": "maybe"}),
    )

    with pytest.raises(CommandError, match=r"projects\[1\]\.gate\.on_timeout"):
        sync(str(path))

    assert db_state() == before


@pytest.mark.django_db
def test_a_second_project_that_clashes_with_the_database_refuses_the_whole_file(tmp_path: Path) -> None:
    # Valid on its own, but its Vercel project id already belongs to another project.
    make_project(name="legacy", vercel_project_id="prj_legacy")
    before = db_state()
    path = write(
        tmp_path / "gatekeeper.yaml",
        project_doc(),
        project_doc(name="shop-api", vercel={"project_id": "prj_legacy"}),
    )

    with pytest.raises(CommandError, match="conflicts with a project already in the database"):
        sync(str(path))

    assert db_state() == before


@pytest.mark.django_db
def test_a_name_too_long_for_the_database_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = write(
        tmp_path / "gatekeeper.yaml",
        project_doc(),
        project_doc(name="x" * 120, vercel={"project_id": "prj_x"}),
    )

    with pytest.raises(CommandError, match=r"projects\[1\]\.name: at most 100 characters"):
        sync(str(path))

    assert not Project.objects.exists()


@pytest.mark.django_db
def test_a_project_missing_from_the_file_is_kept_and_reported(config: Path) -> None:
    make_project(name="legacy", vercel_project_id="prj_legacy")

    lines = sync(str(config))

    assert lines == ["created shop-web", "kept legacy (not in the file; its history stays)"]
    assert set(Project.objects.values_list("name", flat=True)) == {"legacy", "shop-web"}


@pytest.mark.django_db
def test_check_validates_without_writing(config: Path) -> None:
    assert sync(str(config), "--check") == [f"{config}: valid, 1 project(s)"]

    assert not Project.objects.exists()


@pytest.mark.django_db
def test_check_refuses_a_bad_file(config: Path) -> None:
    write(config, project_doc(gate={"on_timeout": "maybe"}))

    with pytest.raises(CommandError, match=r"projects\[0\]\.gate\.on_timeout"):
        sync(str(config), "--check")


@pytest.mark.django_db
def test_the_default_path_comes_from_settings(config: Path, settings: Any) -> None:
    settings.GATEKEEPER_CONFIG = str(config)

    assert sync() == ["created shop-web"]
    assert Project.objects.get().synced_from == str(config)


@pytest.mark.django_db
def test_a_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(CommandError, match=r"nope\.yaml: cannot read"):
        sync(str(missing))


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"method": "bayes"}, "gate.method: must be sequential or fixed"),
        ({"tolerance": 0.005}, "gate.tolerance: 0.005 around crash_free_threshold 0.995 must leave"),
        ({"false_promote": 0.6}, "gate.false_promote: must be a probability above 0 and below 0.5"),
        ({"max_sessions": 200}, "gate.max_sessions: must be at least min_sessions (500)"),
        ({"tolerance": 0.0005}, "gate.max_sessions: 5,000 is too few to tell a crash rate of 0.4500%"),
        ({"early_fail_confidence": 0.99}, "gate.early_fail_confidence: applies to method fixed only"),
    ],
)
def test_a_sequential_gate_the_test_cannot_run_is_refused_naming_the_key(gate: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": [project_doc(gate=gate)]}))
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


def test_the_fixed_rule_keeps_its_own_options() -> None:
    gate = {"method": "fixed", "min_sessions": 300, "early_fail_confidence": 0.99}
    (project,) = parse(yaml.safe_dump({"projects": [project_doc(gate=gate)]}))
    assert (project["gate_method"], project["min_sessions"], project["early_fail_confidence"]) == (
        "fixed",
        300,
        0.99,
    )


def test_no_traffic_after_takes_a_duration_or_off_and_on_no_traffic_one_of_its_three() -> None:
    (on,) = parse(yaml.safe_dump({"projects": [project_doc(gate={"no_traffic_after": "20m"})]}))
    (off,) = parse(yaml.safe_dump({"projects": [project_doc(gate={"no_traffic_after": "off"})]}))
    assert (on["no_traffic_after"], off["no_traffic_after"]) == (timedelta(minutes=20), None)
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": [project_doc(gate={"on_no_traffic": "promote"})]}))
    assert any(
        "gate.on_no_traffic: must be hold, rollback or promote_after_checks" in p
        for p in refused.value.problems
    )


def test_a_canary_stage_takes_max_hold_at_least_its_hold() -> None:
    canary = {
        "stages": [{"percent": 5, "hold": "10m", "max_hold": "5m"}, {"percent": 100}],
        "checks": [{"kind": "sentry_crash_free", "min": 0.995}],
    }
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": [project_doc(canary=canary)]}))
    assert any("stages[0].max_hold: must be at least the stage's hold" in p for p in refused.value.problems)
    canary["stages"][0]["max_hold"] = "45m"
    (project,) = parse(yaml.safe_dump({"projects": [project_doc(canary=canary)]}))
    assert project["canary"]["stages"][0] == {"percent": 5, "hold": 600.0, "max_hold": 2700.0}
    assert project["canary"]["checks"][0]["method"] == "sequential"


def test_promote_after_checks_needs_gate_checks_written_in_the_canary_checks_grammar() -> None:
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": [project_doc(gate={"on_no_traffic": "promote_after_checks"})]}))
    assert any(
        "gate.on_no_traffic: promote_after_checks needs gate checks" in p for p in refused.value.problems
    )
    gate = {
        "on_no_traffic": "promote_after_checks",
        "checks": [{"kind": "http", "url": "https://$DEPLOYMENT_URL/api/health"}],
    }
    (project,) = parse(yaml.safe_dump({"projects": [project_doc(gate=gate)]}))
    assert project["on_no_traffic"] == "promote_after_checks"
    assert project["gate_checks"][0]["kind"] == "http"
    with pytest.raises(ConfigError) as refused:
        parse(yaml.safe_dump({"projects": [project_doc(gate={"checks": [{"kind": "http"}]})]}))
    assert any("gate.checks[0].url: is required" in p for p in refused.value.problems)


def test_allow_private_addresses_is_a_boolean_at_the_top_of_a_project() -> None:
    (project,) = parse(yaml.safe_dump({"projects": [project_doc(allow_private_addresses=True)]}))
    assert project["allow_private_addresses"] is True
    assert problems_of(project_doc(allow_private_addresses="yes please"))[0].startswith(
        "projects[0].allow_private_addresses:"
    )
