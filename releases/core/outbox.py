"""The outbox: side effects recorded with the decision, performed at most once per intent.

A decision writes its actions in the same transaction as its state change; each action is
dispatched to a worker after commit. A worker *claims* an action with a compare-and-set
(pending -> running, with a lease), performs it through the kind's handler, and records
the outcome. If the worker dies, the watchdog finds the expired lease and either re-drives the
action (idempotent kinds: the handler checks the vendor's current state before acting again)
or, for kinds that cannot be checked (a Slack post), gives up rather than risk a duplicate.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, PositiveIntegerField, When
from django.utils import timezone

from releases.core.errors import ProviderError
from releases.core.publish import task
from releases.models import Action, Release

logger = logging.getLogger(__name__)
BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0


@dataclass(frozen=True)
class ActionSpec:
    """An intent to do one side effect, written to the outbox with the transition."""

    kind: str
    key: str  # idempotency key: the same intent twice is one row
    payload: dict[str, Any] = field(default_factory=dict)
    skip_reason: str = ""  # set for dry-run: recorded, never performed


@dataclass(frozen=True)
class Done:
    """The side effect happened (or was found already in place)."""

    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Confirming:
    """The vendor accepted the request; look again in ``recheck_in`` seconds."""

    result: dict[str, Any] = field(default_factory=dict)
    recheck_in: float = 2.0


@dataclass(frozen=True)
class Handler:
    perform: Callable[[Action], Done | Confirming]
    # Safe to perform again after a worker died mid-way (the handler checks the vendor first).
    idempotent: bool
    on_success: Callable[[Action, Done], None] | None = None
    on_failure: Callable[[Action, str], None] | None = None


HANDLERS: dict[str, Handler] = {}

# Kinds whose request is the reason for the decision (production rolled back): when written
# with others, this one is published alone and the others follow once its request has gone out,
# so their publishing and running never compete with it for the machine.
LEADS = frozenset({Action.Kind.ROLLBACK, Action.Kind.TRAFFIC})

# The actions waiting for the running lead's request to go out (see LEADS and sent()).
_followers: ContextVar[list[int] | None] = ContextVar("outbox_followers", default=None)


def register(kind: str, handler: Handler) -> None:
    HANDLERS[kind] = handler


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter, capped: attempt 1 -> up to 2 s, 2 -> 4 s, ..."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def write_actions(release: Release, specs: Sequence[ActionSpec]) -> list[Action]:
    """Insert the outbox rows for ``specs``; an intent already recorded is not written twice."""
    release.__dict__.pop("_intent_counts", None)  # next_key's counts are spent with this write
    now = timezone.now()
    written = []
    for spec in specs:
        skipped = bool(spec.skip_reason)
        # get_or_create: an intent already recorded (a redelivered alert, a retried decision)
        # keeps its row and is not dispatched again.
        action, created = Action.objects.get_or_create(
            key=spec.key,
            defaults={
                "release": release,
                "kind": spec.kind,
                "payload": spec.payload,
                "status": Action.Status.SKIPPED if skipped else Action.Status.PENDING,
                "result": {"skipped": spec.skip_reason} if skipped else {},
                "finished_at": now if skipped else None,
                "next_attempt_at": now,
            },
        )
        if created:
            written.append(action)
    return written


def enqueue_actions(actions: Iterable[Action]) -> None:
    pending = [action for action in actions if action.status == Action.Status.PENDING]
    if not pending:
        return
    lead = pending[0]
    if lead.kind in LEADS and len(pending) > 1:
        then = [action.pk for action in pending[1:]]
        # robust: a broker outage must not undo or break the committed decision; the watchdog
        # re-drives anything whose message was lost, followers included.
        label = about(lead)
        transaction.on_commit(lambda: dispatch(lead.pk, then=then, label=label), robust=True)
        return
    for action in pending:
        transaction.on_commit(functools.partial(dispatch, action.pk, label=about(action)), robust=True)


def about(action: Action) -> str:
    """How Flower and the worker's log name this action's task: its kind and its release."""
    return f"{action.kind} for release {action.release_id}"


def dispatch(
    action_id: int, countdown: float | None = None, then: Sequence[int] = (), label: str = ""
) -> None:
    try:
        extra: dict[str, Any] = {"kwargs": {"then": list(then)}} if then else {}
        if label:
            # Monitoring only (Flower, logs): the task still runs by its name, with the id.
            extra.update(shadow=f"releases.run_action: {label}", argsrepr=f"({action_id}, {label!r})")
        task("releases.run_action").apply_async((action_id,), countdown=countdown, retry=False, **extra)
    except Exception:  # the broker is down; PostgreSQL still has the row
        logger.warning("dispatch_failed", extra={"action_id": action_id}, exc_info=True)


def sent() -> None:
    """The running action's request has gone out (or failed): dispatch the actions that waited.

    Handlers of LEADS kinds call this right after their request; ``run`` calls it in any case
    when it ends, so followers are never held longer than the lead's own request."""
    waiting = _followers.get()
    while waiting:
        dispatch(waiting.pop(0))


