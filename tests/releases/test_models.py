"""Model-level rules the admin relies on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from releases.models import Project, ReleaseEvent
from tests.factories import make_project, make_release

pytestmark = pytest.mark.django_db


def test_a_sound_project_passes_full_clean() -> None:
    make_project().full_clean()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"crash_free_threshold": 1.5}, "crash_free_threshold"),
        ({"min_sessions": 0}, "min_sessions"),
        ({"poll_interval": timedelta(hours=3)}, "max_wait"),
        ({"release_template": "{meta.__class__}"}, "release_template"),
        ({"early_fail_confidence": 1.5}, "early_fail_confidence"),
    ],
)
def test_the_admin_refuses_a_policy_the_config_file_would_refuse(
    changes: dict[str, object], field: str
) -> None:
    project = make_project()
    for name, value in changes.items():
        setattr(project, name, value)
    with pytest.raises(ValidationError) as refused:
        project.full_clean()
    assert field in refused.value.message_dict


def test_an_invalid_on_timeout_is_a_field_error_not_a_crash() -> None:
    project = make_project()
    project.on_timeout = "maybe"
    with pytest.raises(ValidationError) as refused:
        project.full_clean()
    assert "on_timeout" in refused.value.message_dict


def test_history_rows_cannot_be_rewritten() -> None:
    release = make_release(make_project())
    event = ReleaseEvent.objects.create(release=release, kind="note", actor="gatekeeper", reason="x")
    event.reason = "rewritten"
    with pytest.raises(ValidationError):
        event.save()
    assert ReleaseEvent.objects.get(pk=event.pk).reason == "x"
    assert Project.objects.count() == 1
