"""releases/rows.py: rows read and written in SQL come out as the ORM's own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from releases.models import Project, Release, WebhookDelivery
from releases.rows import insert_ignoring_conflict, load_first
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def test_load_first_reads_every_field_as_the_orm_does() -> None:
    make_project(
        production_domains=["a.example.com", "b.example.com"],
        canary={"stages": [{"percent": 5}], "checks": []},
        max_wait=timedelta(minutes=90),
        early_fail_confidence=0.9,
    )
    loaded = load_first(Project, "vercel_project_id = %s", ["prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7"])
    expected = Project.objects.get()
    assert loaded is not None and not loaded._state.adding
    for field in Project._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(expected, field.attname), field.name
    assert loaded.canary == {"stages": [{"percent": 5}], "checks": []}
    assert load_first(Project, "vercel_project_id = %s", ["prj_nobody"]) is None


def test_insert_ignoring_conflict_writes_once_and_says_so() -> None:
    first = WebhookDelivery(
        source="vercel", delivery_id="evt_1", event_type="t", outcome="ignored", payload={"a": 1}
    )
    assert insert_ignoring_conflict(first)
    stored = WebhookDelivery.objects.get()
    assert (stored.pk, stored.payload, stored.note, stored.project_id) == (first.pk, {"a": 1}, "", None)
    assert stored.received_at is not None
    again = WebhookDelivery(
        source="vercel", delivery_id="evt_1", event_type="t", outcome="ignored", payload={}
    )
    assert not insert_ignoring_conflict(again)
    assert again.pk is None and WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", ["Release", "WebhookDelivery", "ReleaseEvent", "Project", "Action", "GateCheck"]
)
def test_insert_values_prepares_every_field_as_the_orm_does(model: str) -> None:
    from django.apps import apps
    from django.db import connection

    from releases.rows import insert_values

    cls = apps.get_model("releases", model)
    project = make_project()
    release = Release.objects.create(project=project, deployment_id="dpl_rows", version="v1")
    related = {"project": project, "release": release}
    kwargs: dict[str, Any] = {}
    for field in cls._meta.concrete_fields:
        if field.is_relation and field.name in related:
            kwargs[field.name] = related[field.name]
    obj = cls(**kwargs)
    _, _, fast = insert_values(obj)
    fields = [f for f in cls._meta.concrete_fields if not f.primary_key]
    generic = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    assert len(fast) == len(generic)
    for field, mine, theirs in zip(fields, fast, generic, strict=True):
        if field.get_internal_type() == "JSONField":
            assert (getattr(mine, "obj", mine), type(mine)) == (
                getattr(theirs, "obj", theirs),
                type(theirs),
            ), field.name
        elif field.get_internal_type() in {"DateTimeField"} and field.auto_now_add | field.auto_now:
            assert type(mine) is type(theirs), field.name  # both "now", a moment apart
        elif isinstance(theirs, str):  # a choices enum goes as its text
            assert (mine, type(mine)) == (str(theirs.value if hasattr(theirs, "value") else theirs), str), (
                field.name
            )
        else:
            assert (mine, type(mine)) == (theirs, type(theirs)), field.name


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["Release", "WebhookDelivery", "ReleaseEvent"])
def test_a_row_maker_gives_what_insert_values_gives(model: str) -> None:
    from django.apps import apps
    from django.utils import timezone

    from releases.rows import RowMaker, insert_values

    cls = apps.get_model("releases", model)
    project = make_project()
    shared: dict[str, Any] = {"project": project} if model != "ReleaseEvent" else {"kind": "transition"}
    skip = "" if model == "Release" else "release"
    given = {
        "Release": {"deployment_id": "dpl_x", "version": "v1", "state": "gating", "meta": {"a": [1, 2]}},
        "WebhookDelivery": {
            "delivery_id": "evt_x",
            "event_type": "deployment.succeeded",
            "payload": {"b": 1},
        },
        "ReleaseEvent": {"reason": "why", "from_state": "received", "to_state": "gating"},
    }[model]
    maker = RowMaker(cls, shared, skip=skip)
    now = timezone.now()
    made = maker.values(now, given)
    _, _, expected = insert_values(cls(**shared, **given), skip)
    fields = [f for f in cls._meta.concrete_fields if not f.primary_key and f.name != skip]
    assert len(made) == len(expected) == len(fields)
    for f, mine, theirs in zip(fields, made, expected, strict=True):
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) or f.default is timezone.now:
            assert mine == now, f.name  # the row's own time
        elif f.get_internal_type() == "JSONField" and theirs is not None:
            assert (mine.obj, type(mine)) == (theirs.obj, type(theirs)), f.name
        else:
            assert (mine, type(mine)) == (theirs, type(theirs)), f.name
    # A mutable default is a new one per row, not the prototype's.
    again = maker.values(now, given)
    for f, one, two in zip(fields, made, again, strict=True):
        if f.get_internal_type() == "JSONField" and one is not None and f.name not in {*given, *shared}:
            assert one.obj is not two.obj, f.name
    if model == "Release":  # created_at is auto_now_add: the save's time, never given
        with pytest.raises(ValueError):
            maker.values(now, {"created_at": now})
