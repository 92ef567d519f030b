"""Gatekeeper's source of truth: projects, releases, every check, decision and side effect."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from releases.domain.lifecycle import FINAL, ReleaseState
from releases.domain.policy import GATE
from releases.domain.release_names import template_problems
from releases.domain.verdict import GATE_METHODS, Method, OnNoTraffic, OnTimeout, Policy, validate_policy

DEFAULT_RELEASE_TEMPLATE = "{meta[githubCommitSha]}"
# A policy problem starts with the name of what is wrong; this is the admin field that holds it.
_POLICY_FIELDS = {
    "min_sessions": "min_sessions",
    "crash_free_threshold": "crash_free_threshold",
    "max_wait": "max_wait",
    "max_consecutive_errors": "max_consecutive_errors",
    "on_timeout": "on_timeout",
    "early_fail_confidence": "early_fail_confidence",
    "early_fail_min_sessions": "early_fail_min_sessions",
    "method": "gate_method",
    "tolerance": "tolerance",
    "false_promote": "false_promote",
    "false_rollback": "false_rollback",
    "max_sessions": "max_sessions",
    "watch_false_alarm": "watch_false_alarm",
    "no_traffic_after": "no_traffic_after",
    "on_no_traffic": "on_no_traffic",
}


NEEDS_CHECKS = (
    "promote_after_checks needs gate checks: the SLO checks that must pass, in place of session "
    "evidence, before a build without traffic is promoted"
)


def _positive_duration(value: timedelta) -> None:
    if value.total_seconds() <= 0:
        raise ValidationError("must be longer than zero")


class Project(models.Model):
    """One Vercel project watched by one Sentry project, with its gate policy."""

    class StartOn(models.TextChoices):
        SUCCEEDED = "deployment.succeeded"
        READY = "deployment.ready"

    name = models.SlugField(max_length=100, unique=True)
    vercel_project_id = models.CharField(max_length=100, unique=True)
    vercel_team_id = models.CharField(max_length=100, blank=True)
    production_domains = models.JSONField(default=list, blank=True)
    start_on = models.CharField(max_length=40, choices=StartOn.choices, default=StartOn.SUCCEEDED)

    sentry_org = models.CharField(max_length=100)
    sentry_project = models.CharField(max_length=100, help_text="slug or numeric id")
    sentry_environment = models.CharField(max_length=100, blank=True, default="production")
    release_template = models.CharField(max_length=200, default=DEFAULT_RELEASE_TEMPLATE)

    slack_channel = models.CharField(max_length=100, blank=True)
    pagerduty_routing_key_env = models.CharField(
        max_length=100, blank=True, help_text="name of the environment variable holding the key"
    )

    gate_method = models.CharField(
        max_length=20,
        choices=[(m.value, m.value) for m in GATE_METHODS],
        default=GATE.method,
        help_text="sequential: promote or roll back as soon as the evidence decides; fixed: the seed rule",
    )
    crash_free_threshold = models.FloatField(
        default=GATE.crash_free_threshold, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    tolerance = models.FloatField(
        default=GATE.tolerance,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="sequential: good = threshold + tolerance, bad = threshold - tolerance",
    )
    false_promote = models.FloatField(
        default=GATE.false_promote, help_text="sequential: at most this share of bad releases promoted"
    )
    false_rollback = models.FloatField(
        default=GATE.false_rollback, help_text="sequential: at most this share of good releases rolled back"
    )
    min_sessions = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="fixed: the sample to wait for (blank: 500); sequential: nothing promotes below it "
        "(blank: the fewest sessions in which zero crashes rule out the bad rate)",
    )
    max_sessions = models.PositiveIntegerField(
        default=GATE.max_sessions, help_text="sequential: here the likelihood ratio's sign decides"
    )
    poll_interval = models.DurationField(default=GATE.poll_interval, validators=[_positive_duration])
    max_wait = models.DurationField(default=GATE.max_wait, validators=[_positive_duration])
    on_timeout = models.CharField(
        max_length=20, choices=[(o.value, o.value) for o in OnTimeout], default=GATE.on_timeout
    )
    no_traffic_after = models.DurationField(
        null=True,
        blank=True,
        default=GATE.no_traffic_after,
        validators=[_positive_duration],
        help_text="too little traffic to decide by max_wait is said this far into a gate (blank: never)",
    )
    on_no_traffic = models.CharField(
        max_length=30, choices=[(o.value, o.value) for o in OnNoTraffic], default=GATE.on_no_traffic
    )
    # The SLO checks that on_no_traffic: promote_after_checks runs against the staged deployment.
    gate_checks = models.JSONField(default=list, blank=True)
    max_consecutive_errors = models.PositiveIntegerField(
        default=GATE.max_consecutive_errors, validators=[MinValueValidator(1)]
    )
    fail_fast = models.BooleanField(default=GATE.fail_fast)
    early_fail_confidence = models.FloatField(null=True, blank=True)
    early_fail_min_sessions = models.PositiveIntegerField(default=GATE.early_fail_min_sessions)
    watch_after_promotion = models.DurationField(default=GATE.watch_after_promotion)
    # The bar a live release must keep during its bake watch; blank = crash_free_threshold.
    watch_threshold = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    watch_false_alarm = models.FloatField(
        default=GATE.watch_false_alarm,
        help_text="sequential: at most this share of good releases rolled back by the bake watch",
    )
    on_warning = models.CharField(
        max_length=20,
        choices=[
            ("notify", "Slack only"),
            ("page", "Slack and PagerDuty"),
            ("rollback", "as critical"),
            ("ignore", "ignore"),
        ],
        default="notify",
        help_text="what a Sentry warning alert does",
    )
    dry_run = models.BooleanField(default=GATE.dry_run)
    canary = models.JSONField(null=True, blank=True)

    # What serves production now, as far as we know (our promotions, rollbacks, and
    # deployment.promoted webhooks for promotions made outside Gatekeeper).
    live_deployment_id = models.CharField(max_length=100, blank=True)
    live_since = models.DateTimeField(null=True, blank=True)

    synced_from = models.CharField(max_length=500, blank=True, help_text="config file of the last sync")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The admin edits the same fields as gatekeeper.yaml: refuse what the file would refuse."""
        problems: dict[str, list[str]] = {}
        if self.poll_interval and self.max_wait and self.poll_interval >= self.max_wait:
            problems.setdefault("max_wait", []).append("must be longer than poll_interval")
        try:
            policy = self.policy()
        except (TypeError, ValueError):
            policy = None  # a field itself is invalid; its own error says so
        for problem in validate_policy(policy) if policy is not None else []:
            field = _POLICY_FIELDS.get(problem.split(" ", 1)[0], "__all__")
            problems.setdefault(field, []).append(problem)
        if self.on_no_traffic == OnNoTraffic.PROMOTE_AFTER_CHECKS and not self.gate_checks:
            problems.setdefault("gate_checks", []).append(NEEDS_CHECKS)
        for problem in template_problems(self.release_template or ""):
            problems.setdefault("release_template", []).append(problem)
        if problems:
            raise ValidationError(problems)

    def policy(self, *, extra_wait: timedelta = timedelta(0)) -> Policy:
        return Policy(
            method=Method(self.gate_method),
            min_sessions=self.min_sessions,
            crash_free_threshold=self.crash_free_threshold,
            tolerance=self.tolerance,
            false_promote=self.false_promote,
            false_rollback=self.false_rollback,
            max_sessions=self.max_sessions,
            max_wait=(self.max_wait + extra_wait).total_seconds(),
            no_traffic_after=self.no_traffic_after.total_seconds() if self.no_traffic_after else None,
            on_no_traffic=OnNoTraffic(self.on_no_traffic),
            max_consecutive_errors=self.max_consecutive_errors,
            on_timeout=OnTimeout(self.on_timeout),
            fail_fast=self.fail_fast,
            early_fail_confidence=self.early_fail_confidence,
            early_fail_min_sessions=self.early_fail_min_sessions,
        )


