from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifications.messages import duration, percent
from releases.models import Release


class Command(BaseCommand):
    help = "Print the latest releases with their state, figures and decision."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="only this project")
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args: Any, **options: Any) -> None:
        releases = Release.objects.select_related("project").order_by("-created_at")
        if options["project"]:
            releases = releases.filter(project__name=options["project"])
        rows = list(releases[: options["limit"]])
        if not rows:
            self.stdout.write("no releases yet")
            return
        for release in rows:
            sessions = "-" if release.sessions is None else f"{release.sessions:,}"
            crashed = "-" if release.crashed is None else f"{release.crashed:,}"
            took = ""
            if release.decided_at and release.gating_started_at:
                took = duration((release.decided_at - release.gating_started_at).total_seconds())
            reasons = "; ".join(release.verdict_reasons)
            self.stdout.write(
                f"{release.project.name:<16} {(release.version or release.deployment_id)[:12]:<12} "
                f"{release.state:<12} sessions {sessions:>7} crashed {crashed:>5} "
                f"crash-free {percent(release.crash_free_rate):>7} "
                f"(threshold {percent(release.project.crash_free_threshold)}) {took:>7}  {reasons}"
            )
