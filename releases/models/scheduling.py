"""The scheduler's own records: which beat sends, when the dispatcher last ran, and its stalls.

``SchedulerLease``: two beats may run; the one holding this lease sends the schedule
(releases/scheduling/beat.py). ``Heartbeat``: the dispatcher notes every run here, so whether it
is running does not depend on Redis. ``DispatchStall`` and ``StallNotice``: an episode of the
dispatcher not running, and each page or Slack post about it, claimed before it is sent
(releases/scheduling/stall.py).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SchedulerLease(models.Model):
    """Whoever holds an unexpired lease sends the schedule; the others wait for it to lapse."""

    name = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=200, blank=True, help_text="host:pid:random of the beat")
    # Both set from the database's clock, so beats on machines whose clocks disagree still agree
    # on when a lease has lapsed.
    expires_at = models.DateTimeField()
    renewed_at = models.DateTimeField()
    acquired_at = models.DateTimeField(help_text="since when the current holder holds it")

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'} until {self.expires_at:%H:%M:%S}"


class Heartbeat(models.Model):
    """When a recurring job (the dispatcher) last ran, and how many times it has."""

    name = models.CharField(max_length=100, unique=True)
    last_at = models.DateTimeField(null=True, blank=True, help_text="empty: never ran")
    runs = models.PositiveBigIntegerField(default=0)
    # Since when its runs are expected: a job that never ran is late by this much.
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name}: {self.runs} runs, last {self.last_at}"


class DispatchStall(models.Model):
    """One episode of the poll dispatcher not running, from the check that saw it to the one
    that saw it run again."""

    job = models.CharField(max_length=100, default="dispatch", help_text="the Heartbeat that went quiet")
    started_at = models.DateTimeField(default=timezone.now, help_text="when a check first saw it stalled")
    last_dispatch_at = models.DateTimeField(null=True, blank=True, help_text="its last run before")
    holder = models.CharField(max_length=200, blank=True, help_text="who held the beat lease then")
    resumed_at = models.DateTimeField(null=True, blank=True, help_text="its first run after")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # At most one open episode, however many workers check at once.
            models.UniqueConstraint(
                fields=["job"], condition=models.Q(resumed_at__isnull=True), name="one_open_stall_per_job"
            )
        ]

    def __str__(self) -> str:
        return f"dispatch stalled from {self.started_at:%Y-%m-%d %H:%M:%S}" + (
            f" to {self.resumed_at:%H:%M:%S}" if self.resumed_at else " (open)"
        )


class StallNotice(models.Model):
    """What one destination is told about an episode: the page or post when it stalls, the
    resolve or "resumed" post when it ends. One row carries both, so the second cannot overtake
    the first."""

    class Via(models.TextChoices):
        PAGERDUTY = "pagerduty"
        SLACK = "slack"

    class State(models.TextChoices):
        PENDING = "pending"  # the stall message is to be sent
        SENDING = "sending"  # claimed by a check; claimed_at says when
        SENT = "sent"  # the stall message went out (or may have: see last_error)
        RESOLVING = "resolving"  # the episode ended; its resolve or "resumed" post is claimed
        RESOLVED = "resolved"
        CANCELLED = "cancelled"  # the episode ended before the stall message went out
        FAILED = "failed"  # refused for good (a missing routing key, an unknown channel)

    stall = models.ForeignKey(DispatchStall, on_delete=models.CASCADE, related_name="notices")
    via = models.CharField(max_length=20, choices=Via.choices)
    # The routing key's environment variable (never the key) or the Slack channel.
    target = models.CharField(max_length=200)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["stall", "via", "target"]
        constraints = [
            models.UniqueConstraint(fields=["stall", "via", "target"], name="one_stall_notice_per_target")
        ]

    def __str__(self) -> str:
        return f"{self.via} {self.target} ({self.state})"
