"""docker-compose.yml, read as the file it is (no Docker engine here): the processes it runs and
what each must share for the others to work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def queues(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command[command.index("-Q") + 1].split(",")


def test_the_schedule_queue_has_a_worker_of_its_own_that_flower_cannot_turn_events_on_for() -> None:
    found = services()
    assert queues(found["worker"]) == ["celery"]
    assert queues(found["scheduler"]) == ["schedule"]
    assert found["scheduler"]["environment"]["GATEKEEPER_WORKER_REMOTE_CONTROL"] == "0"
    # Every task routed to the schedule queue is one of the schedule's own.
    routed = {name for name, route in settings.CELERY_TASK_ROUTES.items() if route["queue"] == "schedule"}
    assert routed == {"releases.dispatch_due", "releases.watchdog", "releases.replay_spool"}


def test_web_and_the_worker_that_replays_the_spool_mount_the_same_spool() -> None:
    found = services()
    path = yaml.safe_load(COMPOSE.read_text())["x-gatekeeper-env"]["SPOOL_DIR"]
    for name in ("web", "scheduler"):
        assert f"spool:{path}" in found[name]["volumes"], name
    assert settings.CELERY_TASK_ROUTES["releases.replay_spool"]["queue"] in queues(found["scheduler"])


def test_two_beats_run_the_same_command_and_flower_needs_a_password() -> None:
    found = services()
    assert found["beat"]["command"] == found["beat-2"]["command"]
    assert found["beat"]["command"][3] == "beat"
    assert found["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
