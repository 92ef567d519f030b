"""Rows read and written in plain SQL on the webhook's hot path.

Building a statement costs the ORM more than PostgreSQL spends running these: loading a Project
took 450 us of CPU through a QuerySet and 100 us here, and the webhook's statements together
were most of its cost (bench/ingest.py). Columns come from the model and values are prepared by
the model's own fields, so rows are stored and read exactly as the ORM stores and reads them,
and a migration that adds a column needs no change here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import Model
from django.utils import timezone

M = TypeVar("M", bound=Model)


def _insertable(model: type[Model], skip: str) -> list[Any]:
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.name != skip]


@cache
def _columns(model: type[Model], skip: str) -> str:
    return ", ".join(connection.ops.quote_name(f.column) for f in _insertable(model, skip))


# Field classes whose get_db_prep_save, given a value of this exact type, only hands it to the
# backend: as is, or for integers through adapt_integerfield_value (on psycopg 3, Int4 and
# friends). Exact classes only: a subclass may prepare differently.
_PLAIN: dict[type[Any], type[Any]] = {
    models.CharField: str,
    models.TextField: str,
    models.BooleanField: bool,
    models.FloatField: float,
}
_INTEGERS = (
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveBigIntegerField,
)


def _shortcut(field: Any, vendor: str) -> tuple[type[Any] | None, str]:
    """(the exact type of value ``field`` stores without preparing, the integer kind or "")."""
    if type(field) is models.ForeignKey:
        field = field.target_field
    if type(field) in (models.BigAutoField, models.AutoField):
        return int, ""  # a key: validate_autopk_value hands it on
    if type(field) in _INTEGERS:
        return int, field.get_internal_type()
    if type(field) is models.DateTimeField and vendor == "postgresql":
        return datetime, ""  # aware ones only (checked below); SQLite's backend makes text of them
    return _PLAIN.get(type(field)), ""


@cache
def _preparers(model: type[Model], skip: str, vendor: str) -> list[tuple[Any, type[Any] | None, str]]:
    return [(f, *_shortcut(f, vendor)) for f in _insertable(model, skip)]


def insert_columns(model: type[Model], skip: str = "") -> tuple[str, str]:
    """``(columns, placeholders)`` matching ``insert_values`` for a row of ``model``."""
    return _columns(model, skip), ", ".join(["%s"] * len(_insertable(model, skip)))


def _prepare(entry: tuple[Any, type[Any] | None, str], value: Any, db: Any) -> Any:
    """``value`` of the field in ``entry`` (from _preparers) as get_db_prep_save gives it."""
    f, plain, integer = entry
    # Skipping the preparation that would hand the value on unchanged is most of a webhook's
    # row-building time: a Release has 30 fields, most of them plain strings and numbers.
    if value is None and f.null:
        return None
    if plain is str and isinstance(value, str):
        return str.__str__(value)  # a choices enum is a str: stored as its text, dumped faster
    if type(value) is not plain or (plain is datetime and value.tzinfo is None):
        return f.get_db_prep_save(value, db)
    return db.ops.adapt_integerfield_value(value, integer) if integer else value


def insert_values(obj: Model, skip: str = "") -> tuple[str, str, list[Any]]:
    """``(columns, placeholders, values)`` of a new row of ``obj`` (all but its primary key and
    the field named ``skip``), with the defaults and ``auto_now_add`` the ORM would apply."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the ``connection`` proxy is a lookup
    values = []
    for entry in _preparers(type(obj), skip, db.vendor):
        values.append(_prepare(entry, entry[0].pre_save(obj, True), db))
    return _columns(type(obj), skip), ", ".join(["%s"] * len(values)), values