class Release(models.Model):
    """One Vercel deployment of a project, judged as a Sentry release."""

    # No index of its own: release_known_good starts with the project.
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="releases", db_index=False)
    # Unique through a constraint, not unique=True, which also builds a varchar_pattern_ops
    # index for LIKE 'prefix%' that nothing here queries.
    deployment_id = models.CharField(max_length=100)
    deployment_url = models.CharField(max_length=300, blank=True)
    inspector_url = models.URLField(max_length=500, blank=True)
    target = models.CharField(max_length=30, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    version = models.CharField(max_length=200, blank=True, help_text="the Sentry release name")
    deployment_created_at = models.DateTimeField(null=True, blank=True)

    state = models.CharField(max_length=20, choices=ReleaseState.choices(), default=ReleaseState.RECEIVED)
    # When Gatekeeper began judging the release (its gate or its ramp): the release's timeline.
    # Each analysis keeps its own clock (Analysis.started_at).
    gating_started_at = models.DateTimeField(null=True, blank=True)

    # The latest figures Sentry gave for the release, whichever analysis asked.
    sessions = models.PositiveIntegerField(null=True, blank=True)
    crashed = models.PositiveIntegerField(null=True, blank=True)
    crash_free_rate = models.FloatField(null=True, blank=True)

    verdict = models.CharField(max_length=20, blank=True)
    verdict_rule = models.CharField(max_length=40, blank=True)
    verdict_reasons = models.JSONField(default=list, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    promoted_at = models.DateTimeField(null=True, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    # The deployment to fall back to; for a canary also the baseline its checks compare with.
    rollback_target = models.CharField(max_length=100, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-promoted_at"], name="release_known_good")]
        constraints = [models.UniqueConstraint(fields=["deployment_id"], name="unique_release_deployment")]

    def __str__(self) -> str:
        return f"{self.project.name} {self.version or self.deployment_id}"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL

    def elapsed(self, now: Any = None) -> float:
        """Seconds since Gatekeeper began judging the release."""
        if self.gating_started_at is None:
            return 0.0
        return ((now or timezone.now()) - self.gating_started_at).total_seconds()

    def open_analysis(self) -> Analysis | None:
        """The analysis judging the release now, if any (at most one: a constraint says so)."""
        return self.analyses.filter(phase__in=Analysis.OPEN).first()

    def latest_analysis(self, kind: str) -> Analysis | None:
        return self.analyses.filter(kind=kind).order_by("-pk").first()


class Analysis(models.Model):
    """One analysis of a release: its promotion gate, its bake watch once live, or one canary stage.

    Each has its own clock, schedule and counters, so no workflow reads another's, and its phase
    is stored. A release has at most one open analysis at a time; leaving the state an analysis
    belongs to closes it (``releases/core/transitions.py``). Rows are written under their
    release's row lock, after it: the one lock order (project, release, analysis) every writer keeps.
    """

    class Kind(models.TextChoices):
        GATE = "gate", "gate"
        BAKE = "bake", "bake watch"
        CANARY = "canary", "canary stage"

    class Phase(models.TextChoices):
        WAITING = "waiting", "waiting for its traffic"  # a canary stage whose move is in flight
        RUNNING = "running", "running"  # checked whenever next_check_at comes
        PAUSED = "paused", "paused"  # by a human: no checks until resumed
        PASSED = "passed", "passed"
        FAILED = "failed", "failed"
        INCONCLUSIVE = "inconclusive", "inconclusive"
        STOPPED = "stopped", "stopped"  # ended from outside: an override, an alert, a newer release

    OPEN = (Phase.WAITING, Phase.RUNNING, Phase.PAUSED)

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="analyses")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    stage = models.SmallIntegerField(null=True, blank=True, help_text="canary: the stage's index")
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.RUNNING)
    # What it is judged by, copied at its start: a config sync cannot change the bar under it.
    policy = models.JSONField(default=dict, blank=True)
    # Bumped by every claim of a check: a message for an older generation is a stale duplicate.
    generation = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True)
    # When its evidence began: the gate's start, the watch's start, the stage's traffic in place.
    started_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True, help_text="bake: when the watch ends")
    extra_wait = models.DurationField(default=timedelta(0), help_text="gate: added by a human")
    consecutive_errors = models.PositiveIntegerField(default=0)
    passes = models.PositiveSmallIntegerField(default=0, help_text="canary: passing checks in a row")
    failures = models.PositiveSmallIntegerField(default=0, help_text="canary: failed checks in a row")
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "analyses"
        indexes = [models.Index(fields=["phase", "next_check_at"], name="analysis_due")]
        constraints = [
            models.UniqueConstraint(
                fields=["release"],
                condition=models.Q(phase__in=["waiting", "running", "paused"]),
                name="one_open_analysis_per_release",
            )
        ]

    def __str__(self) -> str:
        what = f"canary stage {self.stage}" if self.kind == self.Kind.CANARY else self.get_kind_display()
        return f"{what}: {self.phase}"

    @property
    def is_open(self) -> bool:
        return self.phase in self.OPEN

    def verdict_policy(self) -> Policy:
        """The gate's or the watch's policy as snapshotted, with any wait a human added."""
        policy = Policy.from_json(self.policy)
        return replace(policy, max_wait=policy.max_wait + self.extra_wait.total_seconds())

    def elapsed(self, now: Any = None) -> float:
        if self.started_at is None:
            return 0.0
        return ((now or timezone.now()) - self.started_at).total_seconds()


