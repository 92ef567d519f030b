from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from releases.models import Release
from releases.ops.report import header, release_line


class Command(BaseCommand):
    # Read-only reporting: it must work from a shell without the service's secrets.
    requires_system_checks: list[str] = []
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
        self.stdout.write(header())
        for release in rows:
            self.stdout.write(release_line(release))
