from __future__ import annotations

import dataclasses
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from releases.domain.gate_policy import Method, OnTimeout, Policy, validate_policy
from releases.models import Project
from releases.ops.config import parse_duration
from releases.ops.simulate import Plan, default_rates, describe, table

# Flags that override the policy, named as gatekeeper.yaml's gate: keys.
OVERRIDES = {
    "method": "method",
    "threshold": "crash_free_threshold",
    "tolerance": "tolerance",
    "false_promote": "false_promote",
    "false_rollback": "false_rollback",
    "min_sessions": "min_sessions",
    "max_sessions": "max_sessions",
    "on_timeout": "on_timeout",
}


class Command(BaseCommand):
    # Pure arithmetic on a policy: it must work from a shell without the service's secrets.
    requires_system_checks: list[str] = []
    help = (
        "Print what a gate policy will do at several true crash-free rates: the chance to promote, "
        "roll back or time out, and the sessions and time to a decision. Exact, not sampled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="start from this project's policy (default: the defaults)")
        parser.add_argument(
            "--sessions-per-minute", type=float, required=True, help="the staged build's traffic"
        )
        parser.add_argument("--method", choices=[m.value for m in Method])
        parser.add_argument("--threshold", type=float, help="crash-free fraction, e.g. 0.995")
        parser.add_argument("--tolerance", type=float)
        parser.add_argument("--false-promote", type=float)
        parser.add_argument("--false-rollback", type=float)
        parser.add_argument("--min-sessions", type=int)
        parser.add_argument("--max-sessions", type=int)
        parser.add_argument("--on-timeout", choices=[o.value for o in OnTimeout])
        parser.add_argument("--poll-interval", help="e.g. 60s (default: the project's)")
        parser.add_argument("--max-wait", help="e.g. 2h (default: the project's)")
        parser.add_argument(
            "--rates", help="true crash-free rates to show, comma-separated, e.g. 0.99,0.995,0.999"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["project"]:
            try:
                project = Project.objects.get(name=options["project"])
            except Project.DoesNotExist:
                raise CommandError(f"no project named {options['project']!r}") from None
        else:
            project = Project()
        try:
            poll_interval = parse_duration(options["poll_interval"]) if options["poll_interval"] else None
            max_wait = parse_duration(options["max_wait"]) if options["max_wait"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        base = project.policy()
        changes: dict[str, Any] = {
            field: options[flag] for flag, field in OVERRIDES.items() if options[flag] is not None
        }
        if "method" in changes:
            changes["method"] = Method(changes["method"])
        if "on_timeout" in changes:
            changes["on_timeout"] = OnTimeout(changes["on_timeout"])
        if max_wait is not None:
            changes["max_wait"] = max_wait.total_seconds()
        policy: Policy = dataclasses.replace(base, **changes)
        problems = validate_policy(policy)
        if problems:
            raise CommandError("this policy cannot be used: " + "; ".join(problems))
        if options["sessions_per_minute"] <= 0:
            raise CommandError("--sessions-per-minute must be above 0")
        interval = (poll_interval or project.poll_interval).total_seconds()
        plan = Plan(policy=policy, sessions_per_minute=options["sessions_per_minute"], poll_interval=interval)
        try:
            rates = (
                [float(r) for r in options["rates"].split(",")] if options["rates"] else default_rates(policy)
            )
        except ValueError:
            raise CommandError("--rates: comma-separated fractions, e.g. 0.99,0.995,0.999") from None
        if not all(0 < rate < 1 for rate in rates):
            raise CommandError("--rates: each a crash-free fraction above 0 and below 1, e.g. 0.995")
        for line in [*describe(plan), "", *table(plan, rates)]:
            self.stdout.write(line)
