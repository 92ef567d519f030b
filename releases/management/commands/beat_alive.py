"""Exit 0 if the beat in this container is ticking and reaches the database, leading or standing by.

    python manage.py beat_alive [--schedule /tmp/celerybeat-schedule] [--max-age 30] [--dispatch 60]

Beat's healthcheck. Each beat writes what it saw at every lease check beside its schedule file
(releases/scheduling/beat.py): a standby is healthy while it keeps checking, and the leader also
needs the dispatcher it sends to have run within ``--dispatch`` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from releases.scheduling import liveness
from releases.scheduling.beat import read_status, status_path


class Command(BaseCommand):
    help = "Check that this beat checks its lease, and that the dispatcher runs if it leads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--schedule",
            default="celerybeat-schedule",
            help="the schedule file beat was started with (its --schedule)",
        )
        parser.add_argument(
            "--max-age",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="fail if beat has not checked its lease for this long",
        )
        parser.add_argument(
            "--dispatch",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="when this beat leads, fail if the dispatcher has not run for this long (0: do not check)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        status = read_status(status_path(options["schedule"]))
        if status is None:
            raise CommandError(
                "this beat has not checked its lease yet (is it running with this --schedule?)"
            )
        age = time.time() - float(status.get("checked_at", 0))
        if age > options["max_age"]:
            raise CommandError(
                f"this beat last checked its lease {age:.0f} s ago (limit {options['max_age']:g} s)"
            )
        if not status.get("leading"):
            leader = status.get("leader") or "nobody yet"
            self.stdout.write(f"standing by ({leader} leads), checked {age:.1f} s ago")
            return
        if options["dispatch"]:
            try:
                ran = liveness.dispatch_age()
            except DatabaseError as exc:  # the database went away since beat's check
                raise CommandError(f"cannot read the dispatcher's heartbeat ({type(exc).__name__})") from exc
            if ran is None or ran > options["dispatch"]:
                seen = "never" if ran is None else f"{ran:.0f} s ago"
                raise CommandError(
                    f"leading, but the poll dispatcher last ran {seen} (limit {options['dispatch']:g} s)"
                )
        self.stdout.write(f"leading as {status.get('holder')}, checked {age:.1f} s ago")