class RowMaker:
    """INSERT values (in ``insert_columns`` order) of new rows of ``model`` that share the field
    values ``shared``: what ``insert_values(model(**shared, **given))`` gives, without building a
    model instance per row, which cost more than the rest of a webhook's rows together.

    The shared values are prepared once. Per row, a field ``given`` does not name gets its
    default anew when that is callable (a fresh ``dict``; ``now`` for ``timezone.now``), and
    ``auto_now``/``auto_now_add`` fields get ``now``, as the ORM's save would.
    """

    def __init__(self, model: type[Model], shared: Mapping[str, Any], skip: str = "") -> None:
        db = connections[DEFAULT_DB_ALIAS]
        self._entries = _preparers(model, skip, db.vendor)
        _, _, self._base = insert_values(model(**shared), skip)
        self._index: dict[str, int] = {}
        self._fresh: list[tuple[int, Callable[[], Any] | None]] = []  # None: ``now``
        self._auto: set[str] = set()
        for i, (f, _, _) in enumerate(self._entries):
            self._index[f.name] = self._index[f.attname] = i
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                self._auto |= {f.name, f.attname}
                self._fresh.append((i, None))
            elif f.name not in shared and f.attname not in shared and f.has_default() and callable(f.default):
                self._fresh.append((i, None if f.default is timezone.now else f.default))

    def values(
        self, now: datetime, given: Mapping[str, Any], prepared: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """One row: ``given`` by field name, ``prepared`` already in the database's form."""
        db = connections[DEFAULT_DB_ALIAS]
        row = list(self._base)
        for i, default in self._fresh:
            row[i] = _prepare(self._entries[i], now if default is None else default(), db)
        for name, value in given.items():
            if name in self._auto:
                raise ValueError(f"{name} is set by the database's save time, not given")
            i = self._index[name]
            row[i] = _prepare(self._entries[i], value, db)
        for name, value in (prepared or {}).items():
            row[self._index[name]] = value
        return row


def insert_ignoring_conflict(obj: Model) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: False, and nothing written, when a unique constraint
    already holds this row (a repeat costs no exception and no savepoint); sets ``obj.pk``."""
    columns, marks, values = insert_values(obj)
    meta = obj._meta
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {meta.db_table} ({columns}) VALUES ({marks}) "  # noqa: S608 - names from the model
            f"ON CONFLICT DO NOTHING RETURNING {connection.ops.quote_name(meta.pk.column)}",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding, obj._state.db = False, connection.alias
    return True


@cache
def _reader(model: type[Model]) -> tuple[str, list[str], list[tuple[int, list[Callable[..., Any]]]]]:
    fields = model._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    converters = [
        (
            i,
            f.get_db_converters(connection)
            + connection.ops.get_db_converters(f.get_col(model._meta.db_table)),
        )
        for i, f in enumerate(fields)
    ]
    return columns, [f.attname for f in fields], [(i, c) for i, c in converters if c]


def load_first(model: type[M], where: str, params: Sequence[Any]) -> M | None:
    """The row with the lowest primary key matching ``where`` (SQL, ``%s`` placeholders), as a
    complete model instance, or None."""
    found = _load(model, where, params, versioned=False)
    return None if found is None else found[0]


def load_versioned(model: type[M], where: str, params: Sequence[Any]) -> tuple[M, str] | None:
    """As ``load_first``, with the row's version: the row as PostgreSQL prints it. A statement can
    then act on a copy held in memory only while the row still reads the same
    (``AND {table}::text = %s``). Its content, not ``xmin``: a transaction that writes a row twice
    leaves the same ``xmin`` on both versions. PostgreSQL only."""
    return _load(model, where, params, versioned=True)


def _load(model: type[M], where: str, params: Sequence[Any], *, versioned: bool) -> tuple[M, str] | None:
    columns, names, converters = _reader(model)
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {meta.db_table + '::text, ' if versioned else ''}{columns} FROM {meta.db_table} "  # noqa: S608
            f"WHERE {where} ORDER BY {connection.ops.quote_name(meta.pk.column)} LIMIT 1",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    version, values = (row[0], list(row[1:])) if versioned else ("", list(row))
    for index, steps in converters:
        for convert in steps:
            values[index] = convert(values[index], None, connection)
    return model.from_db(connection.alias, names, values), version
