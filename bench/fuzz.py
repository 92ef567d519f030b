"""Hostile input at scale: the fuzz properties of tests/fuzz/ with the big hypothesis profile.

Runs the hypothesis properties for both webhooks and the REST API, and schemathesis against
/api/schema/ (as staff and anonymously), in one pytest run on real PostgreSQL, then prints the
cases each endpoint saw, the 5xx answers, the rows changed by refused requests, and whether each
target of issue 5 is met: at least 10,000 cases, no 5xx, no row changed by a refused request.
Exits non-zero when a target is missed.

    .venv/bin/python bench/fuzz.py                  # ~12,600 cases, a few minutes
    .venv/bin/python bench/fuzz.py --examples 200   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PYTHON, ROOT, flush_broker

DATABASE = "gatekeeper_bench_fuzz"  # pytest-django works in test_<this>
BROKER_DB = 8
TARGET_CASES = 10_000
PROPERTIES = ["tests/fuzz/test_webhooks.py", "tests/fuzz/test_api.py", "tests/fuzz/test_schema.py"]
# Cases per test = examples x share (tests/fuzz: webhooks and the API 1, schemathesis 0.5 as
# staff and 0.25 anonymously, for each of its 10 operations): 10.5 x examples in all.
CASES_PER_EXAMPLE = 3 + 10 * 0.75


def endpoint_of(target: str) -> str:
    """'POST /webhooks/vercel/ (schemathesis, staff)' -> 'POST /webhooks/vercel/'."""
    return target.split(" (", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1200, help="hypothesis examples per property")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--broker-db", type=int, default=BROKER_DB)
    args = parser.parse_args()

    report = Path(tempfile.mkdtemp(prefix="gatekeeper-fuzz-")) / "report.json"
    log = report.with_name("pytest.log")
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{args.database}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{args.broker_db}",
        "GATEKEEPER_FUZZ_PROFILE": "fuzz-bench",
        "GATEKEEPER_FUZZ_EXAMPLES": str(args.examples),
        "GATEKEEPER_FUZZ_REPORT": str(report),
    }
    flush_broker(args.broker_db)
    print(
        f"fuzz: {args.examples} examples per property (~{int(args.examples * CASES_PER_EXAMPLE):,} cases), "
        f"{os.cpu_count()} cores; pytest output in {log}",
        flush=True,
    )
    started = time.monotonic()
    with log.open("w") as out:
        command = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "3600", *PROPERTIES]
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    flush_broker(args.broker_db)

    figures = json.loads(report.read_text()) if report.exists() else {}
    cases, errors, changes = (figures.get(k, {}) for k in ("cases", "server_errors", "refused_changes"))
    per_endpoint: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    print(f"\n{'target':<62} {'cases':>7} {'5xx':>5} {'refused, changed':>17}")
    for target in sorted(cases):
        row = [cases[target], errors.get(target, 0), changes.get(target, 0)]
        print(f"{target:<62} {row[0]:>7,} {row[1]:>5} {row[2]:>17}")
        for index, value in enumerate(row):
            per_endpoint[endpoint_of(target)][index] += value
    print(f"\n{'endpoint':<62} {'cases':>7} {'5xx':>5} {'refused, changed':>17}")
    for endpoint, (count, server, changed) in sorted(per_endpoint.items()):
        print(f"{endpoint:<62} {count:>7,} {server:>5} {changed:>17}")

    total, total_5xx, total_changed = (sum(row[i] for row in per_endpoint.values()) for i in range(3))
    print(f"\ntotal: {total:,} cases in {elapsed:.0f} s; pytest exit {result.returncode}")
    targets = [
        (f"cases >= {TARGET_CASES:,}", total >= TARGET_CASES, f"{total:,}"),
        ("no 5xx", total_5xx == 0, str(total_5xx)),
        ("no row changed by a refused request", total_changed == 0, str(total_changed)),
        ("every property held (pytest passed)", result.returncode == 0, f"exit {result.returncode}"),
    ]
    for name, met, value in targets:
        print(f"target {name:<40} {value:>10}  {'met' if met else 'MISSED'}")
    if result.returncode != 0:
        print(f"\nlast lines of {log}:\n" + "\n".join(log.read_text().splitlines()[-40:]))
    sys.exit(0 if all(met for _, met, _ in targets) else 1)


if __name__ == "__main__":
    main()
