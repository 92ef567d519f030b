from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from releases.ops.config import ConfigError, load
from releases.ops.sync import apply, check_vercel, resolve_sentry


class Command(BaseCommand):
    help = "Apply gatekeeper.yaml (or FILE): create and update projects; prints what changed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="config file (default: $GATEKEEPER_CONFIG)")
        parser.add_argument("--check", action="store_true", help="validate only, change nothing")
        parser.add_argument(
            "--offline",
            action="store_true",
            help="ask neither Sentry which project each sentry.project is (the first poll will) "
            "nor Vercel how its projects promote",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"] or settings.GATEKEEPER_CONFIG
        try:
            projects = load(path)
            notes = [] if options["offline"] else [*resolve_sentry(projects), *check_vercel(projects)]
            for note in notes:
                self.stderr.write(note)
            if options["check"]:
                self.stdout.write(f"{path}: valid, {len(projects)} project(s)")
                return
            changes = apply(projects, str(path))
        except ConfigError as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems)
            raise CommandError(f"{path} refused, nothing changed:\n{problems}") from exc
        for change in changes:
            self.stdout.write(str(change))
