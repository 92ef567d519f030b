"""The traffic model and the sessions query parser, in-process (no HTTP)."""

from __future__ import annotations

import itertools
import math

import pytest

from simulator.sessions import SessionsError, parse_query
from simulator.traffic import Phase, Traffic


def _traffic(*phases: Phase, stop: float | None = None) -> Traffic:
    return Traffic("acme", "shop-web", 4507, "production", "r1", stop, list(phases))


def test_sessions_accrue_at_the_configured_rate() -> None:
    traffic = _traffic(Phase(at=1000.0, sessions_per_minute=6000, crash_rate=0.01, errored_rate=0.0))
    counts = traffic.cumulative(1000.0 + 60)
    assert counts.sessions == 6000
    assert counts.crashed == 60
    assert traffic.cumulative(999.0).sessions == 0


def test_bucket_counts_are_differences_of_cumulatives_and_add_up() -> None:
    traffic = _traffic(Phase(at=0.0, sessions_per_minute=137, crash_rate=0.013, errored_rate=0.05))
    edges = [0.0, 7.3, 19.9, 60.0, 61.5, 600.0]
    buckets = [traffic.between(a, b) for a, b in itertools.pairwise(edges)]
    total = traffic.cumulative(600.0)
    assert sum(b.sessions for b in buckets) == total.sessions == math.floor(137 / 60 * 600)
    assert sum(b.crashed for b in buckets) == total.crashed == math.floor(total.sessions * 0.013 + 0.5)
    assert all(b.healthy >= 0 and b.errored >= 0 and b.crashed >= 0 for b in buckets)


def test_status_counts_never_go_negative_in_tiny_buckets() -> None:
    traffic = _traffic(Phase(at=0.0, sessions_per_minute=60, crash_rate=0.3, errored_rate=0.3))
    for second in range(200):
        bucket = traffic.between(second, second + 1)
        assert min(bucket.healthy, bucket.errored, bucket.crashed) >= 0
        assert bucket.sessions == 1


def test_phases_accrue_from_their_own_start_and_add_up() -> None:
    traffic = _traffic(
        Phase(at=0.0, sessions_per_minute=600, crash_rate=0.0, errored_rate=0.0),
        Phase(at=60.0, sessions_per_minute=1200, crash_rate=0.5, errored_rate=0.0),
    )
    at_end = traffic.cumulative(120.0)
    assert at_end.sessions == 600 + 1200
    assert at_end.crashed == 600


def test_stop_ends_the_traffic() -> None:
    traffic = _traffic(Phase(at=0.0, sessions_per_minute=60, crash_rate=0.0, errored_rate=0.0), stop=30.0)
    assert traffic.cumulative(1000.0).sessions == 30


@pytest.mark.parametrize(
    ("query", "releases"),
    [
        ("release:web@1.4.2", ("web@1.4.2",)),
        ('release:"web 1"', ("web 1",)),
        ("release:[a,b]", ("a", "b")),
        ('release:["a b",c]', ("a b", "c")),
        ('release:["a\\"q",b]', ('a"q', "b")),
    ],
)
def test_release_filters_parse(query: str, releases: tuple[str, ...]) -> None:
    [[term]] = parse_query(query)
    assert term.key == "release"
    assert term.values == releases


def test_or_makes_separate_clauses() -> None:
    clauses = parse_query("release:a OR release:b environment:prod")
    assert [[t.values for t in clause] for clause in clauses] == [[("a",)], [("b",), ("prod",)]]


@pytest.mark.parametrize("query", ["release:web@*", 'release:["a*",b]', "free text", "unknown:x"])
def test_unsupported_queries_are_rejected(query: str) -> None:
    with pytest.raises(SessionsError):
        parse_query(query)


def test_error_events_accrue_per_phase_independently_of_sessions() -> None:
    traffic = _traffic(
        Phase(at=0.0, sessions_per_minute=600, crash_rate=0.0, errored_rate=0.0, errors_per_minute=60),
        Phase(at=60.0, sessions_per_minute=600, crash_rate=0.0, errored_rate=0.0, errors_per_minute=0),
        Phase(at=120.0, sessions_per_minute=0, crash_rate=0.0, errored_rate=0.0, errors_per_minute=600),
        stop=150.0,
    )
    assert traffic.errors_cumulative(30.0) == 30
    assert traffic.errors_cumulative(1000.0) == 60 + 0 + 300
    assert traffic.errors_between(50.0, 130.0) == 10 + 100
    assert traffic.errors_between(130.0, 50.0) == 0
    assert traffic.cumulative(1000.0).sessions == 1200
