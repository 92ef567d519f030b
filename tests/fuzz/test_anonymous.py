"""Nobody logged in sees nothing: every admin page redirects to the login, every REST route is a
401/403, whatever the method, and nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Incident, Release, WebhookDelivery
from tests.factories import make_project, make_release
from tests.fuzz.support import table_digest

pytestmark = pytest.mark.django_db
S = ReleaseState
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
SLO_TOKEN = "anon-slo-token-1b2c"


@pytest.fixture
def release(settings: Any) -> Release:
    settings.SLO_AUTH_TOKEN = SLO_TOKEN
    project = make_project()
    release = make_release(
        project, state=S.GATING, deployment_id="dpl_secretive000000000000", version="v-hidden"
    )
    Action.objects.create(release=release, kind="promote", key=f"promote:{release.pk}")
    Incident.objects.create(project=project, release=release, sentry_id="4242", title="t")
    WebhookDelivery.objects.create(
        source="vercel", delivery_id="evt_x", event_type="deployment.succeeded", outcome="accepted"
    )
    return release


def admin_paths() -> list[str]:
    """Every registered model's changelist, add, change, delete and history pages, plus the index."""
    paths = ["/admin/", "/admin/password_change/", "/admin/releases/", "/admin/auth/"]
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        pk = model.objects.order_by("pk").values_list("pk", flat=True).first() or 1
        paths += [base, f"{base}add/", f"{base}{pk}/change/", f"{base}{pk}/delete/", f"{base}{pk}/history/"]
    return paths


def api_paths(release: Release) -> list[str]:
    """Every route under /api/, with the release's id where a route takes one."""
    found: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/"):
                found.append(route)

    walk(get_resolver().url_patterns, "")
    paths = set()
    for route in found:
        path = route.replace("(?P<pk>[^/.]+)", str(release.pk)).replace("^", "").replace("$", "")
        path = path.replace("\\.(?P<format>[a-z0-9]+)/?", ".json").replace("(?P<format>[a-z0-9]+)", "json")
        if "(" not in path and "<" not in path:
            paths.add("/" + path)
    return sorted(paths)


def test_every_admin_page_sends_an_anonymous_visitor_to_the_login(client: Client, release: Release) -> None:
    before = table_digest()
    for path in admin_paths():
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 302, (method, path, response.status_code)
            assert response["Location"].startswith("/admin/login/"), (method, path)
    # The admin's bulk actions, as a form post would send them.
    response = client.post(
        "/admin/releases/release/", {"action": "approve", "_selected_action": [release.pk]}
    )
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert table_digest() == before


def test_the_login_page_shows_no_data(client: Client, release: Release) -> None:
    html = client.get("/admin/login/").content.decode()
    assert release.deployment_id not in html and "v-hidden" not in html


def test_every_rest_route_refuses_an_anonymous_caller_whatever_the_method(
    client: Client, release: Release
) -> None:
    paths = api_paths(release)
    expected = {"/api/", "/api/schema/", "/api/slo/", "/api/releases/", f"/api/releases/{release.pk}/"}
    assert expected | {f"/api/releases/{release.pk}/{name}/" for name in ("approve", "extend")} <= set(paths)
    before = table_digest()
    for path in paths:
        for method in METHODS:
            for headers in (
                {},
                {"HTTP_AUTHORIZATION": "Token " + "f" * 40},
                {"HTTP_AUTHORIZATION": "Bearer nope"},
            ):
                response = getattr(client, method)(path, **headers)
                # 405 only from /api/slo/, which takes GET alone: it answers before asking who you are.
                allowed = (401, 403, 405) if path.startswith("/api/slo/") else (401, 403)
                assert response.status_code in allowed, (method, path, headers, response.status_code)
                assert release.deployment_id.encode() not in response.content, (method, path)
    assert table_digest() == before


def test_a_session_without_staff_rights_does_not_get_into_the_admin(client: Client, release: Release) -> None:
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("visitor"))
    response = client.get("/admin/releases/release/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert (
        release.deployment_id.encode()
        not in client.get(f"/admin/releases/release/{release.pk}/change/").content
    )
