"""What the chaos run found, from Gatekeeper's database and from what the simulator applied.

Duplicates are counted from what the vendors *did*, never from what Gatekeeper sent: a request
the simulator answered with an injected 5xx, 429 or plain timeout changed nothing and may be
sent again; one it applied and whose answer was then lost (``applied_status``) counts as done.

- duplicate promote: a deployment promoted more than once (applied promote requests to it);
- duplicate rollback: one intent rolled back more than once (applied rollback requests with the
  same ``description``, which names the release rolled back from, or the canary aborted);
- duplicate page: more than one PagerDuty incident opened under one ``dedup_key``;
- duplicate Slack verdict: the same message (channel and text) posted more than once.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx

from bench.chaos_scenario import EXPECTED, OUTAGE_INCIDENTS, Gate, Plan

STALL_TEXT = "Gatekeeper's poll dispatcher"


def applied(entry: dict[str, Any]) -> bool:
    """The vendor did it: answered 2xx itself, or did it and the answer was lost."""
    status = entry.get("status") if entry.get("fault") is None else entry.get("applied_status")
    return status is not None and 200 <= status < 300


@dataclass
class Figures:
    total: int = 0
    decided: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicate_promotes: dict[str, int] = field(default_factory=dict)
    duplicate_rollbacks: dict[str, int] = field(default_factory=dict)
    duplicate_pages: dict[str, int] = field(default_factory=dict)
    duplicate_slack: dict[str, int] = field(default_factory=dict)
    repeated_triggers: int = 0  # same dedup_key again: harmless, PagerDuty folds them
    staged_rollbacks: list[str] = field(default_factory=list)  # production moved by a staged build
    wrong_production: list[str] = field(default_factory=list)
    longest_overdue_s: float = 0.0
    longest_overdue_where: str = ""
    longest_lag_s: float = 0.0
    longest_past_deadline_s: float = 0.0
    longest_action_s: float = 0.0
    longest_action_where: str = ""
    slack_not_sent: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    vendor_requests: int = 0
    faulted_while_on: tuple[int, int] = (0, 0)  # (faulted, all) vendor answers while faults were on
    # Alerts sent while PostgreSQL was down: what the web answered, and what became of them.
    outage_alerts: list[str] = field(default_factory=list)
    outage_alerts_kept: int = 0  # answered 503 (spooled) and rolled back once the database returned
    # The dispatcher's stalls (both beats down): episodes recorded, and what PagerDuty saw of them.
    stall_episodes: int = 0
    stall_episodes_open: int = 0
    stall_pages: int = 0
    stall_pages_resolved: int = 0
    duplicate_stall_posts: dict[str, int] = field(default_factory=dict)  # channel: posts
    log_complete: bool = True

    def target_met(self) -> bool:
        return (
            self.decided == self.total
            and self.stall_pages <= self.stall_episodes
            and not self.duplicate_stall_posts
            and not self.lost
            and not self.duplicate_promotes
            and not self.duplicate_rollbacks
            and not self.duplicate_pages
            and not self.duplicate_slack
        )

    def outcomes_right(self) -> bool:
        return not self.unexpected and not self.staged_rollbacks and not self.wrong_production


def collect(plan: Plan, sim: httpx.Client, window: tuple[int, int]) -> Figures:
    """``window``: the request log's sequence numbers (after, up to) while the faults were on."""
    figures = Figures(total=len(plan.gates))
    _from_database(plan, figures)
    _from_simulator(plan, sim, figures, window)
    return figures


def _from_database(plan: Plan, figures: Figures) -> None:
    from releases.models import Action, GateCheck, RampCheck, Release

    by_id = {gate.deployment_id: gate for gate in plan.gates}
    releases = {
        r.deployment_id: r for r in Release.objects.select_related("project").filter(deployment_id__in=by_id)
    }
    for gate in plan.gates:
        release = releases.get(gate.deployment_id)
        state = release.state if release is not None else None
        if gate.done(state):
            figures.decided += 1
            if state not in EXPECTED[gate.kind]:
                figures.unexpected.append(
                    f"{gate.version}: {state} ({release.verdict_rule if release else ''})"
                )
        else:
            where = "never reached Gatekeeper" if release is None else f"still {state}"
            figures.lost.append(f"{gate.version}: {where} (staged: {gate.deploy_status or '-'})")
    checks: dict[str, list[tuple[str, datetime, int | None]]] = defaultdict(list)
    for deployment, phase, at, lag in GateCheck.objects.filter(release__deployment_id__in=by_id).values_list(
        "release__deployment_id", "analysis__kind", "checked_at", "lag_ms"
    ):
        checks[deployment].append((phase, at, lag))
        if lag is not None:
            figures.longest_lag_s = max(figures.longest_lag_s, lag / 1000)
    ramps: dict[str, list[datetime]] = defaultdict(list)
    for deployment, at in RampCheck.objects.filter(release__deployment_id__in=by_id).values_list(
        "release__deployment_id", "checked_at"
    ):
        ramps[deployment].append(at)
    _outage_alerts(plan, releases, figures)
    from releases.models import DispatchStall

    figures.stall_episodes = DispatchStall.objects.count()
    figures.stall_episodes_open = DispatchStall.objects.filter(resumed_at__isnull=True).count()
    for deployment, release in releases.items():
        _overdue(by_id[deployment], release, checks[deployment], sorted(ramps[deployment]), figures)
    actions = Action.objects.filter(release__deployment_id__in=by_id)
    figures.slack_not_sent = actions.filter(kind="slack", status="failed").count()
    for kind, key, created, finished in actions.exclude(finished_at=None).values_list(
        "kind", "key", "created_at", "finished_at"
    ):
        took = (finished - created).total_seconds()
        if kind in ("promote", "rollback", "traffic") and took > figures.longest_action_s:
            figures.longest_action_s, figures.longest_action_where = took, key


