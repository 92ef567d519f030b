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


def insert_values(
    obj: Model, skip: str = "", prepared: Mapping[str, Any] | None = None
) -> tuple[str, str, list[Any]]:
    """``(columns, placeholders, values)`` of a new row of ``obj`` (all but its primary key and
    the field named ``skip``), with the defaults and ``auto_now_add`` the ORM would apply;
    ``prepared`` gives, by field name, values already in the database's form."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the ``connection`` proxy is a lookup
    adapt = db.ops.adapt_integerfield_value
    values = []
    for f, plain, integer in _preparers(type(obj), skip, db.vendor):
        if prepared and f.name in prepared:
            values.append(prepared[f.name])
            continue
        value = f.pre_save(obj, True)
        # Skipping the preparation that would hand the value on unchanged is most of a webhook's
        # row-building time: a Release has 30 fields, most of them plain strings and numbers.
        if value is None and f.null:
            values.append(None)
        elif plain is str and isinstance(value, str):
            # A choices enum is a str: stored as its text, and psycopg looks up a str faster.
            values.append(str.__str__(value))
        elif type(value) is not plain or (plain is datetime and value.tzinfo is None):
            values.append(f.get_db_prep_save(value, db))
        else:
            values.append(adapt(value, integer) if integer else value)
    return _columns(type(obj), skip), ", ".join(["%s"] * len(values)), values


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
