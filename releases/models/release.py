"""A release and what judges it: its analyses, their checks, and its history."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from releases.domain.gate_policy import Policy
from releases.domain.lifecycle import FINAL, ReleaseState
from releases.models.project import Project


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
    # Never judged here: Vercel said it served production when our records were silent (a
    # project's first release after installing Gatekeeper).
    learned = models.BooleanField(default=False, help_text="learned from Vercel, not gated by Gatekeeper")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-promoted_at"], name="release_known_good")]
        constraints = [models.UniqueConstraint(fields=["deployment_id"], name="unique_release_deployment")]
        # Moving production by hand: approve, reject, pause, resume, extend (API and admin).
        permissions = [("override_release", "Can approve, reject, pause, resume or extend a release")]

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