def _outage_alerts(plan: Plan, releases: dict[str, Any], figures: Figures) -> None:
    from releases.models import WebhookDelivery

    for gate in plan.gates:
        if gate.kind != "outage_alert":
            continue
        release = releases.get(gate.deployment_id)
        delivery = WebhookDelivery.objects.filter(
            source="sentry", delivery_id=f"metric_alert:{OUTAGE_INCIDENTS + gate.index}:critical"
        ).first()
        if delivery is None:
            how = "never recorded"
        elif "reconciled_from" in delivery.payload:
            how = "found open in Sentry by the reconciliation"
        else:
            how = "replayed from the spool"
        state = release.state if release is not None else "never reached Gatekeeper"
        figures.outage_alerts.append(f"{gate.version}: answered {gate.alert_status or '-'}, {how}, {state}")
        if gate.alert_status == "503" and how == "replayed from the spool" and state == "rolled_back":
            figures.outage_alerts_kept += 1


def _overdue(
    gate: Gate,
    release: Any,
    checks: list[tuple[str, datetime, int | None]],
    ramps: list[datetime],
    figures: Figures,
) -> None:
    """The longest a gate waited past its next poll: each gap between its polls less the interval
    (the first poll is due when gating starts), and how long past max_wait a timed-out gate ran."""
    interval = release.project.poll_interval.total_seconds()
    gaps: list[float] = []
    gate_times = sorted(at for phase, at, _ in checks if phase == "gate")
    if release.gating_started_at is not None and gate_times:
        previous = release.gating_started_at
        gaps.append((gate_times[0] - previous).total_seconds())
        gaps += [(b - a).total_seconds() - interval for a, b in itertools.pairwise(gate_times)]
    bake = sorted(at for phase, at, _ in checks if phase == "bake")
    gaps += [(b - a).total_seconds() - interval for a, b in itertools.pairwise(bake)]
    stage = release.latest_analysis("canary")
    confirm = float((stage.policy if stage else {}).get("confirmation_interval", 30))
    gaps += [(b - a).total_seconds() - confirm for a, b in itertools.pairwise(ramps)]
    if gaps and max(gaps) > figures.longest_overdue_s:
        figures.longest_overdue_s, figures.longest_overdue_where = max(gaps), gate.version
    if release.verdict_rule == "timeout" and release.decided_at and release.gating_started_at:
        gate_analysis = release.latest_analysis("gate")
        extra = gate_analysis.extra_wait if gate_analysis else timedelta(0)
        deadline = release.gating_started_at + release.project.max_wait + extra
        figures.longest_past_deadline_s = max(
            figures.longest_past_deadline_s, (release.decided_at - deadline).total_seconds()
        )


