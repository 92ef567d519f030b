"""`manage.py check --deploy` is clean for a correctly configured production deployment, and still
warns about the choices that make one unsafe."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# What a production deployment sets (README, "Running it in production").
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "gatekeeper.example.com",
    "BEHIND_TLS_PROXY": "1",
    "VERCEL_WEBHOOK_SECRET": secrets.token_hex(20),
    "SENTRY_WEBHOOK_SECRET": secrets.token_hex(20),
    "SLO_AUTH_TOKEN": secrets.token_urlsafe(30),
}


def check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    # Only PATH and the database from this process: the developer's own settings must not leak in.
    base = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": os.environ.get("DATABASE_URL", "")}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**base, **PRODUCTION, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_production_configuration_passes_check_deploy_with_no_warning() -> None:
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"BEHIND_TLS_PROXY": "0"}, "security.W008"),  # served without TLS: no redirect, no HSTS
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SLO_AUTH_TOKEN": "", "SLO_PUBLIC": "true"}, "gatekeeper.W004"),
        ({"SECRET_KEY": "short"}, "security.W009"),
        ({"DEBUG": "1"}, "security.W018"),
    ],
)
def test_an_unsafe_choice_is_still_reported(change: dict[str, str], warning: str) -> None:
    result = check_deploy(**change)
    assert result.returncode != 0 and warning in result.stdout + result.stderr
