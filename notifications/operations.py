"""What Gatekeeper says about itself: the page and the Slack posts when its poll dispatcher stalls.

``releases/scheduling/stall.py`` records each message before it is sent and claims it, so it goes
out once per stall; this module words and sends one. Every call raises ``ProviderError`` on
failure, its ``permanent`` and ``maybe_delivered`` saying whether a retry can help and is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings

from notifications import clients
from notifications.messages import duration
from notifications.pagerduty import routing_key_from_env

# One alert for the dispatcher whichever episode it is: a trigger after a resolve opens a new one.
STALL_DEDUP_KEY = "gatekeeper-dispatch-stalled"


@dataclass(frozen=True)
class StallFacts:
    stalled_for: float  # seconds since the dispatcher last ran (or since it was first expected)
    last_dispatch_at: datetime | None  # None: it never ran
    started_at: datetime  # when a check first saw the stall
    lease_holder: str  # the beat holding the lease, "" when none does
    lease_expires_at: datetime | None


def _health_url() -> str:
    return f"{settings.GATEKEEPER_PUBLIC_URL}/healthz"


def _lease(facts: StallFacts) -> str:
    if not facts.lease_holder:
        return "No beat holds the scheduler lease: is any beat running?"
    return f"Beat {facts.lease_holder} holds the scheduler lease: is a worker consuming the schedule queue?"


def stalled_text(facts: StallFacts) -> str:
    last = (
        "has never run"
        if facts.last_dispatch_at is None
        else f"has not run for {duration(facts.stalled_for)}"
    )
    return (
        f":rotating_light: Gatekeeper's poll dispatcher {last}: no gate is polled, decided or ramped "
        f"until it runs again. {_lease(facts)} ({_health_url()})"
    )


def resumed_text(stalled_for: float) -> str:
    return (
        f":white_check_mark: Gatekeeper's poll dispatcher is running again, after {duration(stalled_for)} "
        "stalled. Polls that fell due meanwhile are being sent now."
    )


def page_stalled(routing_key_env: str, facts: StallFacts) -> None:
    last = "never ran" if facts.last_dispatch_at is None else f"not run for {duration(facts.stalled_for)}"
    clients.pagerduty().trigger(
        routing_key_from_env(routing_key_env),
        dedup_key=STALL_DEDUP_KEY,
        summary=f"Gatekeeper's poll dispatcher has {last}: release gates are not being decided",
        source=urlsplit(settings.GATEKEEPER_PUBLIC_URL).netloc or "gatekeeper",
        severity="critical",
        component="scheduler",
        group="gatekeeper",
        event_class="dispatch-stalled",
        custom_details={
            "stalled_for_seconds": round(facts.stalled_for, 1),
            "last_dispatch_at": facts.last_dispatch_at.isoformat() if facts.last_dispatch_at else None,
            "stall_seen_at": facts.started_at.isoformat(),
            "beat_lease_holder": facts.lease_holder or None,
            "beat_lease_expires_at": facts.lease_expires_at.isoformat() if facts.lease_expires_at else None,
            "what_to_check": _lease(facts),
        },
        links=[(_health_url(), "Gatekeeper /healthz")],
        client_url=_health_url(),
    )


def resolve_stalled(routing_key_env: str) -> None:
    clients.pagerduty().resolve(routing_key_from_env(routing_key_env), STALL_DEDUP_KEY)


def post(channel: str, text: str) -> None:
    clients.slack().post_message(channel, text)
