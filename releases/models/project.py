"""A project: one Vercel project watched by one Sentry project, with its gate policy."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from releases.domain.gate_policy import GATE_METHODS, Method, OnNoTraffic, OnTimeout, Policy, validate_policy
from releases.domain.policy import GATE
from releases.domain.release_names import template_problems

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
    # Who operates it: members of these groups see its releases in the API and the admin, and
    # override them with the releases.override_release permission. Superusers see every project.
    operators = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="operated_projects",
        help_text="groups that operate this project",
    )
    vercel_project_id = models.CharField(max_length=100, unique=True)
    vercel_team_id = models.CharField(max_length=100, blank=True)
    production_domains = models.JSONField(default=list, blank=True)
    start_on = models.CharField(max_length=40, choices=StartOn.choices, default=StartOn.SUCCEEDED)

    sentry_org = models.CharField(max_length=100)
    sentry_project = models.CharField(
        max_length=100, help_text="the project's slug, as Sentry shows it (a numeric id is accepted too)"
    )
    # What Sentry said sentry_project is: data queries send the id, metric alerts name the slug.
    # Resolved by sync_config, the admin and, when still unknown, the first poll.
    sentry_project_id = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    sentry_project_slug = models.CharField(max_length=100, blank=True, editable=False)
    sentry_resolved_at = models.DateTimeField(null=True, blank=True, editable=False)
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
    # An http check's host may come from a webhook (the deployment's URL): private, loopback
    # and link-local addresses are refused unless a project whose checks need them says so.
    allow_private_addresses = models.BooleanField(
        default=False, help_text="http checks may reach private, loopback and link-local addresses"
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

    @property
    def sentry_query_project(self) -> str:
        """The numeric id when known (what Sentry's data endpoints and release links take), else
        the project as configured."""
        return str(self.sentry_project_id) if self.sentry_project_id is not None else self.sentry_project

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
