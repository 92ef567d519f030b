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
