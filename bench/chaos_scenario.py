"""The chaos run's gates: which kinds, in which projects, set up in Gatekeeper and the simulator,
and driven the way teams deploy.

Each gated project ("lane") has one production and ships its good builds one after another: the
next is staged once the previous one is live, and the last of some lanes is then hit by a Sentry
metric alert. Bad builds of the same projects are staged alongside, at random moments, so failing
gates run concurrently with promotions in their own project: the case where a staged build's
"keep the previous deployment" must not undo a newer good one. Canary projects ramp their
releases one after another (Vercel runs one rolling release per project). Slow builds (too few
sessions for a verdict) belong to projects of their own whose ``max_wait`` is short, so the run
sees their deadline; every other project waits longer than a lost poll can take to come back
(polling.POLL_LEASE, 60 s), so a killed worker delays a good build's verdict but never decides it.
"""

from __future__ import annotations

import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

PD_KEY_ENV = "CHAOS_PAGERDUTY_KEY"
PD_KEY = "chaos0routing0key000000000000abc"  # 32 characters, as PagerDuty requires
SPM = 2400  # sessions a minute for a release with traffic: min_sessions in 7.5 s
MIN_SESSIONS = 300
SLOW_SPM = 60  # never reaches min_sessions before max_wait
GOOD_CRASH, BAD_CRASH = 0.001, 0.05
# Where a gate must end. Good builds may be superseded by the next good one of their lane.
EXPECTED = {
    "good": ("promoted", "superseded"),
    "canary_ok": ("promoted", "superseded"),
    "bad": ("rolled_back",),
    "slow": ("rolled_back",),
    "canary_abort": ("rolled_back",),
    "alert": ("rolled_back",),
    "outage_alert": ("rolled_back",),
}
# Decided: the gate is over, whatever its verdict (held asks a human; that is a decision too).
DONE = frozenset({"promoted", "superseded", "rolled_back", "held", "cancelled"})
# Would change what production serves when it passes: one at a time per project.
SHIPPING = ("good", "alert", "outage_alert", "canary_ok", "canary_abort")
# Alerted once live: not over while promoted.
ALERTED = ("alert", "outage_alert")
OUTAGE_INCIDENTS = 8000  # the incident id of outage alert n is this plus the gate's index


@dataclass
class Gate:
    index: int
    kind: str
    project: str
    deployment_id: str
    version: str
    stage_at: float = 0.0  # staged builds: seconds into the run
    deployed_at: float | None = None
    deploy_status: str = ""
    alert_sent_at: float | None = None
    alert_status: str = ""

    def done(self, state: str | None) -> bool:
        if state is None or state not in DONE:
            return False
        return not (self.kind in ALERTED and state == "promoted")  # its alert is still to come


@dataclass
class Lane:
    project: str
    canary: bool
    queue: list[Gate] = field(default_factory=list)  # shipped one after another
    staged: list[Gate] = field(default_factory=list)  # bad (or slow) builds, alongside
    short_wait: bool = False  # the slow builds' projects


@dataclass
class Plan:
    gates: list[Gate]
    lanes: list[Lane]


def counts(total: int, outage_alerts: int = 0) -> dict[str, int]:
    """~40% good, 30% bad, 10% slow, 10% canary ramps (4 in 10 aborting), 10% alerts; the alerts
    sent while PostgreSQL is down are taken from the good builds."""
    canary = max(2, round(total * 0.1)) if total >= 10 else round(total * 0.1)
    found = {
        "bad": round(total * 0.3),
        "slow": max(1, round(total * 0.1)),
        "canary_abort": max(1, round(canary * 0.4)) if canary >= 2 else 0,
        "alert": max(1, round(total * 0.1)),
        "outage_alert": outage_alerts,
    }
    found["canary_ok"] = canary - found["canary_abort"]
    found["good"] = total - sum(found.values())
    if found["good"] < 1:
        raise ValueError(f"--gates {total}: too few for every kind of gate")
    return found


