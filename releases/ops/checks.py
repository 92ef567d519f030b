"""System checks: refuse to run without webhook secrets or with an impossible policy."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

from releases.domain.gate_policy import validate_policy
from releases.models import Project


@register(Tags.security, deploy=False)
def check_secrets(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.VERCEL_WEBHOOK_SECRET:
        problems.append(
            Error(
                "VERCEL_WEBHOOK_SECRET is not set: every Vercel webhook would be refused with 401.",
                hint="Set it to the secret Vercel showed when you created the webhook "
                "(team Settings -> Webhooks), or the integration's client secret.",
                id="gatekeeper.E001",
            )
        )
    if not settings.SENTRY_WEBHOOK_SECRET:
        problems.append(
            Warning(
                "SENTRY_WEBHOOK_SECRET is not set: Sentry alert webhooks will be refused with 401.",
                hint="Set it to the client secret of your Sentry internal integration.",
                id="gatekeeper.W002",
            )
        )
    if not settings.DEBUG and not settings.SECRET_KEY_FROM_ENV:
        problems.append(
            Error(
                "SECRET_KEY is not set while DEBUG is off.",
                hint="Set SECRET_KEY to a long random string, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
                id="gatekeeper.E003",
            )
        )
    return problems


@register(Tags.security, deploy=True)
def check_slo_endpoint(app_configs: Any, **kwargs: Any) -> list[Any]:
    if settings.SLO_AUTH_TOKEN or not settings.SLO_PUBLIC:
        return []  # with a token, or off (403) without one
    return [
        Warning(
            "SLO_PUBLIC is set: anyone who can reach /api/slo/ can read your canaries' "
            "figures and make Gatekeeper query your monitoring on their behalf.",
            hint="Set SLO_AUTH_TOKEN instead and send it as `Authorization: Bearer <token>` from your cron.",
            id="gatekeeper.W004",
        )
    ]


@register(Tags.database)
def check_policies(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Projects edited in the admin or synced long ago must still describe a gate that can decide."""
    if not kwargs.get("databases"):
        return []
    problems: list[Any] = []
    try:
        projects = list(Project.objects.all())
    except DatabaseError:
        return []  # not migrated yet: `migrate` will say so
    for project in projects:
        for problem in validate_policy(project.policy()):
            problems.append(
                Error(
                    f"project {project.name}: {problem}",
                    hint="Fix it in gatekeeper.yaml and run `python manage.py sync_config`.",
                    obj=project,
                    id="gatekeeper.E010",
                )
            )
        if project.poll_interval >= project.max_wait:
            problems.append(
                Error(
                    f"project {project.name}: poll_interval is not shorter than max_wait",
                    hint="A gate must poll at least twice before it times out.",
                    obj=project,
                    id="gatekeeper.E011",
                )
            )
    return problems
