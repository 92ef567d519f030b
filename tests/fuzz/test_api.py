"""Property: the REST API never answers 5xx, never shows an anonymous caller anything, and a
refused request (4xx, or no valid credentials) changes no row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from releases.domain.lifecycle import ReleaseState
from tests.factories import gating_release, make_project, make_release, make_token
from tests.fuzz import strategies as hs
from tests.fuzz.support import TALLY, changed_tables, fuzz_settings, table_digest

pytestmark = pytest.mark.django_db
S = ReleaseState
TARGET = "REST API (hypothesis)"
SLO_TOKEN = "fuzz-slo-token-0c5e"
ACTIONS = ["approve", "reject", "pause", "resume", "extend", "destroy", ""]
AUTHS = [
    "token",
    "token",
    "session",
    "none",
    "bad_token",
    "malformed",
    "bearer",
    "bad_bearer",
    "basic",
    "slo",
]
# "bearer" is the API token under the Bearer keyword, which authenticates as "Token" does.
ANONYMOUS = {"none", "bad_token", "malformed", "bad_bearer", "basic", "slo"}
IDS = st.one_of(
    st.sampled_from(["1", "0", "-1", str(2**63), str(10**30), "abc", "1.5", "%00", "%C3%A9", "1e3", " 1"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


@dataclass
class Scene:
    client: Client
    token: str
    ids: list[int]
    deployments: list[str]


@pytest.fixture(scope="module", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    TALLY.write()


@pytest.fixture
def scene(settings: Any, no_broker: list[Any]) -> Scene:
    settings.SLO_AUTH_TOKEN = SLO_TOKEN  # unset, /api/slo/ is open by design (README)
    project = make_project()
    now = timezone.now()
    releases = [
        gating_release(project),
        make_release(project, state=S.HELD),
        make_release(project, state=S.FAILED),
        make_release(project, state=S.PROMOTED, promoted_at=now),
        make_release(project, state=S.SUPERSEDED, promoted_at=now),
    ]
    user = User.objects.create_user("fuzz-staff", password="fuzz-password-1", is_staff=True)
    client = Client(raise_request_exception=False)
    return Scene(
        client,
        make_token(user),
        [r.pk for r in releases],
        [r.deployment_id for r in releases],
    )


@st.composite
def api_request(draw: st.DrawFn, ids: list[int]) -> dict[str, Any]:
    release = draw(st.one_of(st.sampled_from([str(i) for i in ids]), IDS))
    action = draw(st.sampled_from(ACTIONS))
    path = draw(
        st.sampled_from(
            [
                "/api/",
                "/api/releases/",
                f"/api/releases/{release}/",
                f"/api/releases/{release}/{action}/" if action else f"/api/releases/{release}/",
                "/api/slo/",
            ]
        )
    )
    query = draw(
        st.dictionaries(
            st.sampled_from(["project", "state", "deployment", "limit", "offset", "format", "x"]),
            st.one_of(hs.NASTY_TEXT, hs.NASTY_NUMBER.map(str), st.text(max_size=20), IDS),
            max_size=3,
        )
    )
    body_kind = draw(st.sampled_from(["json", "json", "bytes", "form", "none"]))
    document = draw(
        st.one_of(
            st.fixed_dictionaries(
                {}, optional={"note": hs.SCALAR, "by": st.one_of(hs.SCALAR, st.just("30m"))}
            ),
            hs.JSON_VALUE,
        )
    )
    body: bytes = {
        "json": lambda: hs.encode(document, "plain"),
        "bytes": lambda: draw(hs.RANDOM_BODY),
        "form": lambda: urlencode({"note": str(document)[:100], "by": "1h"}, errors="surrogatepass").encode(),
        "none": lambda: b"",
    }[body_kind]()
    content_type = {"json": "application/json", "form": "application/x-www-form-urlencoded"}.get(
        body_kind, draw(hs.CONTENT_TYPES)
    )
    return {
        "method": draw(
            st.sampled_from(["GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        ),
        "path": path + ("?" + urlencode(query, errors="surrogatepass") if query else ""),
        "body": body,
        "content_type": content_type,
        "auth": draw(st.sampled_from(AUTHS)),
    }


def credentials(scene: Scene, auth: str) -> dict[str, str]:
    if auth == "session":
        scene.client.force_login(User.objects.get(username="fuzz-staff"))
        return {}
    scene.client.logout()
    return {
        "token": {"HTTP_AUTHORIZATION": f"Token {scene.token}"},
        "bad_token": {"HTTP_AUTHORIZATION": "Token " + "0" * 40},
        "malformed": {"HTTP_AUTHORIZATION": "Token a b c"},
        "bearer": {"HTTP_AUTHORIZATION": f"Bearer {scene.token}"},
        "bad_bearer": {"HTTP_AUTHORIZATION": "Bearer " + "0" * 40},
        "basic": {"HTTP_AUTHORIZATION": "Basic ZnV6ei1zdGFmZjpmdXp6LXBhc3N3b3JkLTE="},  # a real password
        "slo": {"HTTP_AUTHORIZATION": f"Bearer {SLO_TOKEN}"},  # the SLO token is not an API credential
    }.get(auth, {})


@fuzz_settings()
@given(data=st.data())
def test_rest_api_never_fails_shows_nothing_anonymously_and_refusals_change_nothing(
    scene: Scene, data: st.DataObject
) -> None:
    request = data.draw(api_request(scene.ids))
    headers = credentials(scene, request["auth"])
    before = table_digest()
    response = scene.client.generic(
        request["method"],
        request["path"],
        data=request["body"],
        content_type=request["content_type"],
        **headers,
    )
    changed = changed_tables(before, table_digest())
    anonymous = request["auth"] in ANONYMOUS and not (
        request["auth"] == "slo" and request["path"].startswith("/api/slo/")
    )
    refused = anonymous or response.status_code >= 400
    TALLY.record(TARGET, response.status_code, refused_changed=refused and bool(changed))
    assert response.status_code < 500, response.content[:300]
    assert not (refused and changed), f"{request} answered {response.status_code} and changed {changed}"
    if anonymous:
        # 404 where no route matched and 405 for a method /api/slo/ lacks: both come before anyone
        # is asked who they are, and show nothing.
        assert response.status_code in (401, 403, 404, 405), (request, response.status_code)
        text = response.content.decode("utf-8", "replace")
        assert not any(deployment in text for deployment in scene.deployments)
