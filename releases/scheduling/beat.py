"""Celery beat's scheduler, sending only while this beat holds the PostgreSQL lease.

Two beats may run (DESIGN.md, Processes): each asks for the lease (``releases/scheduling/lease.py``)
before it sends anything. The holder renews it every quarter of a lease and sends; the other asks
again every couple of seconds and sends nothing, and takes over once the holder has stopped
renewing for a lease (``BEAT_LEASE_SECONDS``). A beat that cannot reach the database stops
sending at once: the polls it would send need the database anyway, and only a lease it renewed
proves no other beat is sending. The dispatcher's ``skip_locked`` stays the second line: a
dispatch sent just before a takeover may still meet the new leader's.

Every successful check writes a status file beside the schedule file (``<schedule>.lease``), which
``manage.py beat_alive`` reads: the standby is healthy while it waits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any

from celery.beat import PersistentScheduler
from django import db
from django.conf import settings
from django.db import close_old_connections

from releases.scheduling import lease

logger = logging.getLogger(__name__)
STATUS_SUFFIX = ".lease"


def status_path(schedule_filename: str) -> str:
    return schedule_filename + STATUS_SUFFIX


def read_status(path: str) -> dict[str, Any] | None:
    """What the beat writing ``path`` last saw; None if it never wrote it."""
    try:
        with open(path, encoding="utf-8") as status:
            found = json.load(status)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


class LeasedScheduler(PersistentScheduler):
    """``PersistentScheduler`` (the schedule file) whose ``tick`` sends only under the lease."""

    schedule_filename: str | None  # set by PersistentScheduler, from beat's --schedule

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Celery also builds one just to print its banner: nothing here touches the database.
        super().__init__(*args, **kwargs)
        self.holder = lease.process_holder()
        self.lease_name: str = settings.BEAT_LEASE_NAME
        self.lease_seconds = float(settings.BEAT_LEASE_SECONDS)
        self.leading = False
        self._held_until = 0.0  # monotonic: until then, no other beat can have taken the lease
        self._next_check = 0.0
        self._unreachable = False  # said once per outage, not every couple of seconds

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 4

    @property
    def retry_every(self) -> float:
        """How often a standby (or a beat without its database) asks again."""
        return min(2.0, self.lease_seconds / 5)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if time.monotonic() >= self._next_check:
            self.check_lease()
        # A renewal that has not come back in time (a slow database) ends the sending too; the
        # margin covers the step between this test and the message leaving.
        if not self.leading or time.monotonic() >= self._held_until - self.lease_seconds / 10:
            return max(0.05, self._next_check - time.monotonic())
        wait = float(super().tick(*args, **kwargs))
        return max(0.0, min(wait, self._next_check - time.monotonic()))

    def check_lease(self) -> None:
        """Renew the lease, or take it if it lapsed; log when this beat starts or stops leading."""
        asked = time.monotonic()  # before asking: the database's expiry is later than this
        try:
            close_old_connections()  # a connection broken by a database restart is replaced here
            before = None if self.leading else lease.read(self.lease_name)
            if self.leading or before is None or before.lapsed or before.holder == self.holder:
                held = lease.hold(self.lease_name, self.holder, self.lease_seconds)
            else:
                held = False
            current = before if held or not self.leading else lease.read(self.lease_name)
        except db.Error as exc:  # DatabaseError, and InterfaceError for a connection gone
            self._next_check = asked + self.retry_every
            if self.leading:
                self.leading = False
                logger.warning(
                    "beat.lease.lost",
                    extra={"lease": self.lease_name, "holder": self.holder, "reason": type(exc).__name__},
                )
            elif not self._unreachable:
                logger.warning(
                    "beat.lease.unreachable", extra={"lease": self.lease_name, "reason": type(exc).__name__}
                )
            self._unreachable = True
            return
        self._unreachable = False
        if held and not self.leading:
            logger.info(
                "beat.lease.acquired",
                extra={
                    "lease": self.lease_name,
                    "holder": self.holder,
                    "previous": current.holder if current is not None else "",
                },
            )
        elif self.leading and not held:
            logger.warning(
                "beat.lease.lost",
                extra={
                    "lease": self.lease_name,
                    "holder": self.holder,
                    "reason": "taken",
                    "now_held_by": current.held_by() if current is not None else "",
                },
            )
        self.leading = held
        self._held_until = asked + self.lease_seconds if held else 0.0
        self._next_check = asked + (self.renew_every if held else self.retry_every)
        leader = self.holder if held else (current.held_by() if current is not None else "")
        self._write_status(leader)

    def close(self) -> None:
        # Stopped on purpose (SIGTERM, a redeploy): let the lease lapse now so the other beat
        # takes over within its next check instead of a whole lease later.
        if self.leading:
            self.leading = False
            try:
                released = lease.give_up(self.lease_name, self.holder)
            except db.Error:
                released = False
            if released:
                logger.info("beat.lease.released", extra={"lease": self.lease_name, "holder": self.holder})
        super().close()

    def _write_status(self, leader: str) -> None:
        if not self.schedule_filename:
            return
        path = status_path(self.schedule_filename)
        status = {"holder": self.holder, "leading": self.leading, "leader": leader, "checked_at": time.time()}
        # Written aside and moved into place, so the healthcheck never reads half a file.
        with contextlib.suppress(OSError):
            with open(path + ".tmp", "w", encoding="utf-8") as out:
                json.dump(status, out)
            os.replace(path + ".tmp", path)

    @property
    def info(self) -> str:
        return f"{super().info}\n    . lease -> {self.lease_name} ({self.lease_seconds:g} s) as {self.holder}"
