"""Posting a recorded Slack message: at most once, never blocking a promote or rollback.

Slack has no idempotency key, so a post whose outcome is unknown (a read timeout, a worker that
died mid-request) is not sent again: a missing message is better than a doubled verdict.
Slack actions are separate outbox rows from promote/rollback, so their failures never delay
or undo the deployment change.
"""

from __future__ import annotations

from releases import clients
from releases.models import Action
from releases.outbox import Done, Handler, mark_started, register


def _post(action: Action) -> Done:
    payload = action.payload
    mark_started(action, sending=True)
    with clients.slack() as slack:
        posted = slack.post_message(payload["channel"], payload["text"], payload.get("blocks"))
    return Done({"channel": posted.channel, "ts": posted.ts})


register(Action.Kind.SLACK, Handler(perform=_post, idempotent=False))
