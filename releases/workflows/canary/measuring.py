"""Run a project's SLO checks for one deployment: measure each signal, judge it, fail safe.

Used by the canary ramp before every step and by ``GET /api/slo/``. Each check runs in its own
thread with its own timeout, so one slow provider costs its timeout, not the sum of all of them;
a check that errs, times out or finds no data fails, and the whole result is ok only when every
check passed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from releases.core.errors import ProviderError
from releases.domain.evidence import Outcome
from releases.domain.outbound import datadog_tag, deployment_host
from releases.domain.slo_rules import (
    KINDS,
    CheckSpec,
    judge,
    judge_crash_free,
    judge_relative_crash,
    parse_check,
    substitute,
)
from releases.integrations import clients
from releases.integrations.http_check.client import http_check
from releases.integrations.sentry.client import SessionTotals
from releases.models import Project, Release
from releases.workflows import sentry_project

logger = logging.getLogger(__name__)

# Past a check's own timeout, how long the runner waits for the thread that measures it; the
# clients enforce the timeout themselves, this only bounds a measurement stuck elsewhere.
GRACE = 2.0
MAX_THREADS = 8


@dataclass(frozen=True)
class Target:
    """What a check is scoped to: one deployment and its Sentry release."""

    deployment_id: str
    deployment_url: str  # "" when the URL Vercel gave is not a host a check may reach
    release: str
    given_url: str = ""

    @classmethod
    def of(cls, release: Release) -> Target:
        host = deployment_host(release.deployment_url, release.project.production_domains or [])
        return cls(release.deployment_id, host, release.version, release.deployment_url)

    def fill(self, template: str, *, datadog: bool = False) -> str:
        """The template with the placeholders filled; ``datadog``: values as Datadog tags."""
        tag = datadog_tag if datadog else str
        return substitute(
            template,
            deployment_id=tag(self.deployment_id),
            deployment_url=self.deployment_url,
            release=tag(self.release),
        )


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    ok: bool
    value: float | None
    baseline: float | None
    threshold: str
    reason: str
    window_seconds: float
    elapsed_ms: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    # Not ok, and not a failure either: a sequential check whose evidence has not decided yet.
    pending: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SloResult:
    ok: bool
    deployment_id: str
    previous_deployment_id: str | None
    checked_at: datetime
    checks: tuple[CheckResult, ...]

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.reason}" for c in self.checks if not c.ok]

    @property
    def pending(self) -> bool:
        """Not ok only because a sequential check is still undecided: hold, neither pass nor fail."""
        failed = [c for c in self.checks if not c.ok]
        return bool(failed) and all(c.pending for c in failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "deployment": self.deployment_id,
            "previous_deployment": self.previous_deployment_id,
            "checked_at": self.checked_at.isoformat(),
            "checks": [c.to_json() for c in self.checks],
        }


class NoData(Exception):
    """The signal has nothing to say about this deployment in the window."""


def specs_for(project: Project) -> list[CheckSpec]:
    """The project's checks; an entry the config parser would refuse is skipped and logged."""
    return specs_from(project.canary, project.name)


def specs_from(policy: dict[str, Any] | None, label: str) -> list[CheckSpec]:
    raw = (policy or {}).get("checks") or []
    specs = []
    for index, entry in enumerate(raw):
        # Stored as sync_config normalised it (CheckSpec.to_json); a hand-written entry in the
        # config's own form (durations as "5m") is read the way sync_config reads it.
        spec, problems = _stored(entry)
        if spec is None:
            spec, problems = parse_check(entry, f"canary.checks[{index}]")
        if spec is None:
            logger.warning("bad_check", extra={"project": label, "problems": problems})
            continue
        specs.append(spec)
    return specs


def _stored(entry: Any) -> tuple[CheckSpec | None, list[str]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("window", 0.0), (int, float)):
        return None, []
    try:
        spec = CheckSpec.from_json(entry)
    except (TypeError, ValueError) as exc:
        return None, [str(exc)]
    return (spec, []) if spec.kind in KINDS else (None, [f"unknown kind {spec.kind!r}"])