def claim(action_id: int) -> Action | None:
    """pending/confirming -> running, if due. Exactly one worker wins (a compare-and-set).

    A claim from pending starts a new attempt; one from confirming goes on with the same one."""
    now = timezone.now()
    # Longer than any one handler run (its timeouts plus the confirmation window).
    lease = now + timedelta(seconds=settings.ACTION_LEASE)
    claimed = Action.objects.filter(
        pk=action_id, next_attempt_at__lte=now, status__in=[Action.Status.PENDING, Action.Status.CONFIRMING]
    ).update(
        status=Action.Status.RUNNING,
        lease_until=lease,
        updated_at=now,
        attempts=Case(
            When(status=Action.Status.PENDING, then=F("attempts") + 1),
            default=F("attempts"),
            output_field=PositiveIntegerField(),
        ),
    )
    if not claimed:
        return None
    return Action.objects.select_related("release__project").get(pk=action_id)


def run(action_id: int, then: Sequence[int] = ()) -> str:
    """Perform one action if it is due and unclaimed. Returns what happened, for logs and tests.

    ``then``: actions to dispatch once this one's request has gone out (see LEADS)."""
    token = _followers.set(list(then))
    try:
        return _run(action_id)
    finally:
        sent()
        _followers.reset(token)


def _run(action_id: int) -> str:
    action = claim(action_id)
    if action is None:
        return "not-claimed"
    handler = HANDLERS.get(action.kind)
    if handler is None:
        _finish(action, Action.Status.FAILED, error=f"no handler for action kind {action.kind!r}")
        return "failed"
    try:
        outcome = handler.perform(action)
    except ProviderError as exc:
        return _after_error(action, handler, exc)
    except Exception as exc:
        logger.exception("handler_crashed", extra={"action_id": action.pk, "kind": action.kind})
        # An unexpected crash mid-request: treat like a possibly-delivered transient error.
        return _after_error(
            action, handler, ProviderError(f"{type(exc).__name__}: {exc}", maybe_delivered=True)
        )
    if isinstance(outcome, Confirming):
        _save(
            action,
            status=Action.Status.CONFIRMING,
            result=outcome.result,
            next_attempt_at=timezone.now() + timedelta(seconds=outcome.recheck_in),
        )
        dispatch(action.pk, countdown=outcome.recheck_in, label=about(action))
        return "confirming"
    with transaction.atomic():
        if _finish(action, Action.Status.SUCCEEDED, result=outcome.result) and handler.on_success:
            handler.on_success(action, outcome)
    return "succeeded"


