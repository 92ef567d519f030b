"""What went out and what came in: the outbox of side effects, alert incidents, webhook deliveries."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from releases.models.project import Project
from releases.models.release import Release


class Action(models.Model):
    """The outbox: one side effect (promote, rollback, a message), done at most once per intent."""

    class Kind(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback"
        SLACK = "slack"
        PAGERDUTY = "pagerduty"
        TRAFFIC = "traffic"  # a canary ramp move: start, next stage, complete, abort
        CHECKS = "checks"  # a held build without traffic: its gate checks, then promote if they pass
        LEARN = "learn"  # what serves production, asked of Vercel when our records are silent

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
