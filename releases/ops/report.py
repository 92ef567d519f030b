"""One line per release: what the commands print."""

from __future__ import annotations

from notifications.messages import duration, percent
from releases.models import Release


def release_line(release: Release) -> str:
    sessions = "-" if release.sessions is None else f"{release.sessions:,}"
    crashed = "-" if release.crashed is None else f"{release.crashed:,}"
    took = ""
    if release.decided_at and release.gating_started_at:
        took = duration((release.decided_at - release.gating_started_at).total_seconds())
    reasons = "; ".join(release.verdict_reasons)
    return (
        f"{release.project.name:<16} {(release.version or release.deployment_id)[:12]:<12} "
        f"{release.state:<12} sessions {sessions:>7} crashed {crashed:>5} "
        f"crash-free {percent(release.crash_free_rate):>7} "
        f"(threshold {percent(release.project.crash_free_threshold)}) {took:>7}  {reasons}"
    )
