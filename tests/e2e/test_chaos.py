"""The chaos run, short: a dozen gates while the worker and the leading beat are killed, both beats
stop for a while, Redis and PostgreSQL restart, PostgreSQL is down while a Sentry alert arrives,
and a tenth of the vendors' answers fail. No gate may be lost and no side effect doubled; the
alert is kept by the spool and rolls back, and the stalled dispatcher pages once and resolves.

It runs bench/chaos.py as its own process: that run starts its own PostgreSQL cluster and Redis
server on free ports (it restarts them), never the shared ones the rest of the suite uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos_infra import postgres_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not postgres_available(), reason="needs PostgreSQL's server binaries and redis-server"
    ),
]
ROOT = Path(__file__).resolve().parents[2]
SHORT = [
    "--gates", "12", "--kills", "2", "--redis-restarts", "1", "--pg-restarts", "1",
    "--error-rate", "0.10", "--timeout-rate", "0.02", "--rate-limit-rate", "0.02",
    "--chaos-seconds", "25", "--timeout", "60", "--per-lane", "2", "--max-wait", "30", "--watch", "30",
    "--beat-kills", "1", "--beat-outage", "20", "--stall-seconds", "8",
    "--outage-alerts", "1", "--outage-seconds", "8",
]  # fmt: skip


@pytest.mark.timeout(260)
def test_no_gate_is_lost_and_no_side_effect_is_doubled_under_chaos(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    run = subprocess.Popen(
        [sys.executable, "bench/chaos.py", *SHORT, "--json", str(figures_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = run.communicate(timeout=230)
    except subprocess.TimeoutExpired:
        run.terminate()  # SIGTERM: it stops the processes and servers it started
        out, err = run.communicate(timeout=60)
    report = out + err[-3000:]
    assert figures_file.exists(), report
    figures = json.loads(figures_file.read_text())
    assert figures["faults"].get("worker_kills", 0) + figures["faults"].get("worker_child_kills", 0) == 2, (
        report
    )
    assert figures["faults"].get("redis") == 1 and figures["faults"].get("postgres") == 1, report
    faults = figures["faults"]
    assert (faults.get("beat_kills"), faults.get("beat_outage"), faults.get("postgres_outage")) == (
        1,
        1,
        1,
    ), report
    # The alert sent while PostgreSQL was down: answered 503, replayed from the spool, rolled back.
    assert figures["outage_alerts_kept"] == 1, report
    # Both beats down for longer than the stall threshold: paged once per episode, each resolved.
    assert figures["stall_episodes"] >= 1 and figures["stall_episodes_open"] == 0, report
    # (An episode that ends before its page got through a failing PagerDuty is never paged.)
    assert 1 <= figures["stall_pages"] <= figures["stall_episodes"], report
    assert figures["stall_pages_resolved"] == figures["stall_pages"], report
    assert sum(figures["injected"].values()) > 0, report
    assert (figures["decided"], figures["total"], figures["lost"]) == (12, 12, []), report
    assert figures["duplicate_promotes"] == {} and figures["duplicate_rollbacks"] == {}, report
    assert figures["duplicate_pages"] == {} and figures["duplicate_slack"] == {}, report
    assert figures["unexpected"] == [] and figures["staged_rollbacks"] == [], report
    assert figures["wrong_production"] == [], report
    assert not any(figures["deaths"].values()), report  # web, beat and the simulator never crashed
    assert run.returncode == 0, report