def run_checks(
    project: Project,
    release: Release,
    previous: Release | None,
    *,
    specs: Sequence[CheckSpec] | None = None,
    now: datetime | None = None,
    since: datetime | None = None,
) -> SloResult:
    """Every check once for ``release`` (and, for relative ones, ``previous``); ok if all pass.

    ``since``: when the canary's stage began; a sequential crash-free check judges the sessions
    since then (without it, the check's window).

    No checks at all is not ok: a ramp with nothing to judge it must not advance."""
    specs = list(specs_for(project) if specs is None else specs)
    now = now or timezone.now()
    target = Target.of(release)
    baseline_target = Target.of(previous) if previous is not None else None
    if not specs:
        return SloResult(False, release.deployment_id, _id(previous), now, ())
    if any(spec.kind.startswith("sentry") for spec in specs):
        # Here, not in the checks' threads: a first resolution writes the project's row, and a
        # thread's database connection would outlive it. A failure is each check's to report.
        with contextlib.suppress(ProviderError):
            sentry_project.query_id(project)
    pool = ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(specs)), thread_name_prefix="slo")
    try:
        started = time.monotonic()
        futures = [pool.submit(_one, spec, project, target, baseline_target, now, since) for spec in specs]
        results = []
        for spec, future in zip(specs, futures, strict=True):
            # Each check's budget counts from the common start: waiting on one does not extend another.
            remaining = started + _budget(spec) - time.monotonic()
            try:
                results.append(future.result(timeout=max(0.0, remaining)))
            except FutureTimeout:
                results.append(_failed(spec, f"no answer within {spec.timeout:g}s", _budget(spec) * 1000))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    checks = tuple(results)
    return SloResult(all(c.ok for c in checks), release.deployment_id, _id(previous), now, checks)


def _budget(spec: CheckSpec) -> float:
    # A relative check measures twice (the new deployment and the previous one).
    return spec.timeout * (2 if spec.relative_to_previous is not None else 1) + GRACE


def _one(  # noqa: PLR0917 - one check's inputs, all needed
    spec: CheckSpec,
    project: Project,
    target: Target,
    baseline_target: Target | None,
    now: datetime,
    since: datetime | None = None,
) -> CheckResult:
    started = time.monotonic()
    detail: dict[str, Any] = {}
    if spec.is_sequential():
        return _sequential(spec, project, target, baseline_target, now, since, started)
    try:
        value = _measure(spec, project, target, now, detail)
    except NoData as exc:
        value = None
        detail["no_data"] = str(exc)
    except (ProviderError, ValueError) as exc:
        return _failed(spec, f"could not measure: {exc}", (time.monotonic() - started) * 1000, error=str(exc))
    except Exception as exc:  # a bug must fail the check, never pass it or break the others
        logger.exception("check_crashed", extra={"kind": spec.kind})
        return _failed(spec, f"could not measure: {type(exc).__name__}", (time.monotonic() - started) * 1000)
    baseline = None
    if spec.relative_to_previous is not None and baseline_target is not None and value is not None:
        try:
            baseline = _measure(spec, project, baseline_target, now, {})
        except NoData as exc:
            detail["baseline_no_data"] = str(exc)
        except (ProviderError, ValueError) as exc:
            return _failed(
                spec,
                f"could not measure the previous deployment: {exc}",
                (time.monotonic() - started) * 1000,
                value=value,
                error=str(exc),
            )
    verdict = judge(spec, value, baseline)
    reason = verdict.reason
    if value is None and detail.get("no_data"):
        reason = f"no data: {detail['no_data']}; never passes"
    elif not verdict.ok and spec.relative_to_previous is not None and baseline_target is None:
        reason = "no previous deployment to compare with; never passes"
    return CheckResult(
        name=spec.name,
        kind=spec.kind,
        ok=verdict.ok,
        value=value,
        baseline=baseline,
        threshold=verdict.threshold,
        reason=reason,
        window_seconds=spec.window,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        detail=detail,
    )


def _sequential(  # noqa: PLR0917 - one check's inputs, all needed
    spec: CheckSpec,
    project: Project,
    target: Target,
    baseline_target: Target | None,
    now: datetime,
    since: datetime | None,
    started: float,
) -> CheckResult:
    """The gate's sequential test on the canary's sessions since its stage began, and (with
    relative_to_previous) a two-sample test against the previous deployment's over the same time."""
    start = since if since is not None else now - timedelta(seconds=spec.window)
    detail: dict[str, Any] = {"since": start.isoformat()}
    if spec.relative_to_previous is not None and baseline_target is None:
        return _failed(
            spec, "no previous deployment to compare with; never passes", (time.monotonic() - started) * 1000
        )
    try:
        canary = _sessions(spec, project, target, start, now)
        previous = (
            _sessions(spec, project, baseline_target, start, now)
            if spec.relative_to_previous is not None and baseline_target is not None
            else None
        )
    except NoData as exc:
        return _failed(spec, f"no data: {exc}; never passes", (time.monotonic() - started) * 1000)
    except (ProviderError, ValueError) as exc:
        return _failed(spec, f"could not measure: {exc}", (time.monotonic() - started) * 1000, error=str(exc))
    detail.update(sessions=canary.sessions, crashed=canary.crashed)
    judged: list[tuple[Outcome, str]] = []
    if spec.min is not None:
        judged.append(judge_crash_free(spec, canary.sessions, canary.crashed))
    if previous is not None:
        detail.update(previous_sessions=previous.sessions, previous_crashed=previous.crashed)
        judged.append(
            judge_relative_crash(
                spec, (canary.sessions, canary.crashed), (previous.sessions, previous.crashed)
            )
        )
    outcomes = {outcome for outcome, _ in judged}
    # Every test must pass; any that fails fails the check; otherwise it has not decided yet.
    if Outcome.FAIL in outcomes:
        ok, undecided = False, False
    else:
        ok, undecided = outcomes == {Outcome.PASS}, outcomes != {Outcome.PASS}
    reason = "; ".join(text for _, text in judged)
    bounds = []
    if spec.min is not None:
        bounds.append(
            f"sequential test around {spec.min:g} (tolerance {spec.crash_free_policy().tolerance:g})"
        )
    if spec.relative_to_previous is not None:
        bounds.append(
            f"two-sample test: at most {spec.relative_to_previous:g}x the previous deployment's crash rate"
        )
    return CheckResult(
        name=spec.name,
        kind=spec.kind,
        ok=ok,
        value=canary.crash_free_rate,
        baseline=previous.crash_free_rate if previous is not None else None,
        threshold=" and ".join(bounds),
        reason=f"undecided: {reason}" if undecided else reason,
        window_seconds=(now - start).total_seconds(),
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        detail=detail,
        pending=undecided,
    )