def _after_error(action: Action, handler: Handler, exc: ProviderError) -> str:
    error = str(exc)
    if exc.maybe_delivered and not handler.idempotent:
        error = f"outcome unknown, not sent again so it cannot arrive twice: {error}"
        give_up = True
    else:
        give_up = exc.permanent or action.attempts >= action.max_attempts
    if give_up:
        with transaction.atomic():
            if _finish(action, Action.Status.FAILED, error=error) and handler.on_failure:
                handler.on_failure(action, error)
        logger.warning("action_failed", extra={"action_id": action.pk, "kind": action.kind})
        return "failed"
    wait = max(exc.retry_after or 0.0, backoff(action.attempts))
    _save(
        action,
        status=Action.Status.PENDING,
        last_error=error,
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
    )
    if wait <= settings.MAX_COUNTDOWN:
        dispatch(action.pk, countdown=wait, label=about(action))
    return "retrying"


def _save(action: Action, **fields: Any) -> None:
    fields.setdefault("lease_until", None)
    Action.objects.filter(pk=action.pk, status=Action.Status.RUNNING).update(
        updated_at=timezone.now(), **fields
    )
    for name, value in fields.items():
        setattr(action, name, value)


def _finish(action: Action, status: str, *, result: dict[str, Any] | None = None, error: str = "") -> bool:
    """running -> final status; False if the action was not ours any more (lease lost)."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "finished_at": now, "lease_until": None, "updated_at": now}
    if result is not None:
        fields["result"] = result
    if error:
        fields["last_error"] = error
    finished = Action.objects.filter(pk=action.pk, status=Action.Status.RUNNING).update(**fields)
    for name, value in fields.items():
        setattr(action, name, value)
    return finished == 1


def mark_started(action: Action, **result: Any) -> None:
    """Record, before a non-idempotent request goes out, that it is going out."""
    action.result = {**action.result, **result}
    Action.objects.filter(pk=action.pk).update(result=action.result, updated_at=timezone.now())
    assert action.status == Action.Status.RUNNING


def recover_expired(now: Any = None) -> tuple[int, int]:
    """Actions whose worker died: re-drive the idempotent ones, give up on the others.

    Returns (re-driven, given up).
    """
    now = now or timezone.now()
    redriven = given_up = 0
    expired = Action.objects.filter(status=Action.Status.RUNNING, lease_until__lt=now)
    for action in expired.select_related("release__project"):
        handler = HANDLERS.get(action.kind)
        started = bool(action.result.get("sending"))
        if handler is not None and (handler.idempotent or not started):
            moved = Action.objects.filter(
                pk=action.pk, status=Action.Status.RUNNING, lease_until__lt=now
            ).update(
                status=Action.Status.PENDING,
                lease_until=None,
                next_attempt_at=now,
                last_error="worker stopped mid-action; re-driven by the watchdog",
                updated_at=now,
            )
            redriven += moved
            if moved:
                dispatch(action.pk, label=about(action))
        else:
            with transaction.atomic():
                action.status = Action.Status.RUNNING
                if _finish(
                    action,
                    Action.Status.FAILED,
                    error="worker stopped while sending; not sent again so it cannot arrive twice",
                ):
                    given_up += 1
                    if handler is not None and handler.on_failure:
                        handler.on_failure(action, action.last_error)
    return redriven, given_up


def next_key(release: Release, kind: str) -> str:
    """A fresh intent key, e.g. ``rollback:42:2`` for the release's second rollback.

    Transitions are compare-and-set, so two decisions for one release cannot both get here for
    the same state: counting existing intents gives each decision its own stable key. The counts
    are read once per decision (one query) and dropped when its actions are written.
    """
    counts: dict[str, int] | None = getattr(release, "_intent_counts", None)
    if counts is None:
        counts = dict(Action.objects.filter(release=release).values_list("kind").annotate(n=Count("id")))
        release._intent_counts = counts  # type: ignore[attr-defined]
    counts[kind] = counts.get(kind, 0) + 1
    return f"{kind}:{release.pk}:{counts[kind]}"
