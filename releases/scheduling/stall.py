"""Is the poll dispatcher running? If not, page and tell Slack once; once it runs again, say so once.

Beat's own tasks cannot notice that beat is gone, so every worker runs ``check_dispatch`` on a
thread of its own (``StallWatch``, a worker bootstep; gatekeeper/celery.py) every
``DISPATCH_STALL_CHECK`` seconds. Several workers check at once, and PostgreSQL keeps them from
doubling anything: a stall is one ``DispatchStall`` row (at most one open), and what each
destination is told about it is one ``StallNotice`` row, written with the episode before anything
is sent and claimed by compare-and-set before each send. A send that failed goes back, to be tried
at the next check.

A claim whose checker died mid-send is looked at again after ``CLAIM_TIMEOUT``. PagerDuty
deduplicates by key, so the page is sent again; Slack has no such key, so the post counts as sent
rather than risk posting it twice (docs/design-notes.md, "Side effects that cannot be repeated").
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import bootsteps
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications import operations
from notifications.operations import StallFacts
from releases.core.errors import ProviderError
from releases.models import DispatchStall, Heartbeat, Project, StallNotice
from releases.scheduling import lease
from releases.scheduling.lease import LeaseView
from releases.scheduling.liveness import DISPATCH

logger = logging.getLogger(__name__)
# Longer than a send can take (PROVIDER_TIMEOUT) with room to spare: past it, the claimer is gone.
CLAIM_TIMEOUT = timedelta(seconds=120)
Via, State = StallNotice.Via, StallNotice.State


@dataclass(frozen=True)
class DispatchState:
    now: datetime
    last_run_at: datetime | None  # None: never ran
    age: float  # seconds since the last run, or since a first run was expected
    stalled: bool
    lease: LeaseView | None

    @property
    def leader(self) -> str:
        return self.lease.held_by() if self.lease is not None else ""


def dispatch_state(now: datetime | None = None, *, start_clock: bool = False) -> DispatchState:
    """How long ago the dispatcher ran and who holds the beat lease.

    A dispatcher that never ran is late from when a first run was expected: the heartbeat row's
    creation, which ``start_clock`` (the workers' checks) makes when it is missing.
    """
    now = now or timezone.now()
    beat = Heartbeat.objects.filter(name=DISPATCH).first()
    if beat is None and start_clock:
        beat, _ = Heartbeat.objects.get_or_create(name=DISPATCH, defaults={"created_at": now})
    since = now if beat is None else beat.last_at or beat.created_at
    age = max(0.0, (now - since).total_seconds())
    return DispatchState(
        now=now,
        last_run_at=beat.last_at if beat is not None else None,
        age=age,
        stalled=age > settings.DISPATCH_STALL_SECONDS,
        lease=lease.read(settings.BEAT_LEASE_NAME),
    )


def destinations() -> list[tuple[str, str]]:
    """(via, target) for a stall: the operations settings where set, else every project's.

    Each distinct routing key variable and channel once: a stalled dispatcher stops every project's
    gates, and the alert has one dedup key, so projects sharing a key share one alert.
    """
    keys = [settings.OPS_PAGERDUTY_ROUTING_KEY_ENV] if settings.OPS_PAGERDUTY_ROUTING_KEY_ENV else []
    channels = [settings.OPS_SLACK_CHANNEL] if settings.OPS_SLACK_CHANNEL else []
    if not keys:
        keys = sorted(
            set(
                Project.objects.exclude(pagerduty_routing_key_env="").values_list(
                    "pagerduty_routing_key_env", flat=True
                )
            )
        )
    if not channels:
        channels = sorted(
            set(Project.objects.exclude(slack_channel="").values_list("slack_channel", flat=True))
        )
    return [(Via.PAGERDUTY.value, key) for key in keys] + [(Via.SLACK.value, channel) for channel in channels]


def check_dispatch(now: datetime | None = None) -> dict[str, int]:
    """Open a stall episode, or end the open one, as the dispatcher's heartbeat says; then send
    whatever is owed. Safe to run from any number of processes at once."""
    state = dispatch_state(now, start_clock=True)
    episode = DispatchStall.objects.filter(job=DISPATCH, resumed_at__isnull=True).first()
    counts = {"opened": 0, "resumed": 0}
    if state.stalled and episode is None:
        counts["opened"] = _open(state)
    elif not state.stalled and episode is not None:
        counts["resumed"] = _close(episode, state.last_run_at or state.now)
    counts.update(_deliver(state))
    return counts


def _open(state: DispatchState) -> int:
    try:
        with transaction.atomic():
            episode = DispatchStall.objects.create(
                job=DISPATCH, started_at=state.now, last_dispatch_at=state.last_run_at, holder=state.leader
            )
            StallNotice.objects.bulk_create(
                [StallNotice(stall=episode, via=via, target=target) for via, target in destinations()]
            )
    except IntegrityError:  # another worker's check opened it first (one open episode per job)
        return 0
    logger.warning(
        "dispatch.stalled",
        extra={"stall": episode.pk, "age_s": round(state.age, 1), "lease_holder": state.leader},
    )
    return 1


def _close(episode: DispatchStall, ran_again: datetime) -> int:
    closed = DispatchStall.objects.filter(pk=episode.pk, resumed_at__isnull=True).update(resumed_at=ran_again)
    if closed:
        stalled = ran_again - (episode.last_dispatch_at or episode.started_at)
        logger.info(
            "dispatch.resumed", extra={"stall": episode.pk, "stalled_s": round(stalled.total_seconds())}
        )
    return closed


def _deliver(state: DispatchState) -> dict[str, int]:
    now = state.now
    # A stall message still unsent when its episode ended is no longer news.
    StallNotice.objects.filter(state=State.PENDING, stall__resumed_at__isnull=False).update(
        state=State.CANCELLED, last_error="the dispatcher ran again before it was sent"
    )
    _recover_abandoned(now)
    owed = StallNotice.objects.select_related("stall").filter(
        Q(state=State.PENDING, stall__resumed_at__isnull=True)
        | Q(state=State.SENT, stall__resumed_at__isnull=False)
    )
    counts = {"sent": 0, "failed": 0}
    for notice in owed:
        outcome = _send(notice, state)
        if outcome:
            counts[outcome] += 1
    return counts


def _recover_abandoned(now: datetime) -> None:
    """Claims older than CLAIM_TIMEOUT: their checker died mid-send, or hangs past any timeout."""
    stale = Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    unknown = "outcome unknown (its sender stopped mid-send)"
    # PagerDuty: sent again, harmlessly (same dedup key); once the episode is over, resolved instead.
    StallNotice.objects.filter(
        stale, state=State.SENDING, via=Via.PAGERDUTY, stall__resumed_at__isnull=True
    ).update(state=State.PENDING, claimed_at=None, last_error=unknown)
    StallNotice.objects.filter(stale, state=State.RESOLVING, via=Via.PAGERDUTY).update(
        state=State.SENT, claimed_at=None, last_error=unknown
    )
    # Slack (and a page whose episode is over): it may have gone out, so it counts as sent.
    StallNotice.objects.filter(stale, state=State.SENDING).update(
        state=State.SENT, sent_at=now, claimed_at=None, last_error=unknown + ", not sent again"
    )
    StallNotice.objects.filter(stale, state=State.RESOLVING).update(
        state=State.RESOLVED, resolved_at=now, claimed_at=None, last_error=unknown + ", not sent again"
    )


def _send(notice: StallNotice, state: DispatchState) -> str | None:
    """Claim ``notice``'s next message, send it, record the outcome: "sent", "failed" or None (not ours)."""
    resolving = notice.state == State.SENT
    before, sending = (State.SENT, State.RESOLVING) if resolving else (State.PENDING, State.SENDING)
    done = State.RESOLVED if resolving else State.SENT
    claimed = StallNotice.objects.filter(pk=notice.pk, state=before).update(
        state=sending, claimed_at=state.now, attempts=F("attempts") + 1
    )
    if not claimed:
        return None  # another worker's check took it
    mine = StallNotice.objects.filter(pk=notice.pk, state=sending)
    try:
        _message(notice, resolving, state)
    except ProviderError as exc:
        # PagerDuty deduplicates, so any transient failure is retried; a Slack post that may have
        # been made is not.
        retry = not exc.permanent and (notice.via == Via.PAGERDUTY or not exc.maybe_delivered)
        after = before if retry else State.FAILED if exc.permanent else done
        mine.update(state=after, claimed_at=None, last_error=str(exc)[:1000])
        logger.warning(
            "dispatch.stall.notice_failed",
            extra={
                "notice": notice.pk,
                "via": notice.via,
                "target": notice.target,
                "retry": retry,
                "error": str(exc),
            },
        )
        return "failed"
    stamp = {"resolved_at": state.now} if resolving else {"sent_at": state.now}
    mine.update(state=done, claimed_at=None, last_error="", **stamp)
    logger.info(
        "dispatch.stall.notice_sent",
        extra={"notice": notice.pk, "via": notice.via, "target": notice.target, "resolve": resolving},
    )
    return "sent"


def _message(notice: StallNotice, resolving: bool, state: DispatchState) -> None:
    episode = notice.stall
    if resolving:
        since = episode.last_dispatch_at or episode.started_at
        stalled_for = ((episode.resumed_at or state.now) - since).total_seconds()
        if notice.via == Via.PAGERDUTY:
            operations.resolve_stalled(notice.target)
        else:
            operations.post(notice.target, operations.resumed_text(stalled_for))
        return
    facts = StallFacts(
        stalled_for=state.age,
        last_dispatch_at=state.last_run_at,
        started_at=episode.started_at,
        lease_holder=state.leader,
        lease_expires_at=state.lease.expires_at if state.lease is not None else None,
    )
    if notice.via == Via.PAGERDUTY:
        operations.page_stalled(notice.target, facts)
    else:
        operations.post(notice.target, operations.stalled_text(facts))


class _Watcher:
    """The thread a worker checks on. Not the worker's timer: in a prefork worker its callbacks run
    on the event loop that fetches messages, and a page to a slow vendor would hold that up."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatch-stall-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            close_old_connections()  # what a request does: a broken connection is replaced
            try:
                counts = check_dispatch()
            except Exception:  # the database is down, say: the next check tries again
                logger.warning("dispatch.stall.check_failed", exc_info=True)
                continue
            if any(counts.values()):
                logger.info("dispatch.stall.check", extra=counts)


class StallWatch(bootsteps.StartStopStep):
    """Every worker watches the dispatcher (``DISPATCH_STALL_CHECK`` seconds; 0 turns it off)."""

    label = "dispatch stall watch"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.watcher = _Watcher(float(settings.DISPATCH_STALL_CHECK))

    def include_if(self, parent: Any) -> bool:
        return self.watcher.interval > 0

    def start(self, parent: Any) -> None:
        self.watcher.start()

    def stop(self, parent: Any) -> None:
        self.watcher.stop()

    def terminate(self, parent: Any) -> None:
        self.watcher.stop()
