"""No server starts with DEBUG off and the public development key or no Vercel webhook secret:
the settings refuse to load, so gunicorn, celery and manage.py all stop (system checks, where
gatekeeper.E001 also says so, run only under manage.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = "import django; django.setup(); print('loaded')"


def start(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "SECRET_KEY", "DEBUG")}
    clean.pop("VERCEL_WEBHOOK_SECRET", None)
    clean.update(GATEKEEPER_DOTENV="0", DJANGO_SETTINGS_MODULE="gatekeeper.settings", **env)
    return subprocess.run(
        command, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "SECRET_KEY and VERCEL_WEBHOOK_SECRET not set while DEBUG is off"),
        ({"SECRET_KEY": "k" * 50}, "VERCEL_WEBHOOK_SECRET not set while DEBUG is off"),
        ({"VERCEL_WEBHOOK_SECRET": "s"}, "SECRET_KEY not set while DEBUG is off"),
    ],
)
def test_the_settings_refuse_to_load_without_the_secrets(env: dict[str, str], missing: str) -> None:
    refused = start([sys.executable, "-c", SETUP], **env)

    assert refused.returncode != 0 and "loaded" not in refused.stdout
    assert missing in refused.stderr and "ImproperlyConfigured" in refused.stderr


def test_with_both_secrets_or_debug_on_they_load() -> None:
    assert (
        start([sys.executable, "-c", SETUP], SECRET_KEY="k" * 50, VERCEL_WEBHOOK_SECRET="s").stdout.strip()
        == "loaded"
    )
    assert start([sys.executable, "-c", SETUP], DEBUG="1").stdout.strip() == "loaded"


def test_gunicorn_does_not_serve_without_them() -> None:
    refused = start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "gatekeeper.wsgi:application",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
        ]
    )

    assert refused.returncode != 0
    assert "SECRET_KEY and VERCEL_WEBHOOK_SECRET not set while DEBUG is off" in refused.stderr
