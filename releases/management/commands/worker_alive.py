"""Exit 0 if a worker consumes and runs a task sent to it (and, with --dispatch, beat is sending).

    python manage.py worker_alive [--hostname celery@host] [--timeout 20] [--dispatch 60]
    python manage.py worker_alive --dispatch-only [--dispatch 60]

The worker container's healthcheck: a worker that is up but fetches nothing fails it.
``--dispatch-only`` fails when the dispatcher (which beat sends every second) has not run for a
minute, whichever beat sent it; beat's own healthcheck is ``beat_alive``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from releases.scheduling import liveness


class Command(BaseCommand):
    help = "Check that a Celery worker consumes its queue (a real task round trip)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--hostname",
            default="",
            help="the worker's node name (default: celery@<this host>, the worker in this container)",
        )
        parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the answer")
        parser.add_argument(
            "--dispatch",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="also fail if the poll dispatcher (beat) has not run for this long",
        )
        parser.add_argument(
            "--dispatch-only",
            action="store_true",
            help="check only that the dispatcher runs (needs no worker in this container)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dispatch_only"]:
            self._check_dispatch(options["dispatch"] or 60.0)
            return
        hostname = options["hostname"] or liveness.default_hostname()
        try:
            took = liveness.probe_worker(hostname, options["timeout"])
        except Exception as exc:  # the broker is unreachable: no worker can be consuming from it
            raise CommandError(f"{hostname}: cannot reach the broker ({type(exc).__name__})") from exc
        if took is None:
            raise CommandError(f"{hostname}: no task consumed within {options['timeout']:g} s")
        self.stdout.write(f"{hostname}: consumed a task in {took * 1000:.0f} ms")
        if options["dispatch"]:
            self._check_dispatch(options["dispatch"])

    def _check_dispatch(self, limit: float) -> None:
        try:
            age = liveness.dispatch_age()
        except Exception as exc:
            raise CommandError(f"cannot read the dispatcher's heartbeat ({type(exc).__name__})") from exc
        if age is None or age > limit:
            seen = "never" if age is None else f"{age:.0f} s ago"
            raise CommandError(f"the poll dispatcher last ran {seen} (limit {limit:g} s)")
        self.stdout.write(f"the poll dispatcher ran {age:.1f} s ago")
