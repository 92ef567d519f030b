"""System checks: missing webhook secrets, a development SECRET_KEY, and impossible policies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.checks import ERROR, WARNING, run_checks

from releases.models import Project
from releases.ops.checks import check_policies, check_secrets
from tests.factories import make_project


def ids(problems: list[Any]) -> list[str]:
    return [problem.id for problem in problems]


def test_no_problems_when_secrets_are_set(settings: Any) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY_FROM_ENV = True

    assert check_secrets(None) == []


def test_a_missing_vercel_webhook_secret_is_an_error_with_a_hint(settings: Any) -> None:
    settings.VERCEL_WEBHOOK_SECRET = ""
    settings.SECRET_KEY_FROM_ENV = True

    (problem,) = check_secrets(None)

    assert problem.id == "gatekeeper.E001"
    assert problem.level == ERROR
    assert "VERCEL_WEBHOOK_SECRET" in problem.msg
    assert "Webhooks" in problem.hint


def test_a_missing_sentry_webhook_secret_is_a_warning(settings: Any) -> None:
    settings.SENTRY_WEBHOOK_SECRET = ""
    settings.SECRET_KEY_FROM_ENV = True

    (problem,) = check_secrets(None)

    assert problem.id == "gatekeeper.W002"
    assert problem.level == WARNING
    assert "SENTRY_WEBHOOK_SECRET" in problem.msg
    assert problem.hint


def test_the_development_secret_key_is_an_error_when_debug_is_off(settings: Any) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY_FROM_ENV = False

    (problem,) = check_secrets(None)

    assert problem.id == "gatekeeper.E003"
    assert problem.level == ERROR
    assert "secrets.token_urlsafe" in problem.hint


def test_the_development_secret_key_is_fine_in_debug(settings: Any) -> None:
    settings.DEBUG = True
    settings.SECRET_KEY_FROM_ENV = False

    assert check_secrets(None) == []


def test_every_secret_problem_is_reported_at_once(settings: Any) -> None:
    settings.VERCEL_WEBHOOK_SECRET = ""
    settings.SENTRY_WEBHOOK_SECRET = ""
    settings.DEBUG = False
    settings.SECRET_KEY_FROM_ENV = False

    assert ids(check_secrets(None)) == ["gatekeeper.E001", "gatekeeper.W002", "gatekeeper.E003"]


def test_the_secret_check_runs_with_djangos_checks(settings: Any) -> None:
    settings.VERCEL_WEBHOOK_SECRET = ""

    assert "gatekeeper.E001" in ids(run_checks())


@pytest.mark.django_db
def test_a_sound_policy_passes() -> None:
    make_project()

    assert check_policies(None, databases=["default"]) == []


@pytest.mark.django_db
def test_policies_are_not_checked_without_a_database() -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(min_sessions=0)

    assert check_policies(None) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("min_sessions", 0, "min_sessions"),
        ("crash_free_threshold", 1.5, "crash_free_threshold"),
        ("crash_free_threshold", 0.0, "crash_free_threshold"),
        ("max_consecutive_errors", 0, "max_consecutive_errors"),
        ("early_fail_confidence", 1.0, "early_fail_confidence"),
    ],
)
def test_an_impossible_stored_policy_is_e010_naming_project_and_field(
    field: str, value: Any, named: str
) -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(**{field: value})  # as a bad admin edit could

    (problem,) = check_policies(None, databases=["default"])

    assert problem.id == "gatekeeper.E010"
    assert problem.level == ERROR
    assert problem.msg.startswith(f"project shop-web: {named}")
    assert problem.obj == project
    assert "sync_config" in problem.hint


@pytest.mark.django_db
@pytest.mark.parametrize("max_wait", [timedelta(seconds=60), timedelta(seconds=30)])
def test_a_poll_interval_not_shorter_than_max_wait_is_e011(max_wait: timedelta) -> None:
    project = make_project(poll_interval=timedelta(seconds=60))
    Project.objects.filter(pk=project.pk).update(max_wait=max_wait)

    (problem,) = check_policies(None, databases=["default"])

    assert problem.id == "gatekeeper.E011"
    assert "poll_interval" in problem.msg
    assert problem.hint


@pytest.mark.django_db
def test_each_bad_project_is_named_in_its_own_error() -> None:
    make_project()
    other = make_project(name="shop-api", vercel_project_id="prj_api")
    Project.objects.update(min_sessions=0)
    Project.objects.filter(pk=other.pk).update(max_wait=timedelta(seconds=10))

    problems = check_policies(None, databases=["default"])

    assert sorted((p.id, p.msg.split(":")[0]) for p in problems) == [
        ("gatekeeper.E010", "project shop-api"),
        ("gatekeeper.E010", "project shop-web"),
        ("gatekeeper.E011", "project shop-api"),
    ]


def test_a_public_slo_endpoint_is_a_deploy_warning(settings: Any) -> None:
    from releases.ops.checks import check_slo_endpoint

    settings.SLO_AUTH_TOKEN, settings.SLO_PUBLIC = "", True
    (warning,) = check_slo_endpoint(None)
    assert warning.id == "gatekeeper.W004" and "Bearer" in warning.hint
    settings.SLO_PUBLIC = False  # off: nothing to warn about
    assert check_slo_endpoint(None) == []
    settings.SLO_AUTH_TOKEN = "t" * 32
    assert check_slo_endpoint(None) == []
