"""Helpers shared by the simulator tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

VERCEL_SECRET = "vercel-test-secret"
SENTRY_SECRET = "sentry-test-secret"
ALIAS_DELAY = 0.3
T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float = 5.0, step: float = 0.05) -> T:
    """Poll until ``probe`` returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)


def make_project(control: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {
        "id": "prj_shopweb",
        "name": "shop-web",
        "team_id": None,
        "domains": ["shop.example.com"],
        "sentry": {"org": "acme", "project": "shop-web", "project_id": 4507, "environment": "production"},
        **overrides,
    }
    response = control.post("/_sim/vercel/projects", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def make_deployment(control: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {"project_id": "prj_shopweb", **overrides}
    response = control.post("/_sim/vercel/deployments", json=body)
    assert response.status_code == 201, response.text
    return response.json()
