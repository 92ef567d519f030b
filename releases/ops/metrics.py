"""What /metrics reports, read from PostgreSQL at scrape time.

Gatekeeper runs several gunicorn processes and Celery workers on several machines; counters kept
in one process would each see a part, and a scrape would get whichever process answered. So the
collector keeps nothing: every scrape asks PostgreSQL (the source of truth) a handful of
aggregate queries, and every web process answers the same numbers. Counters that are counts of
rows (decisions, action attempts, deliveries) fall only when rows are deleted (a pruned delivery,
a deleted project), which Prometheus reads as a counter reset.

A scrape is nine queries. Those over releases, actions and deliveries read the whole (small)
table: a few rows per deployment, and deliveries are pruned (prune_deliveries); no index would
help a GROUP BY over every row. GateCheck grows with every poll, so the lag histogram reads only
a bounded range of its primary key (LAG_MAX_CHECKS).

Provider calls leave no row, so they are counted in Redis (releases/integrations/call_counts.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

import redis
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from releases.integrations import call_counts
from releases.models import Action, GateCheck, Release, WebhookDelivery
from releases.scheduling import stall

# Seconds from a gate's start to its decision: gates wait for traffic, minutes to hours.
DECISION_BUCKETS = (60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0)
# Seconds a poll ran after it was due: the dispatcher runs every second, coalescing adds up to 10.
LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
# The poll-lag histogram looks at checks of the last hour, and at most at the latest this many
# (a range of the primary key): GateCheck has no index on checked_at, and at 10,000 gates polled
# every minute an hour is 600,000 rows. The scrape stays a bounded index range scan.
LAG_WINDOW = timedelta(hours=1)
LAG_MAX_CHECKS = 20_000


def _le(bound: float) -> str:
    return str(float(bound))  # "60.0", as prometheus_client's own histograms write it


class GatekeeperCollector(Collector):
    """Every gatekeeper_* metric, read when Prometheus scrapes. Raises DatabaseError when
    PostgreSQL does not answer (the view answers 503)."""

    def collect(self) -> Iterable[Metric]:
        yield from self._releases()
        yield from self._decisions()
        yield self._decision_time()
        yield self._poll_lag()
        yield from self._actions()
        yield self._deliveries()
        yield from self._dispatch()
        yield from self._provider_calls()
        up = GaugeMetricFamily("gatekeeper_up", "1: this scrape read PostgreSQL (else /metrics answers 503)")
        up.add_metric([], 1)
        yield up

    def _releases(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "gatekeeper_releases", "Releases by current state and project", labels=["project", "state"]
        )
        rows = Release.objects.order_by().values("project__name", "state").annotate(n=Count("pk"))
        for row in rows:
            gauge.add_metric([row["project__name"], row["state"]], row["n"])
        yield gauge

    def _decisions(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "gatekeeper_decisions",
            "Decided releases by verdict (pass, fail, inconclusive, approved, rejected, ...) and rule",
            labels=["outcome", "rule"],
        )
        rows = (
            Release.objects.filter(decided_at__isnull=False)
            .order_by()
            .values("verdict", "verdict_rule")
            .annotate(n=Count("pk"))
        )
        for row in rows:
            counter.add_metric([row["verdict"] or "none", row["verdict_rule"] or "none"], row["n"])
        yield counter

    def _decision_time(self) -> Metric:
        took = ExpressionWrapper(F("decided_at") - F("gating_started_at"), output_field=DurationField())
        decided = Release.objects.filter(decided_at__isnull=False, gating_started_at__isnull=False).order_by()
        aggregates = {
            f"le_{i}": Count(
                "pk", filter=Q(decided_at__lte=F("gating_started_at") + timedelta(seconds=bound))
            )
            for i, bound in enumerate(DECISION_BUCKETS)
        }
        row = decided.aggregate(count=Count("pk"), total=Sum(took), **aggregates)
        count = float(row["count"] or 0)
        pairs = [(_le(bound), float(row[f"le_{i}"] or 0)) for i, bound in enumerate(DECISION_BUCKETS)]
        total = row["total"]
        return HistogramMetricFamily(
            "gatekeeper_decision_seconds",
            "Seconds from a release's gate start to its decision, over every decided release",
            buckets=[*pairs, ("+Inf", count)],
            sum_value=total.total_seconds() if isinstance(total, timedelta) else 0.0,
        )

    def _poll_lag(self) -> Metric:
        latest = GateCheck.objects.aggregate(top=Max("pk"))["top"] or 0
        recent = GateCheck.objects.filter(
            pk__gt=latest - LAG_MAX_CHECKS,
            checked_at__gte=timezone.now() - LAG_WINDOW,
            lag_ms__isnull=False,
        ).order_by()
        bounds = [int(bound * 1000) for bound in LAG_BUCKETS]
        aggregates = {f"le_{i}": Count("pk", filter=Q(lag_ms__lte=bound)) for i, bound in enumerate(bounds)}
        row = recent.aggregate(count=Count("pk"), total=Sum("lag_ms"), **aggregates)
        count = float(row["count"] or 0)
        pairs = [(_le(bound), float(row[f"le_{i}"] or 0)) for i, bound in enumerate(LAG_BUCKETS)]
        # A gauge histogram: it describes a window that moves, so it goes down as well as up.
        # Read it with histogram_quantile() directly, not over rate().
        return GaugeHistogramMetricFamily(
            "gatekeeper_poll_lag_seconds",
            f"Seconds a gate poll ran after it was due, over checks of the last "
            f"{int(LAG_WINDOW.total_seconds())} s (at most the latest {LAG_MAX_CHECKS})",
            buckets=[*pairs, ("+Inf", count)],
            gsum_value=float(row["total"] or 0) / 1000,
        )

    def _actions(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "gatekeeper_action_attempts",
            "Attempts made at side effects (outbox actions), by kind",
            labels=["kind"],
        )
        failures = CounterMetricFamily(
            "gatekeeper_action_failures", "Actions that failed for good, by kind", labels=["kind"]
        )
        rows = (
            Action.objects.order_by()
            .values("kind")
            .annotate(attempts=Sum("attempts"), failed=Count("pk", filter=Q(status=Action.Status.FAILED)))
        )
        for row in rows:
            attempts.add_metric([row["kind"]], row["attempts"] or 0)
            failures.add_metric([row["kind"]], row["failed"])
        yield attempts
        yield failures

    def _deliveries(self) -> Metric:
        counter = CounterMetricFamily(
            "gatekeeper_webhook_deliveries",
            "Webhook deliveries recorded, by source and outcome (falls when prune_deliveries runs)",
            labels=["source", "outcome"],
        )
        rows = WebhookDelivery.objects.order_by().values("source", "outcome").annotate(n=Count("pk"))
        for row in rows:
            counter.add_metric([row["source"], row["outcome"]], row["n"])
        return counter

    def _dispatch(self) -> Iterator[Metric]:
        state = stall.dispatch_state()
        age = GaugeMetricFamily(
            "gatekeeper_dispatch_age_seconds",
            "Seconds since the poll dispatcher last ran (since its first run was expected, if never)",
        )
        age.add_metric([], state.age)
        stalled = GaugeMetricFamily(
            "gatekeeper_dispatch_stalled", "1 when the dispatcher has not run for DISPATCH_STALL_SECONDS"
        )
        stalled.add_metric([], 1 if state.stalled else 0)
        yield age
        yield stalled

    def _provider_calls(self) -> Iterator[Metric]:
        readable = GaugeMetricFamily(
            "gatekeeper_provider_calls_readable",
            "1 when the provider call counters could be read from Redis (0: Redis did not answer)",
        )
        try:
            counts = call_counts.read()
        except (redis.RedisError, OSError):
            readable.add_metric([], 0)
            yield readable
            return
        readable.add_metric([], 1)
        yield readable
        counter = CounterMetricFamily(
            "gatekeeper_provider_calls",
            "Calls to providers (sentry, vercel, slack, ...) by result; kept in Redis, reset if it is lost",
            labels=["vendor", "result"],
        )
        for (vendor, result), n in sorted(counts.items()):
            counter.add_metric([vendor, result], n)
        yield counter


def registry() -> CollectorRegistry:
    """A registry of its own: the process' default one would add this process' own gauges (GC,
    memory), which differ between the processes answering the same URL."""
    own = CollectorRegistry(auto_describe=False)
    own.register(GatekeeperCollector())
    return own
