"""A gate started from a Vercel delivery in one statement: the release (already ``gating``), its
history row and the delivery row, written by one INSERT ... WITH statement.

Two ways in (releases/vercel_events.py): ``gate_at_once`` from model instances, inside the
delivery's transaction; and, for a project held in memory (``HELD``), rows made without model
instances and checked against the project's row, with no transaction at all. Both write the same
rows (tests/releases/test_webhook_vercel_ingest.py); bench/ingest.py measures the second.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import IntegrityError, connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from releases.decisions import GATEKEEPER
from releases.models import Project, Release, ReleaseEvent, WebhookDelivery
from releases.polling import gate_start
from releases.rows import RowMaker, insert_columns, insert_values
from releases.states import ReleaseState

S = ReleaseState
DELIVERY = WebhookDelivery.Outcome
VERCEL = "vercel"


@dataclass
class Held:
    """A project held in memory, its row as PostgreSQL printed it, and what gating its
    deployments writes, prepared once (rows.RowMaker)."""

    project: Project
    row: str
    prototype: Release = field(init=False)
    releases: RowMaker = field(init=False)
    deliveries: RowMaker = field(init=False)
    history: RowMaker = field(init=False)

    def __post_init__(self) -> None:
        self.prototype = Release(project=self.project)
        self.releases = RowMaker(Release, {"project": self.project})
        self.deliveries = RowMaker(
            WebhookDelivery,
            {"source": VERCEL, "project": self.project, "outcome": DELIVERY.ACCEPTED, "note": "gate started"},
            skip="release",
        )
        self.history = RowMaker(
            ReleaseEvent,
            {
                "kind": ReleaseEvent.Kind.TRANSITION,
                "from_state": S.RECEIVED,
                "to_state": S.GATING,
                "actor": GATEKEEPER,
                "data": {},
            },
            skip="release",
        )


# Projects by Vercel project id, each with its row as it was read (rows.load_versioned).
# A new production deployment is gated in one statement that first checks the row still reads
# the same, so a project edited since (sync_config, the admin, a queryset update) is read again,
# never used stale: a stale copy costs one more try, not a wrong gate. Saves a round trip and a
# transaction per delivery (bench/ingest.py). Configured projects are few: no eviction.
HELD: dict[str, Held] = {}


class Repeat(Exception):
    """The delivery id is already recorded: what this transaction wrote is undone."""


@cache
def gate_sql(guarded: bool) -> str:
    """gate_at_once's statement; ``guarded``: only while the project's row reads as given.

    The delivery's INSERT has no ON CONFLICT: a repeated delivery id fails the whole statement,
    so its release is not written either, even outside a transaction.
    """
    release_columns, release_marks = insert_columns(Release)
    delivery_columns, delivery_marks = insert_columns(WebhookDelivery, skip="release")
    history_columns, history_marks = insert_columns(ReleaseEvent, skip="release")
    table = Project._meta.db_table
    current = f"SELECT 1 FROM {table} WHERE id = %s AND {table}::text = %s" if guarded else "SELECT 1"  # noqa: S608
    return (
        f"WITH current AS ({current}),"  # noqa: S608 - names from the models
        f" release AS (INSERT INTO {Release._meta.db_table} ({release_columns})"
        f"  SELECT {release_marks} FROM current ON CONFLICT (deployment_id) DO NOTHING RETURNING id),"
        f" delivery AS (INSERT INTO {WebhookDelivery._meta.db_table} (release_id, {delivery_columns})"
        f"  SELECT id, {delivery_marks} FROM release RETURNING id),"
        f" history AS (INSERT INTO {ReleaseEvent._meta.db_table} (release_id, {history_columns})"
        f"  SELECT id, {history_marks} FROM release)"
        " SELECT EXISTS (SELECT 1 FROM current), (SELECT id FROM release), (SELECT id FROM delivery)"
    )


def gate_at_once(release: Release, delivery: WebhookDelivery) -> bool:
    """The release, created already gating, its history row, and the delivery that started it:
    three rows in one statement. False, with nothing written, when the deployment already has a
    release; raises Repeat, with nothing written, when the delivery is a repeat.

    The same rows as recording the delivery, get_or_create and start_gate (received -> gating,
    with its history row) wrote in eight statements (the delivery, get_or_create's SELECT,
    savepoint, INSERT and release, the delivery's UPDATE, the transition's UPDATE and history
    row); the ORM spent longer building those than PostgreSQL running them (bench/ingest.py).
    Uniqueness does the rest: a deployment gets one release, a delivery id one row.
    """
    now = timezone.now()
    fields, reason = gate_start(release, now)
    for name, value in {**fields, "state": S.GATING, "updated_at": now}.items():
        setattr(release, name, value)
    history = ReleaseEvent(
        kind=ReleaseEvent.Kind.TRANSITION,
        from_state=S.RECEIVED,
        to_state=S.GATING,
        actor=GATEKEEPER,
        reason=reason,
        data={},
        created_at=now,
    )
    delivery.project, delivery.outcome, delivery.note = release.project, DELIVERY.ACCEPTED, "gate started"
    _, _, release_values = insert_values(release)
    _, _, delivery_values = insert_values(delivery, skip="release")
    _, _, history_values = insert_values(history, skip="release")
    _, release_id, delivery_id = run_gate([], release_values, delivery_values, history_values)
    if release_id is None:
        delivery.project, delivery.outcome, delivery.note = None, DELIVERY.IGNORED, ""
        return False
    for row, pk in ((release, release_id), (delivery, delivery_id)):
        row.pk = pk
        row._state.adding, row._state.db = False, connection.alias
    delivery.release = release
    return True


def run_gate(
    guard: list[Any], release: list[Any], delivery: list[Any], history: list[Any]
) -> tuple[bool, int | None, int | None]:
    """Run gate_sql: (the project still reads as ``guard`` says, the release's id or None, the
    delivery's id or None); Repeat, with nothing written, when the delivery id is taken."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(gate_sql(bool(guard)), [*guard, *release, *delivery, *history])
            return cursor.fetchone()
    except IntegrityError as exc:
        if _constraint(exc) == UNIQUE_DELIVERY:
            raise Repeat from exc
        raise


def as_received(raw: bytes) -> Any | None:
    """The body for jsonb as the verified bytes that came in (no second serialisation of the
    parsed payload), or None when PostgreSQL would not read them as the JSON Python read: Python
    also takes UTF-16 and UTF-32 bodies and a UTF-8 byte order mark, which jsonb refuses
    (tests/fuzz found both)."""
    if not raw or b"\x00" in raw or raw.startswith(codecs.BOM_UTF8):
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Jsonb(raw, dumps=_verbatim)


def _verbatim(text: bytes) -> bytes:
    return text


UNIQUE_DELIVERY = "unique_delivery"  # WebhookDelivery's (source, delivery_id) constraint


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)
