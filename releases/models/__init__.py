"""Gatekeeper's source of truth: projects, releases, every check, decision and side effect.

One Django app's models, in five modules: ``project`` (the project and its policy), ``release``
(a release, its analyses, their checks and its history), ``records`` (the outbox, incidents,
webhook deliveries), ``tokens`` (REST API tokens, hashed) and ``scheduling`` (the beat lease, the
dispatcher's heartbeat and its stalls). Import them from here.
"""

from releases.models.project import DEFAULT_RELEASE_TEMPLATE, NEEDS_CHECKS, Project, _positive_duration
from releases.models.records import Action, Incident, WebhookDelivery
from releases.models.release import Analysis, AppendOnly, GateCheck, RampCheck, Release, ReleaseEvent
from releases.models.scheduling import DispatchStall, Heartbeat, SchedulerLease, StallNotice
from releases.models.tokens import ApiToken

# _positive_duration: the migrations name the validator by its first home, releases.models.
__all__ = [
    "DEFAULT_RELEASE_TEMPLATE",
    "NEEDS_CHECKS",
    "Action",
    "Analysis",
    "ApiToken",
    "AppendOnly",
    "DispatchStall",
    "GateCheck",
    "Heartbeat",
    "Incident",
    "Project",
    "RampCheck",
    "Release",
    "ReleaseEvent",
    "SchedulerLease",
    "StallNotice",
    "WebhookDelivery",
    "_positive_duration",
]