class GateCheck(models.Model):
    """One poll of Sentry for one release: every number it saw, every error, and the verdict."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="checks")
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="checks")
    generation = models.PositiveIntegerField()
    checked_at = models.DateTimeField(default=timezone.now)
    sessions = models.PositiveIntegerField(null=True, blank=True)
    crashed = models.PositiveIntegerField(null=True, blank=True)
    crash_free_rate = models.FloatField(null=True, blank=True)
    upper_bound = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=20)
    rule = models.CharField(max_length=40)
    reasons = models.JSONField(default=list)
    figures = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # How late the poll ran: from when it was due to when Sentry's answer was recorded.
    lag_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-checked_at", "-id"]


class AppendOnly(models.Model):
    """History rows are written once and never changed."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(f"{type(self).__name__} rows are append-only")


class RampCheck(models.Model):
    """One SLO check of a ramping deployment: every signal's value, baseline, threshold and reason."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="ramp_checks")
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="ramp_checks")
    stage = models.SmallIntegerField()
    percent = models.FloatField()
    confirmation = models.PositiveSmallIntegerField(help_text="which check in a row at this stage")
    ok = models.BooleanField()
    checks = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    checked_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["checked_at", "id"]

    def __str__(self) -> str:
        outcome = "ok" if self.ok else "failed"
        return f"stage {self.stage} ({self.percent:g}%) check {self.confirmation}: {outcome}"


class ReleaseEvent(AppendOnly):
    """The history of a release: every transition, override, webhook and note, with who and why."""

    class Kind(models.TextChoices):
        TRANSITION = "transition"
        NOTE = "note"
        OVERRIDE = "override"
        WEBHOOK = "webhook"
        ACTION = "action"
        TRAFFIC = "traffic"  # the canary's share of production traffic changed

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=150, help_text="gatekeeper, vercel, sentry or user:<name>")
    reason = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class Action(models.Model):
    """The outbox: one side effect (promote, rollback, a message), done at most once per intent."""

    class Kind(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback"
        SLACK = "slack"
        PAGERDUTY = "pagerduty"
        TRAFFIC = "traffic"  # a canary ramp move: start, next stage, complete, abort
        CHECKS = "checks"  # a held build without traffic: its gate checks, then promote if they pass

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"  # claimed by a worker; lease_until says until when
        CONFIRMING = "confirming"  # the vendor accepted it; waiting to see it done
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="action_due")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} ({self.status})"


class Incident(models.Model):
    """A Sentry metric-alert incident, what it was about, and what Gatekeeper did with it."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        STALE = "stale"  # about a release that is no longer (or not yet) the live one
        UNMATCHED = "unmatched"  # no live release known for the project

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="incidents")
    release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    sentry_id = models.CharField(max_length=100)
    identifier = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=500, blank=True)
    severity = models.CharField(max_length=20, blank=True, help_text="critical or warning")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    reason = models.TextField(blank=True)
    description = models.TextField(blank=True)
    web_url = models.URLField(max_length=500, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    dedup_key = models.CharField(max_length=255, blank=True, help_text="the PagerDuty dedup_key used")
    paged = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sentry_id"], name="unique_incident"),
        ]

    def __str__(self) -> str:
        return f"{self.project.name} incident {self.identifier or self.sentry_id} ({self.status})"


class WebhookDelivery(models.Model):
    """Every accepted inbound delivery, unique per source and delivery id (repeats are no-ops)."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted"
        IGNORED = "ignored"

    source = models.CharField(max_length=20)
    delivery_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    note = models.TextField(blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL)
    release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "delivery_id"], name="unique_delivery"),
        ]
