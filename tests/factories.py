"""Small factories and signing helpers shared by the tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta
from typing import Any

from django.utils import timezone

from releases.models import Analysis, Project, Release

VERCEL_SECRET = "test-vercel-secret"
SENTRY_SECRET = "test-sentry-secret"


def make_project(**overrides: Any) -> Project:
    values: dict[str, Any] = {
        "name": "shop-web",
        "vercel_project_id": "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7",
        "production_domains": ["shop.example.com"],
        "sentry_org": "acme",
        "sentry_project": "shop-web",
        # As sync_config leaves it: resolved through Sentry's project lookup.
        "sentry_project_id": 4507,
        "sentry_project_slug": "shop-web",
        "sentry_environment": "production",
        "slack_channel": "#releases",
        # Most tests are about what a decision does, not how it is reached: the fixed rule's
        # "500 sessions at 99.5%" makes the numbers that decide plain. The sequential test, the
        # default, has its own tests (tests/releases/domain/test_sequential.py, test_polls.py, e2e).
        "gate_method": "fixed",
        "min_sessions": 500,
        "crash_free_threshold": 0.995,
        "poll_interval": timedelta(seconds=60),
        "max_wait": timedelta(hours=2),
    }
    values.update(overrides)
    if "sentry_project" in overrides and "sentry_project_slug" not in overrides:
        values["sentry_project_slug"] = overrides["sentry_project"]
    return Project.objects.create(**values)


def make_release(project: Project, **overrides: Any) -> Release:
    values: dict[str, Any] = {
        "project": project,
        "deployment_id": "dpl_" + secrets.token_hex(12),
        "version": secrets.token_hex(20),
        "target": "production",
    }
    values.update(overrides)
    return Release.objects.create(**values)


def make_analysis(release: Release, kind: str = Analysis.Kind.GATE, **overrides: Any) -> Analysis:
    """An analysis of ``release``, running and due now unless told otherwise, judged by the
    project's policy for its kind as the workflow that starts it would snapshot it."""
    from releases.workflows.bake import watch_policy

    project = release.project
    now = timezone.now()
    if kind == Analysis.Kind.GATE:
        policy: dict[str, Any] = project.policy().to_json()
    elif kind == Analysis.Kind.BAKE:
        policy = watch_policy(project).to_json()
    else:
        policy = dict(project.canary or {})
    values: dict[str, Any] = {
        "release": release,
        "kind": kind,
        "policy": policy,
        "generation": 1,
        "next_check_at": now,
        "started_at": release.gating_started_at or now,
    }
    if kind == Analysis.Kind.BAKE:
        values["ends_at"] = now + project.watch_after_promotion
    values.update(overrides)
    return Analysis.objects.create(**values)


def gating_release(project: Project, **overrides: Any) -> Release:
    """A release being gated, its gate analysis due now."""
    now = timezone.now()
    release = make_release(project, **{"state": "gating", "gating_started_at": now, **overrides})
    make_analysis(release)
    return release


def deployment_event(
    event_type: str = "deployment.succeeded",
    *,
    event_id: str | None = None,
    deployment_id: str = "dpl_7Hq2Rt9Ws4Lk1Mn8Bv3Cx6Zp0Q",
    project_id: str = "prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7",
    target: str | None = "production",
    sha: str = "4e1b9c07d2a35f68e0b7c1d9a2f3e4b5c6d7e8f9",
) -> dict[str, Any]:
    """A Vercel deployment event shaped as docs/vendor-apis.md §1.5."""
    payload: dict[str, Any] = {
        "team": {"id": "team_Ab12Cd34Ef56Gh78Ij90Kl12"},
        "user": {"id": "usr_Zq81Lm2Np3Oq4Rs5"},
        "deployment": {
            "id": deployment_id,
            "name": "shop-web",
            "url": "shop-web-k3x9p2a7-acme.vercel.app",
            "inspectorUrl": f"https://vercel.com/acme/shop-web/{deployment_id[4:]}",
            "meta": {"githubCommitSha": sha, "githubCommitRef": "main"},
        },
        "links": {
            "deployment": f"https://vercel.com/acme/shop-web/{deployment_id[4:]}",
            "project": "https://vercel.com/acme/shop-web",
        },
        "name": "shop-web",
        "plan": "pro",
        "project": {"id": project_id},
        "regions": ["iad1"],
        "target": target,
        "type": "LAMBDAS",
        "url": "shop-web-k3x9p2a7-acme.vercel.app",
    }
    if event_type == "deployment.promoted":
        payload.pop("target")  # not listed for deployment.promoted (§1.4)
    return {
        "id": event_id or "evt_" + secrets.token_hex(8),
        "type": event_type,
        "createdAt": int(time.time() * 1000),
        "region": None,
        "payload": payload,
    }


def vercel_signature(body: bytes, secret: str = VERCEL_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signed(event: dict[str, Any] | bytes, secret: str = VERCEL_SECRET) -> tuple[bytes, dict[str, str]]:
    body = event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()
    return body, {"HTTP_X_VERCEL_SIGNATURE": vercel_signature(body, secret)}


def make_operator(user: Any, project: Project, *, override: bool = True) -> None:
    """``user`` operates ``project`` (through a group of its own), with the override permission
    unless ``override`` is False."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=f"operators-{project.name}")
    project.operators.add(group)
    user.groups.add(group)
    if override:
        user.user_permissions.add(Permission.objects.get(codename="override_release"))
    # Django caches a user's permissions on the object: a fresh lookup sees the new ones.
    for cached in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cached, None)


def make_token(user: Any, **overrides: Any) -> str:
    """A REST API token for ``user``; returns its key, which the database does not keep."""
    from releases.models import ApiToken

    token = ApiToken(user=user, **overrides)
    key = token.set_new_key()
    token.save()
    return key