def plan(total: int, seed: int, stage_window: float, per_lane: float = 2.5, outage_alerts: int = 0) -> Plan:
    rng = random.Random(seed)
    wanted = counts(total, outage_alerts)
    shipping = wanted["good"] + wanted["alert"] + wanted["outage_alert"]
    lanes = [Lane(f"chaos-g{n}", False) for n in range(max(1, math.ceil(shipping / per_lane)))]
    canary_total = wanted["canary_ok"] + wanted["canary_abort"]
    lanes += [Lane(f"chaos-c{n}", True) for n in range(math.ceil(canary_total / 2))]
    lanes += [Lane(f"chaos-s{n}", False, short_wait=True) for n in range(math.ceil(wanted["slow"] / 5))]
    slow_lanes = [lane for lane in lanes if lane.short_wait]
    gated = [lane for lane in lanes if not lane.canary and not lane.short_wait]
    canaries = [lane for lane in lanes if lane.canary]
    gates: list[Gate] = []

    def add(kind: str, lane: Lane) -> Gate:
        n = len(gates)
        gate = Gate(
            n, kind, lane.project, f"dpl_chaos{n:04d}{kind.replace('_', '')}", f"{lane.project}@{n}-{kind}"
        )
        gates.append(gate)
        return gate

    for n in range(wanted["good"]):
        gated[n % len(gated)].queue.append(add("good", gated[n % len(gated)]))
    # Alerts last in the lanes with the fewest good builds: each is live when its alert comes.
    for n in range(wanted["alert"]):
        lane = (
            sorted(gated, key=lambda lane: (len(lane.queue), lane.project))[0]
            if n >= len(gated)
            else gated[-1 - n]
        )
        lane.queue.append(add("alert", lane))
    # Then the ones alerted while PostgreSQL is down, in the lanes that ship least.
    for _ in range(wanted["outage_alert"]):
        lane = sorted(gated, key=lambda lane: (len(lane.queue), lane.project))[0]
        lane.queue.append(add("outage_alert", lane))
    kinds = ["canary_ok"] * wanted["canary_ok"] + ["canary_abort"] * wanted["canary_abort"]
    rng.shuffle(kinds)
    for n, kind in enumerate(kinds):
        canaries[n % len(canaries)].queue.append(add(kind, canaries[n % len(canaries)]))
    for n in range(wanted["bad"]):
        lane = gated[n % len(gated)]
        gate = add("bad", lane)
        gate.stage_at = rng.uniform(0, stage_window)
        lane.staged.append(gate)
    for n in range(wanted["slow"]):
        lane = slow_lanes[n % len(slow_lanes)]
        gate = add("slow", lane)
        gate.stage_at = rng.uniform(0, stage_window / 2)  # early: their deadline is the longest wait
        lane.staged.append(gate)
    return Plan(gates, lanes)


def canary_policy(failures_to_abort: int) -> dict[str, Any]:
    from releases.domain.slo_rules import parse_check

    spec, problems = parse_check(
        {"kind": "sentry_error_rate", "max": 0.01, "window": "5m", "timeout": "3s"}, "chaos"
    )
    assert spec is not None and not problems, problems
    return {
        "router": "vercel",
        "stages": [{"percent": 5, "hold": 0.0}, {"percent": 25, "hold": 0.0}, {"percent": 100, "hold": 0.0}],
        "confirmations": 2,
        "confirmation_interval": 1.0,
        "abort_on_failure": True,
        # A check that errs counts as failed; with a fifth of Sentry's answers 5xx a healthy canary
        # must ride out runs of errors, as a team facing such an outage would set it.
        "failures_to_abort": failures_to_abort,
        "checks": [spec.to_json()],
    }


def setup(plan_: Plan, sim: httpx.Client, args: Any) -> None:
    """Projects in Gatekeeper (ORM) and in the simulator, each with a live known-good baseline."""
    from releases.models import Project

    for lane in plan_.lanes:
        Project.objects.create(
            name=lane.project,
            vercel_project_id=f"prj_{lane.project.replace('-', '')}",
            production_domains=[f"{lane.project}.example.com"],
            sentry_org="acme",
            sentry_project=lane.project,
            sentry_environment="production",
            slack_channel=f"#{lane.project}",
            pagerduty_routing_key_env=PD_KEY_ENV,
            min_sessions=MIN_SESSIONS,
            crash_free_threshold=0.995,
            poll_interval=timedelta(seconds=args.poll_interval),
            max_wait=timedelta(seconds=args.max_wait if lane.short_wait else args.gate_max_wait),
            on_timeout="rollback",  # no verdict in time: keep the previous deployment
            # A fifth of Sentry's answers fail in this run: a gate held after 4 errors in a row
            # would be held by the faults, not by its release.
            max_consecutive_errors=10,
            watch_after_promotion=timedelta(seconds=args.watch),
            canary=canary_policy(args.failures_to_abort) if lane.canary else None,
        )
        vercel_id = f"prj_{lane.project.replace('-', '')}"
        sim.post(
            "/_sim/vercel/projects",
            json={
                "id": vercel_id,
                "name": lane.project,
                "domains": [f"{lane.project}.example.com"],
                "sentry": {"org": "acme", "project": lane.project, "environment": "production"},
            },
        ).raise_for_status()
        sim.post(
            "/_sim/vercel/deployments",
            json={
                "project_id": vercel_id,
                "id": f"dpl_base{lane.project.replace('-', '')}",
                "live": True,
                "target": "production",
                "meta": {"githubCommitSha": f"{lane.project}@baseline"},
                "traffic": {"sessions_per_minute": SPM, "crash_rate": 0.0, "start": time.time() - 600},
            },
        ).raise_for_status()


