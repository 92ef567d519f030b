"""What ``gate_report`` prints: a header row, then one line per release with what decided it."""

from __future__ import annotations

from notifications.messages import duration, percent
from releases.models import Release

COLUMNS = (
    ("PROJECT", 16),
    ("RELEASE", 12),
    ("STATE", 12),
    ("METHOD", 10),
    ("SESSIONS", 8),
    ("CRASHED", 7),
    ("CRASH-FREE", 10),
    ("THRESHOLD", 9),
    ("TOOK", 8),
)


def header() -> str:
    return "  ".join(f"{name:<{width}}" for name, width in COLUMNS) + "  WHAT DECIDED IT"


def release_line(release: Release) -> str:
    sessions = "-" if release.sessions is None else f"{release.sessions:,}"
    crashed = "-" if release.crashed is None else f"{release.crashed:,}"
    took = "-"
    if release.decided_at and release.gating_started_at:
        took = duration((release.decided_at - release.gating_started_at).total_seconds())
    gate = release.latest_analysis("gate")
    if gate is not None:
        # A snapshot from before the choice of method was judged by the fixed rule.
        method = str((gate.policy or {}).get("method", "fixed"))
    else:
        method = "canary" if release.latest_analysis("canary") is not None else "-"
    reasons = "; ".join(release.verdict_reasons) or "-"
    values = (
        release.project.name,
        (release.version or release.deployment_id)[:12],
        release.state,
        method,
        sessions,
        crashed,
        percent(release.crash_free_rate),
        percent(release.project.crash_free_threshold),
        took,
    )
    cells = [
        f"{value:>{width}}"
        if name in {"SESSIONS", "CRASHED", "CRASH-FREE", "THRESHOLD"}
        else f"{value:<{width}}"
        for (name, width), value in zip(COLUMNS, values, strict=True)
    ]
    return "  ".join(cells) + "  " + reasons
