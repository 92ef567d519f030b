"""What the fuzz tests share: the hypothesis profiles, a digest of every table, and a tally of cases.

`make test` runs the small profile; `bench/fuzz.py` sets GATEKEEPER_FUZZ_PROFILE=fuzz-bench (and
GATEKEEPER_FUZZ_REPORT to a file) and reads back how many cases each endpoint saw.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

from django.db import connection
from hypothesis import HealthCheck, settings

PROFILE_ENV = "GATEKEEPER_FUZZ_PROFILE"
REPORT_ENV = "GATEKEEPER_FUZZ_REPORT"
EXAMPLES_ENV = "GATEKEEPER_FUZZ_EXAMPLES"  # overrides the bench profile's count per test

_COMMON = {
    # Database round trips on a busy 2-core machine: timing is not the property under test.
    "deadline": None,
    # The database fixture is function-scoped on purpose: rows written by accepted deliveries
    # stay, so later examples meet releases in every state.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "print_blob": True,
}
settings.register_profile("fuzz-ci", max_examples=60, **_COMMON)
settings.register_profile("fuzz-bench", max_examples=int(os.environ.get(EXAMPLES_ENV) or 1200), **_COMMON)


def fuzz_settings(share: float = 1.0) -> settings:
    """The selected profile, with ``share`` of its examples (a cheap target gets more, a slow one fewer).

    Not loaded globally: the rest of the suite keeps hypothesis' own defaults."""
    parent = settings.get_profile(os.environ.get(PROFILE_ENV) or "fuzz-ci")
    return settings(parent, max_examples=max(1, int(parent.max_examples * share)))


# --- every table, before and after ---------------------------------------------------------------


# Columns authentication writes before the view decides anything (when a token was last used):
# recording that a valid token called is not a refused request acting on something.
BOOKKEEPING = {"releases_apitoken": "last_used_at"}


def _row_text(table: str) -> str:
    column = BOOKKEEPING.get(table)
    return f"(to_jsonb(t) - '{column}')::text" if column else "t::text"


def table_digest() -> dict[str, tuple[int, str]]:
    """Row count and an md5 of every row's text, for each table Django knows: one statement."""
    tables = sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))
    quote = connection.ops.quote_name
    parts = [
        f"SELECT '{name}', count(*), "  # noqa: S608
        f"md5(coalesce(string_agg({_row_text(name)}, '|' ORDER BY {_row_text(name)}), '')) "
        f"FROM {quote(name)} t"
        for name in tables
    ]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts))
        return {name: (count, digest) for name, count, digest in cursor.fetchall()}


def changed_tables(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


# --- the tally bench/fuzz.py prints --------------------------------------------------------------


class Tally:
    """Cases, 5xx answers and refused requests that changed a row, per target (thread-safe)."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.server_errors: Counter[str] = Counter()
        self.refused_changes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, target: str, status: int, *, refused_changed: bool = False) -> None:
        with self._lock:
            self.cases[target] += 1
            if status >= 500:
                self.server_errors[target] += 1
            if refused_changed:
                self.refused_changes[target] += 1

    def write(self) -> None:
        path = os.environ.get(REPORT_ENV)
        if not path:
            return
        report = Path(path)
        previous = json.loads(report.read_text()) if report.exists() and report.stat().st_size else {}
        merged: dict[str, dict[str, int]] = {}
        for field, counter in (
            ("cases", self.cases),
            ("server_errors", self.server_errors),
            ("refused_changes", self.refused_changes),
        ):
            totals = Counter(previous.get(field, {}))
            totals.update(counter)
            merged[field] = dict(totals)
        report.write_text(json.dumps(merged, indent=2, sort_keys=True))
        # Written once per module: what is in the file now must not be added again.
        for counter in (self.cases, self.server_errors, self.refused_changes):
            counter.clear()


TALLY = Tally()
