"""The watchdog, run by beat: re-drive actions the broker lost, give a poll to a gate without one.

Whatever Redis lost (a flush, a killed worker's prefetched messages) is found here in PostgreSQL
by its timestamps and sent again; the claims make any duplicate harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from releases.core.outbox import about, dispatch, recover_expired
from releases.models import Action, Analysis

logger = logging.getLogger(__name__)
WATCHDOG_GRACE = timedelta(seconds=15)
WATCHDOG_BATCH = 1000


def redrive(now: datetime | None = None) -> dict[str, int]:
    """The watchdog: re-drive due actions from PostgreSQL, and give a poll to a gate without one.

    Whatever the broker lost (a flushed Redis, a killed worker's prefetched messages) is found
    here by its timestamps and sent again; the claims make any duplicate harmless. Polls need no
    re-driving: ``dispatch_due`` sends whatever is due, lost messages included, once their lease ends.
    """
    now = now or timezone.now()
    cutoff = now - WATCHDOG_GRACE
    # A running gate or bake watch with no next check at all would never be judged: give it one.
    orphans = Analysis.objects.filter(
        phase=Analysis.Phase.RUNNING,
        kind__in=(Analysis.Kind.GATE, Analysis.Kind.BAKE),
        next_check_at__isnull=True,
    ).update(next_check_at=now)
    redriven, given_up = recover_expired(now)
    actions = list(
        Action.objects.filter(
            status__in=[Action.Status.PENDING, Action.Status.CONFIRMING], next_attempt_at__lt=cutoff
        )
        .order_by("next_attempt_at")
        .only("pk", "kind", "release_id")[:WATCHDOG_BATCH]
    )
    for action in actions:
        dispatch(action.pk, label=about(action))
    counts = {
        "orphans": orphans,
        "actions": len(actions) + redriven,
        "given_up": given_up,
    }
    if any(counts.values()):
        logger.info("watchdog.redrive", extra=counts)
    return counts
