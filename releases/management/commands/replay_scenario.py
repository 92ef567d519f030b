"""Play a scenario through the simulator against this Gatekeeper and print the decisions.

The "try it once on a sample before turning it on" step: with web and worker running and the
provider URLs pointing at the simulator (what `make run` does without tokens), this plays the
scenario's deployments and traffic, waits for every gate it starts to settle, and prints each
verdict with its figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Release
from releases.ops.report import header, release_line

S = ReleaseState
OPEN = frozenset({S.RECEIVED, S.GATING, S.PASSED, S.PROMOTING, S.ROLLING_BACK})
STARTS = {"deployment.succeeded", "deployment.ready"}


class Command(BaseCommand):
    # Read-only reporting: it must work from a shell without the service's secrets.
    requires_system_checks: list[str] = []
    help = "Replay a simulator scenario against this Gatekeeper and print the decisions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", nargs="?", default="simulator/scenarios/demo.yaml")
        parser.add_argument("--simulator", default="http://127.0.0.1:8900", help="the simulator's URL")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for verdicts")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["scenario"])
        try:
            scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        if not isinstance(scenario, dict):
            raise CommandError(f"{path}: not a scenario (a mapping with projects and events)")
        gated = sum(
            1
            for event in scenario.get("events") or []
            if isinstance(event, dict) and STARTS & set((event.get("deploy") or {}).get("webhooks") or [])
        )
        started = timezone.now()
        try:
            answer = httpx.post(
                f"{options['simulator'].rstrip('/')}/_sim/scenario", json=scenario, timeout=30
            )
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise CommandError(
                f"the simulator at {options['simulator']} did not take the scenario: {exc}"
            ) from exc
        self.stdout.write(f"playing {path}: {gated} deployment(s) to gate; waiting for verdicts")
        deadline = time.monotonic() + options["timeout"]
        while True:
            releases = list(
                Release.objects.select_related("project")
                .filter(created_at__gte=started)
                .order_by("created_at")
            )
            gates = [r for r in releases if r.gating_started_at is not None or r.state == S.HELD]
            if len(gates) >= gated and not any(r.state in OPEN for r in gates):
                break
            if time.monotonic() > deadline:
                self.stdout.write(header())
                for release in releases:
                    self.stdout.write(release_line(release))
                raise CommandError(
                    f"not settled after {options['timeout']:g}s: is the worker running, and are the provider "
                    "URLs pointing at this simulator?"
                )
            time.sleep(1)
        self.stdout.write(header())
        for release in gates:
            self.stdout.write(release_line(release))
