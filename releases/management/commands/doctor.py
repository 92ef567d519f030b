from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from releases.models import Project
from releases.ops.doctor import FAIL, WARN, examine


class Command(BaseCommand):
    help = (
        "Check each configured project against Vercel, Sentry, Slack and PagerDuty with the configured "
        "tokens, read-only: one line per check, with what to fix. Exits 1 when a check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="only this project (its name)")

    def handle(self, *args: Any, **options: Any) -> None:
        projects = Project.objects.order_by("name")
        if options["project"]:
            projects = projects.filter(name=options["project"])
        if not projects.exists():
            raise CommandError("no projects to check: run sync_config (or name one that exists)")
        findings = [finding for project in projects for finding in examine(project)]
        for finding in findings:
            self.stdout.write(str(finding))
        failed = sum(f.status == FAIL for f in findings)
        warned = sum(f.status == WARN for f in findings)
        summary = f"{len(findings) - failed - warned} ok, {warned} warning(s), {failed} failed"
        if failed:
            raise CommandError(summary)
        self.stdout.write(summary)
