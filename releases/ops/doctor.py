"""``manage.py doctor``: each configured project checked against the real services, read-only.

What a first install gets wrong shows up here, one line per check with what to fix, before the
first release depends on it: a Vercel project the token cannot see or cannot promote in, a
Sentry slug that is not the project's, an environment with another name, release health that
has no sessions, a Slack channel the bot is not in, a PagerDuty key that is not one. Nothing is
written, here or at any vendor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings

from notifications import clients as notification_clients
from notifications.pagerduty import ROUTING_KEY_LENGTH
from releases.core.errors import ProviderError
from releases.domain.slo_rules import parse_check
from releases.integrations import clients
from releases.models import Project
from releases.workflows.sentry_project import Unresolvable, resolve

OK, WARN, FAIL = "ok", "warn", "FAIL"
# Roles that may promote and roll back production (Vercel's team roles, §2.8).
PROMOTERS = frozenset({"OWNER", "MEMBER", "DEVELOPER"})
ROUTING_KEY = re.compile(rf"^[A-Za-z0-9]{{{ROUTING_KEY_LENGTH}}}$")


@dataclass(frozen=True)
class Finding:
    project: str
    check: str
    status: str  # ok | warn | FAIL
    detail: str

    def __str__(self) -> str:
        return f"{self.status:<4}  {self.project}  {self.check:<20} {self.detail}"


Check = Callable[[Project], Iterator[tuple[str, str, str]]]


def examine(project: Project) -> list[Finding]:
    findings = []
    for check in (_vercel, _sentry, _slack, _pagerduty, _checks):
        try:
            for name, status, detail in check(project):
                findings.append(Finding(project.name, name, status, detail))
        except ProviderError as exc:  # a vendor that cannot be asked stops that vendor's checks only
            findings.append(
                Finding(project.name, f"{exc.provider or 'vendor'}", FAIL, f"could not ask: {exc}")
            )
    return findings


def _vercel(project: Project) -> Iterator[tuple[str, str, str]]:
    if not settings.VERCEL_TOKEN:
        yield "vercel.token", FAIL, "VERCEL_TOKEN is not set"
        return
    vercel = clients.vercel(project)
    try:
        found = vercel.get_project(project.vercel_project_id)
    except ProviderError as exc:
        if exc.status in (401, 403, 404):
            yield (
                "vercel.project",
                FAIL,
                f"Vercel has no project {project.vercel_project_id} that VERCEL_TOKEN can see "
                f"({exc.status}): check vercel.project_id, and vercel.team_id for a team's project",
            )
            return
        raise
    yield "vercel.project", OK, f"{found.get('name', '?')} ({project.vercel_project_id})"
    domains = list(project.production_domains or [])
    if not domains:
        yield (
            "vercel.domains",
            WARN,
            "no production_domains: production is read from the project's production target",
        )
    else:
        served = vercel.aliases_of(project.vercel_project_id, domains)
        for domain in domains:
            if domain in served:
                yield "vercel.domains", OK, f"{domain} serves {served[domain]}"
            else:
                yield (
                    "vercel.domains",
                    FAIL,
                    f"{domain} is not a domain of this Vercel project: add it there (Settings, Domains) "
                    "or fix production_domains",
                )
    role = vercel.token_role()
    if role in PROMOTERS:
        yield "vercel.promote", OK, f"the token's role is {role}: it may promote and roll back"
    else:
        yield (
            "vercel.promote",
            FAIL,
            f"the token's role is {role}: it cannot promote or roll back; use a token of a Member or Owner",
        )
    stages = vercel.rolling_release_stages(project.vercel_project_id)
    if stages and not project.canary:
        yield (
            "vercel.rolling",
            WARN,
            "Rolling Releases are on in Vercel and this project has no canary: a passed gate's promote "
            "completes the rolling release at once; add canary: (router: vercel) to ramp it",
        )


def _sentry(project: Project) -> Iterator[tuple[str, str, str]]:
    if not settings.SENTRY_AUTH_TOKEN:
        yield "sentry.token", FAIL, "SENTRY_AUTH_TOKEN is not set"
        return
    sentry = clients.sentry()
    org = project.sentry_org
    try:
        yield "sentry.org", OK, f"{sentry.organization(org)} ({org})"
    except ProviderError as exc:
        if exc.status in (401, 403, 404):
            hint = (
                "the token needs org:read" if exc.status == 403 else "check sentry.org and SENTRY_AUTH_TOKEN"
            )
            yield "sentry.org", FAIL, f"Sentry answered {exc.status} for organisation {org!r}: {hint}"
            return
        raise
    try:
        found = resolve(org, project.sentry_project, project.sentry_project_id).project
    except Unresolvable as exc:
        yield "sentry.project", FAIL, str(exc)
        return
    moved = "" if found.slug == project.sentry_project else f"; write {found.slug!r} in the config"
    yield "sentry.project", OK, f"{found.slug} is project {found.id}{moved}"
    environment = project.sentry_environment
    if environment:
        names = sentry.environments(org, found.slug)
        if environment in names:
            yield "sentry.environment", OK, environment
        else:
            have = ", ".join(names) or "none yet"
            yield (
                "sentry.environment",
                FAIL,
                f"no environment {environment!r} in {found.slug} (it has: {have})",
            )
            return
    latest = sentry.latest_release(org, str(found.id), environment or None)
    if latest is None:
        yield (
            "sentry.sessions",
            WARN,
            "no release-health sessions in the last 24 h: is session tracking on in the Sentry SDK, "
            "and does it send the release name release_template renders?",
        )
    else:
        yield "sentry.sessions", OK, f"latest release {latest[0]}: {latest[1]:,} sessions in 24 h"


def _slack(project: Project) -> Iterator[tuple[str, str, str]]:
    channel = project.slack_channel
    if not channel:
        yield "slack.channel", WARN, "no slack.channel: verdicts are not posted"
        return
    if not settings.SLACK_BOT_TOKEN:
        yield "slack.token", FAIL, "SLACK_BOT_TOKEN is not set"
        return
    slack = notification_clients.slack()
    try:
        who = slack.lookup("auth.test")
    except ProviderError as exc:
        yield "slack.token", FAIL, f"Slack refused SLACK_BOT_TOKEN: {exc.message}"
        return
    bot = who.get("user") or who.get("user_id") or "the bot"
    yield "slack.token", OK, f"{bot} in {who.get('team') or who.get('team_id') or 'the workspace'}"
    try:
        found = slack.find_channel(channel)
    except ProviderError as exc:
        if exc.code == "missing_scope":
            yield (
                "slack.channel",
                WARN,
                f"cannot look {channel} up: {exc.message}; grant channels:read, groups:read",
            )
            return
        raise
    if found is None:
        yield (
            "slack.channel",
            FAIL,
            f"no channel {channel} the bot can see: check the name, or invite the bot",
        )
    elif found.get("is_archived"):
        yield "slack.channel", FAIL, f"{channel} is archived"
    elif not found.get("is_member"):
        yield "slack.channel", FAIL, f"the bot is not in {channel}: /invite @{bot} there"
    else:
        yield "slack.channel", OK, f"{channel} ({found.get('id')}), the bot is in it"


def _pagerduty(project: Project) -> Iterator[tuple[str, str, str]]:
    name = project.pagerduty_routing_key_env
    if not name:
        yield "pagerduty.key", WARN, "no pagerduty.routing_key_env: rollbacks page no one"
        return
    key = os.environ.get(name, "").strip()
    if not key:
        yield "pagerduty.key", FAIL, f"environment variable {name} is not set"
    elif not ROUTING_KEY.match(key):
        yield (
            "pagerduty.key",
            FAIL,
            f"{name} does not hold an integration key ({ROUTING_KEY_LENGTH} letters and digits, "
            "from the service's Events API v2 integration)",
        )
    else:
        yield "pagerduty.key", OK, f"{name} holds a well-formed integration key"


def _checks(project: Project) -> Iterator[tuple[str, str, str]]:
    groups = [
        ("canary.checks", list((project.canary or {}).get("checks") or [])),
        ("gate.checks", project.gate_checks or []),
    ]
    for where, raw_checks in groups:
        if not raw_checks:
            continue
        problems, kinds = [], set()
        for index, raw in enumerate(raw_checks):
            spec, found = parse_check(raw, f"{where}[{index}]")
            problems.extend(found)
            if spec is not None:
                kinds.add(spec.kind)
        if "datadog_query" in kinds and not (settings.DD_API_KEY and settings.DD_APP_KEY):
            problems.append(f"{where}: datadog_query needs DD_API_KEY and DD_APP_KEY")
        if "posthog_exceptions" in kinds and not settings.POSTHOG_API_KEY:
            problems.append(f"{where}: posthog_exceptions needs POSTHOG_API_KEY")
        if problems:
            yield where, FAIL, "; ".join(problems)
        else:
            yield where, OK, f"{len(raw_checks)} check(s) parse: {', '.join(sorted(kinds))}"
