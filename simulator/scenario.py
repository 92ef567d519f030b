"""Scenario files: projects to create at once and a timeline of events played in the background.

```yaml
projects:
  - {id: prj_x, name: shop-web, domains: [shop.example.com],
     sentry: {org: acme, project: shop-web, environment: production}}
events:
  - {at: 5, deploy: {live: false, traffic: {sessions_per_minute: 6000, crash_rate: 0.001}}}
```

Each event names one action whose body is the same as the matching control endpoint's, so a
scenario is a recording of what a test would have sent. ``at`` is seconds after the start.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from simulator import alerts, vercel_control
from simulator.wire import ControlError, as_object

if TYPE_CHECKING:
    from simulator.state import Simulator

ACTIONS = ("deploy", "traffic", "phase", "webhook", "fault", "sentry_alert")


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    projects: list[dict[str, Any]]
    events: list[Event]


def parse(data: Any) -> Scenario:
    data = as_object(data if data is not None else {}, "scenario")
    projects = data.get("projects") or []
    if not isinstance(projects, list):
        raise ControlError("projects: a list")
    events = []
    for index, item in enumerate(data.get("events") or []):
        raw = as_object(item, f"events[{index}]")
        actions = [key for key in raw if key != "at"]
        if len(actions) != 1 or actions[0] not in ACTIONS:
            raise ControlError(f"events[{index}]: exactly one of {', '.join(ACTIONS)} besides 'at'")
        at = raw.get("at", 0)
        if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
            raise ControlError(f"events[{index}].at: seconds after start, at least 0")
        events.append(Event(float(at), actions[0], as_object(raw[actions[0]] or {}, f"events[{index}]")))
    return Scenario([as_object(p, "projects[]") for p in projects], sorted(events, key=lambda e: e.at))


def load(path: str) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as missing:
        raise ControlError(f"scenario {path}: {missing.strerror}") from None
    try:
        return parse(yaml.safe_load(text))
    except yaml.YAMLError as broken:
        raise ControlError(f"scenario {path}: {broken}") from None


def from_request(body: dict[str, Any]) -> Scenario:
    path = body.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise ControlError("path: a file path")
        return load(path)
    return parse(body)


def start(sim: Simulator, scenario: Scenario) -> dict[str, Any]:
    """Create the projects now and play the timeline from a daemon thread."""
    for body in scenario.projects:
        vercel_control.create_project(sim.vercel, body)
    default_project = scenario.projects[0].get("id") if scenario.projects else None
    generation, started = sim.generation, time.monotonic()

    def play() -> None:
        for event in scenario.events:
            wake = sim.wake
            wake.wait(max(0.0, started + event.at - time.monotonic()))
            if sim.generation != generation:
                return  # reset: the timeline belongs to the state that was cleared
            try:
                result = perform(sim, event, default_project)
            except ControlError as bad:
                sys.stderr.write(f"scenario: event at {event.at}s ({event.action}) failed: {bad.message}\n")
                continue
            if sim.options.verbose:
                sys.stderr.write(f"scenario: {event.action} at {event.at}s -> {summary(result)}\n")

    threading.Thread(target=play, daemon=True, name="scenario").start()
    return {"projects": len(scenario.projects), "events": len(scenario.events)}


def perform(sim: Simulator, event: Event, default_project: str | None) -> Any:
    body = dict(event.body)
    if event.action == "deploy":
        body.setdefault("project_id", default_project)
        return vercel_control.create_deployment(sim.vercel, body)
    if event.action == "traffic":
        return sim.traffic.register(body).to_json(sim.now())
    if event.action == "phase":
        return [t.to_json(sim.now()) for t in sim.traffic.add_phase(body)]
    if event.action == "webhook":
        return vercel_control.send_webhooks(sim.vercel, body)
    if event.action == "fault":
        with sim.lock:
            return sim.faults.add(body).to_json()
    return alerts.send_alert(sim, body)


def summary(result: Any) -> str:
    if isinstance(result, dict) and "deployment" in result:
        deployment = result["deployment"]
        sent = [(d["type"], d["status"]) for d in result.get("deliveries", [])]
        return f"{deployment['id']} release {deployment['meta'].get('githubCommitSha')} webhooks {sent}"
    return str(result)[:200]