def _sessions(
    spec: CheckSpec, project: Project, target: Target, start: datetime, end: datetime
) -> SessionTotals:
    if not target.release:
        raise NoData("the deployment has no Sentry release name")
    return clients.sentry(timeout=spec.timeout).release_sessions(
        project.sentry_org,
        sentry_project.query_id(project),
        project.sentry_environment or None,
        [target.release],
        start,
        end,
        interval="1m",
    )[target.release]


def _failed(
    spec: CheckSpec, reason: str, elapsed_ms: float, *, value: float | None = None, error: str = ""
) -> CheckResult:
    return CheckResult(
        name=spec.name,
        kind=spec.kind,
        ok=False,
        value=value,
        baseline=None,
        threshold=judge(spec, None).threshold,
        reason=reason,
        window_seconds=spec.window,
        elapsed_ms=round(elapsed_ms, 1),
        error=error or reason,
    )


def _measure(
    spec: CheckSpec, project: Project, target: Target, now: datetime, detail: dict[str, Any]
) -> float:
    start = now - timedelta(seconds=spec.window)
    if spec.kind in ("sentry_error_rate", "sentry_crash_free"):
        return _sentry(spec, project, target, start, now, detail)
    if spec.kind == "datadog_query":
        query = target.fill(spec.query, datadog=True)
        detail["query"] = query
        points = clients.datadog(timeout=spec.timeout).query_points(query, start, now)
        if not points:
            raise NoData("the query returned no points in the window")
        detail["points"] = len(points)
        return sum(points) / len(points)
    if spec.kind == "posthog_exceptions":
        value = target.fill(spec.value)
        detail.update(property=spec.property, value=value)
        posthog_project = spec.project_id or settings.POSTHOG_PROJECT_ID
        if not posthog_project:
            raise ValueError("no PostHog project: set project_id on the check or POSTHOG_PROJECT_ID")
        count = clients.posthog(timeout=spec.timeout).exception_count(
            posthog_project, spec.property, value, timedelta(seconds=spec.window)
        )
        return float(count)
    if spec.kind == "http":
        if "$DEPLOYMENT_URL" in spec.url and not target.deployment_url:
            raise NoData(
                f"the deployment's URL {target.given_url[:100]!r} is not a *.vercel.app host or a "
                "production domain of the project: not checked"
            )
        headers = {"X-Gatekeeper-Deployment": target.deployment_id, "X-Gatekeeper-Release": target.release}
        result = http_check(
            target.fill(spec.url),
            timeout=spec.timeout,
            headers=headers,
            allow_private=project.allow_private_addresses,
        )
        detail.update(status=result.status, error=result.error)
        if result.status is None:
            raise NoData(result.error or "no answer")
        return float(result.status)
    raise ValueError(f"unknown check kind {spec.kind!r}")


def _sentry(  # noqa: PLR0917 - one measurement's inputs, all needed
    spec: CheckSpec, project: Project, target: Target, start: datetime, end: datetime, detail: dict[str, Any]
) -> float:
    totals = _sessions(spec, project, target, start, end)
    detail["sessions"] = totals.sessions
    if totals.sessions < spec.min_sessions:
        raise NoData(f"{totals.sessions} sessions in the window, fewer than {spec.min_sessions}")
    if spec.kind == "sentry_crash_free":
        detail["crashed"] = totals.crashed
        rate = totals.crash_free_rate
        assert rate is not None  # sessions >= min_sessions >= 1
        return rate
    errors = clients.sentry(timeout=spec.timeout).error_count(
        project.sentry_org,
        sentry_project.query_id(project),
        project.sentry_environment or None,
        target.release,
        start,
        end,
    )
    detail["errors"] = errors
    return errors / totals.sessions


def _id(release: Release | None) -> str | None:
    return release.deployment_id if release is not None else None
