"""Replay the webhooks kept in SPOOL_DIR while PostgreSQL was unreachable, and print what became of them.

    python manage.py replay_spool [--retry-failed]

The worker does the same every SPOOL_REPLAY_INTERVAL seconds; this is for a host whose spool no
worker sees, or to watch it happen. Replaying twice is harmless: a delivery already taken is a
duplicate. ``--retry-failed`` first puts the records in failed/ back (after fixing what made them
fail, e.g. a rotated webhook secret). Exits 1 when the database is still unreachable.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from releases.inbound import replay, spool


class Command(BaseCommand):
    help = "Replay the webhooks kept in the spool (SPOOL_DIR) while PostgreSQL was unreachable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retry-failed", action="store_true", help="first put the records in failed/ back in the spool"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["retry_failed"]:
            self.stdout.write(f"put back from failed/: {spool.retry_failed()}")
        counts = replay.replay()
        down = counts.pop("database_down", 0)
        summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "nothing waiting"
        where = spool.directory()
        if down:
            raise CommandError(f"the database is still unreachable: {summary} (in {where})")
        self.stdout.write(f"{summary} (in {where})")