class Driver:
    """Stages builds, ramps canaries and sends alerts as the gates progress (read from PostgreSQL)."""

    def __init__(self, plan_: Plan, sim_url: str) -> None:
        self.plan = plan_
        self.sim_url = sim_url
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="deploy")
        self.started = time.monotonic()

    def step(self, states: dict[str, str]) -> None:
        now = time.monotonic() - self.started
        for lane in self.plan.lanes:
            for gate in lane.staged:
                if gate.deployed_at is None and now >= gate.stage_at:
                    self._deploy(gate)
            # The next build of the lane once every earlier one is over.
            current = next((g for g in lane.queue if not g.done(states.get(g.deployment_id))), None)
            if current is not None and current.deployed_at is None:
                self._deploy(current)
            for gate in lane.queue:
                if (
                    gate.kind == "alert"
                    and gate.alert_sent_at is None
                    and states.get(gate.deployment_id) == "promoted"
                ):
                    self._alert(gate)

    def _deploy(self, gate: Gate) -> None:
        gate.deployed_at = time.monotonic() - self.started
        crash = BAD_CRASH if gate.kind == "bad" else GOOD_CRASH
        traffic: dict[str, Any] = {
            "sessions_per_minute": SLOW_SPM if gate.kind == "slow" else SPM,
            "crash_rate": crash,
        }
        if gate.kind.startswith("canary"):
            # Serving already (a preview, say), so the first window is full and the rate steady.
            errors = SPM * (0.05 if gate.kind == "canary_abort" else 0.002)
            traffic.update(crash_rate=0.0, errors_per_minute=errors, start=time.time() - 600)
        body = {
            "project_id": f"prj_{gate.project.replace('-', '')}",
            "id": gate.deployment_id,
            "target": "production",
            "meta": {"githubCommitSha": gate.version},
            "traffic": traffic,
            "webhooks": ["deployment.succeeded"],  # the simulator retries it as Vercel does
        }
        self.pool.submit(self._send, gate, "/_sim/vercel/deployments", body, "deploy_status")

    def outage_ready(self, states: dict[str, str]) -> list[Gate] | None:
        """The gates to alert while PostgreSQL is down, once each is live (or already over)."""
        gates = [g for g in self.plan.gates if g.kind == "outage_alert" and g.alert_sent_at is None]
        if not gates:
            return None
        live = [g for g in gates if states.get(g.deployment_id) == "promoted"]
        settled = all(g in live or g.done(states.get(g.deployment_id)) for g in gates)
        return live if live and settled else None

    def alert_now(self, gate: Gate, incident: int) -> None:
        """A critical alert for a live release, sent at once and waited for: traffic stays healthy,
        so only the alert (not the bake watch) can roll it back."""
        self._send(gate, "/_sim/sentry/webhooks", self._critical(gate, incident), "alert_status")

    def _alert(self, gate: Gate) -> None:
        phase = {"org": "acme", "environment": "production", "release": gate.version, "crash_rate": BAD_CRASH}
        body = self._critical(gate, 7000 + gate.index)

        def send() -> None:
            # Users start crashing, then Sentry's alert fires (and is never retried by Sentry; if
            # it is lost, the bake watch sees the same crashes).
            with httpx.Client(base_url=self.sim_url, timeout=60, trust_env=False) as client:
                client.post("/_sim/sentry/traffic/phase", json=phase)
            self._send(gate, "/_sim/sentry/webhooks", body, "alert_status")

        self.pool.submit(send)

    def _critical(self, gate: Gate, incident: int) -> dict[str, Any]:
        """A critical metric alert for the gate's project, starting now (so never stale)."""
        gate.alert_sent_at = time.monotonic() - self.started
        return {
            "action": "critical",
            "project": gate.project,
            "org": "acme",
            "environment": "production",
            "date_started": time.time(),
            "incident_id": str(incident),
        }

    def _send(self, gate: Gate, path: str, body: dict[str, Any], what: str) -> None:
        try:
            with httpx.Client(base_url=self.sim_url, timeout=60, trust_env=False) as client:
                answer = client.post(path, json=body)
            deliveries = answer.json().get("deliveries") or []
            setattr(gate, what, ",".join(str(d.get("status") or d.get("error")) for d in deliveries))
        except (httpx.HTTPError, ValueError) as exc:
            setattr(gate, what, f"error: {exc}")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