def _from_simulator(plan: Plan, sim: httpx.Client, figures: Figures, window: tuple[int, int]) -> None:
    log = sim.get("/_sim/requests").json()["requests"]
    figures.vendor_requests = len(log)
    figures.log_complete = not log or log[0]["seq"] == 1
    during = [e for e in log if window[0] < e["seq"] <= window[1]]
    figures.faulted_while_on = (sum(1 for e in during if e["fault"]), len(during))
    injected: Counter[str] = Counter()
    for entry in log:
        if entry["fault"]:
            injected[f"{entry['service']} {entry['fault']}{' (applied)' if applied(entry) else ''}"] += 1
    figures.injected = dict(sorted(injected.items()))
    posts = [e for e in log if e["service"] == "vercel" and e["method"] == "POST" and applied(e)]
    promotes = Counter(e["path"].rsplit("/", 1)[-1] for e in posts if "/promote/" in e["path"])
    figures.duplicate_promotes = {k: n for k, n in promotes.items() if n > 1}
    descriptions = Counter(
        unquote((e["query"].get("description") or ["(none)"])[0]) for e in posts if "/rollback/" in e["path"]
    )
    figures.duplicate_rollbacks = {k: n for k, n in descriptions.items() if n > 1}
    staged = {gate.version: gate for gate in plan.gates if gate.kind in ("bad", "slow")}
    for description in descriptions:
        named = description.removeprefix("Gatekeeper: ").removesuffix(" failed its gate")
        if named in staged:
            figures.staged_rollbacks.append(f"{named} rolled production back")
    pages = sim.get("/_sim/pagerduty/incidents").json()["incidents"]
    from notifications.operations import STALL_DEDUP_KEY

    # Each stall of the dispatcher is its own PagerDuty incident under one key (a trigger after a
    # resolve opens a new one): more incidents than recorded episodes would be a duplicate.
    stalls = [incident for incident in pages if incident["dedup_key"] == STALL_DEDUP_KEY]
    figures.stall_pages = len(stalls)
    figures.stall_pages_resolved = sum(1 for incident in stalls if incident["status"] == "resolved")
    pages = [incident for incident in pages if incident["dedup_key"] != STALL_DEDUP_KEY]
    opened = Counter(incident["dedup_key"] for incident in pages)
    figures.duplicate_pages = {k: n for k, n in opened.items() if n > 1}
    figures.repeated_triggers = sum(
        max(0, sum(1 for e in i["events"] if e.get("event_action") == "trigger") - 1) for i in pages
    )
    messages = sim.get("/_sim/slack/messages").json()["messages"]
    # Two stalls of the same length read the same; each episode posts once to each channel that
    # it stalled, and once that it resumed.
    stall_posts = Counter(m["channel"] for m in messages if STALL_TEXT in m["text"])
    figures.duplicate_stall_posts = {
        channel: n for channel, n in stall_posts.items() if n > 2 * figures.stall_episodes
    }
    messages = [m for m in messages if STALL_TEXT not in m["text"]]
    posted = Counter((m["channel"], m["text"]) for m in messages)
    figures.duplicate_slack = {f"{c} {t[:80]}": n for (c, t), n in posted.items() if n > 1}
    for lane in plan.lanes:
        expected = f"dpl_base{lane.project.replace('-', '')}"
        for gate in lane.queue:
            if gate.kind in ("good", "canary_ok"):
                expected = gate.deployment_id
        view = sim.get(f"/_sim/vercel/projects/prj_{lane.project.replace('-', '')}").json()
        if view["production_deployment_id"] != expected:
            figures.wrong_production.append(
                f"{lane.project}: production serves {view['production_deployment_id']}, expected {expected}"
            )


def render(figures: Figures, faults_done: dict[str, int], deaths: dict[str, list[int]]) -> list[str]:
    dupes = [
        ("duplicate promote calls", figures.duplicate_promotes),
        ("duplicate rollback calls", figures.duplicate_rollbacks),
        ("duplicate pages", figures.duplicate_pages),
        ("duplicate Slack verdicts", figures.duplicate_slack),
    ]
    faulted, asked = figures.faulted_while_on
    lines = [
        f"gates decided / total      {figures.decided} / {figures.total}",
        f"gates lost                 {len(figures.lost)}",
        *(f"  lost: {text}" for text in figures.lost),
    ]
    for label, found in dupes:
        lines.append(f"{label:<26} {sum(n - 1 for n in found.values())}")
        lines += [f"  {key}: {n} times" for key, n in found.items()]
    lines += [
        f"longest overdue            {figures.longest_overdue_s:.1f} s past its next poll "
        f"({figures.longest_overdue_where})",
        f"                           poll lag max {figures.longest_lag_s:.1f} s; "
        f"past max_wait {figures.longest_past_deadline_s:.1f} s",
        f"longest promote/rollback/traffic move {figures.longest_action_s:.1f} s "
        f"({figures.longest_action_where})",
        f"outcomes as expected       {figures.total - len(figures.unexpected) - len(figures.lost)}"
        f" / {figures.total}",
        *(f"  unexpected: {text}" for text in figures.unexpected),
        *(f"  {text}" for text in figures.staged_rollbacks),
        *(f"  {text}" for text in figures.wrong_production),
        f"alerts while PostgreSQL was down {len(figures.outage_alerts)}, kept by the spool and rolled "
        f"back {figures.outage_alerts_kept}",
        *(f"  {text}" for text in figures.outage_alerts),
        f"dispatcher stalls           {figures.stall_episodes} recorded ({figures.stall_episodes_open} still "
        f"open); PagerDuty incidents {figures.stall_pages}, resolved {figures.stall_pages_resolved}; "
        f"channels posted to more than twice an episode {len(figures.duplicate_stall_posts)}",
        f"Slack posts given up (outcome unknown, not resent) {figures.slack_not_sent}; "
        f"repeated PagerDuty triggers folded by dedup_key {figures.repeated_triggers}",
        "faults injected            "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults_done.items()))
        + f"; vendor answers faulted while the faults were on: {faulted} of {asked} "
        f"({100 * faulted / max(1, asked):.0f}%)",
        *(f"  {k}: {v}" for k, v in figures.injected.items()),
    ]
    for name, codes in deaths.items():
        if codes:
            lines.append(f"  {name} died on its own {len(codes)} times (exit codes {codes}); restarted")
    if not figures.log_complete:
        lines.append("  WARNING: the simulator's request log overflowed; duplicate counts are a floor")
    return lines
