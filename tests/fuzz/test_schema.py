"""schemathesis against /api/schema/: every operation, as a staff token and as nobody.

With a token: no 5xx, and every answer matches the schema (status code, content type, headers,
body). Anonymous (no credentials at all, which also refuses /api/slo/ with its token set and the
unsigned webhooks): 401 or 403 everywhere. A refused request changes no row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from releases.domain.lifecycle import ReleaseState
from tests.factories import gating_release, make_project, make_release, make_token
from tests.fuzz.support import TALLY, changed_tables, fuzz_settings, table_digest

S = ReleaseState
SLO_TOKEN = "fuzz-slo-token-7d1f"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    TALLY.write()


pytestmark = pytest.mark.django_db


@pytest.fixture
def releases(db: Any, settings: Any, no_broker: list[Any]) -> list[int]:
    """Releases in the states the overrides act on; the generated ids are steered to them half the time."""
    settings.SLO_AUTH_TOKEN = SLO_TOKEN
    project = make_project()
    now = timezone.now()
    made = [
        gating_release(project),
        make_release(project, state=S.HELD),
        make_release(project, state=S.PROMOTED, promoted_at=now),
    ]
    return [r.pk for r in made]


@pytest.fixture
def staff_token(db: Any) -> str:
    user = User.objects.create_user("schema-staff", is_staff=True)
    return make_token(user)


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """The WSGI app closes "old" connections around each request, as Django's test client would
    not: inside the test's transaction that would close the connection holding it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


APP = get_wsgi_application()
# The operations, known at collection without a request; each test then loads the schema the
# running app serves at /api/schema/ (which needs a login) and takes the operation from there.
LABELS = sorted(
    f"{method.upper()} {path}"
    for path, operations in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
    for method in operations
)


@pytest.fixture
def api_schema(staff_token: str) -> Any:
    return schemathesis.openapi.from_wsgi(
        "/api/schema/", APP, headers={"Authorization": f"Token {staff_token}"}
    )


def cases(api_schema: Any, label: str) -> st.SearchStrategy[Any]:
    """Valid requests and requests that break the schema on purpose (schemathesis' negative mode)."""
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )


def _steer(case: Any, releases: list[int]) -> None:
    if case.path_parameters and "id" in case.path_parameters:
        pick = hash(repr(case.path_parameters["id"]))
        if pick % 2 == 0:
            case.path_parameters["id"] = releases[pick % len(releases)]


@pytest.mark.parametrize("label", LABELS)
@fuzz_settings(share=0.5)
@given(data=st.data())
def test_the_api_conforms_to_its_schema_for_staff(
    label: str, data: st.DataObject, releases: list[int], staff_token: str, api_schema: Any
) -> None:
    case = data.draw(cases(api_schema, label))
    _steer(case, releases)
    headers = {"Authorization": f"Token {staff_token}"}
    if label.startswith("GET /api/slo/"):
        headers = {"Authorization": f"Bearer {SLO_TOKEN}"}
    before = table_digest()
    response = case.call(app=APP, headers=headers)
    changed = changed_tables(before, table_digest())
    refused = response.status_code >= 400
    TALLY.record(
        f"{label} (schemathesis, staff)", response.status_code, refused_changed=refused and bool(changed)
    )
    case.validate_response(response, checks=CHECKS)
    assert not (refused and changed), f"answered {response.status_code} and changed {changed}"


@pytest.mark.parametrize("label", LABELS)
@fuzz_settings(share=0.25)
@given(data=st.data())
def test_the_api_refuses_anonymous_callers_everywhere(
    label: str, data: st.DataObject, releases: list[int], api_schema: Any
) -> None:
    case = data.draw(cases(api_schema, label))
    _steer(case, releases)
    if case.headers:
        case.headers.pop("Authorization", None)
    before = table_digest()
    response = case.call(app=APP)
    changed = changed_tables(before, table_digest())
    TALLY.record(f"{label} (schemathesis, anonymous)", response.status_code, refused_changed=bool(changed))
    case.validate_response(response, checks=[not_a_server_error])
    # A 404 comes only where no route matched, or for an unknown ?format= / .suffix, which DRF
    # checks before anyone is asked who they are: it shows nothing.
    assert response.status_code in (401, 403, 404), (label, response.status_code, response.text[:200])
    if response.status_code == 404:
        assert response.json() == {"detail": "Not found."}
    assert not changed, f"an anonymous {label} changed {changed}"
