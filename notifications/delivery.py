"""Delivering recorded notifications: Slack messages and PagerDuty events.

Slack: at most once, never blocking a promote or rollback.

Slack has no idempotency key, so a post whose outcome is unknown (a read timeout, a worker that
died mid-request) is not sent again: a missing message is better than a doubled verdict.
Slack actions are separate outbox rows from promote/rollback, so their failures never delay
or undo the deployment change.
"""

from __future__ import annotations

from notifications import clients
from notifications.pagerduty import routing_key_from_env
from releases.core.outbox import Done, Handler, mark_started, register
from releases.models import Action


def _post(action: Action) -> Done:
    payload = action.payload
    mark_started(action, sending=True)
    slack = clients.slack()
    posted = slack.post_message(payload["channel"], payload["text"], payload.get("blocks"))
    return Done({"channel": posted.channel, "ts": posted.ts})


register(Action.Kind.SLACK, Handler(perform=_post, idempotent=False))


def _page(action: Action) -> Done:
    """Send a PagerDuty event. Idempotent by dedup_key, so a retry after a lost answer is safe."""
    payload = action.payload
    name = payload["routing_key_env"]
    routing_key = routing_key_from_env(name)
    pagerduty = clients.pagerduty()
    if payload["event_action"] == "resolve":
        key = pagerduty.resolve(routing_key, payload["dedup_key"])
        return Done({"dedup_key": key, "event_action": "resolve"})
    details = dict(payload.get("custom_details") or {})
    rollback = Action.objects.filter(key=payload.get("rollback_action_key") or "-").first()
    if rollback is not None:
        # What the on-call sees is the rollback's state when the page goes out, not when decided.
        details["rollback_status"] = rollback.status
    key = pagerduty.trigger(
        routing_key,
        dedup_key=payload["dedup_key"],
        summary=payload["summary"],
        source=payload["source"],
        severity=payload["severity"],
        component=payload.get("component"),
        group=payload.get("group"),
        event_class=payload.get("class"),
        custom_details=details,
        links=[tuple(link) for link in payload.get("links") or []],
        client_url=payload.get("client_url"),
    )
    return Done(
        {"dedup_key": key, "event_action": "trigger", "rollback_status": details.get("rollback_status")}
    )


register(Action.Kind.PAGERDUTY, Handler(perform=_page, idempotent=True))
