"""sync_config, the admin and the first poll against the vendors, here the simulator answering as
they do: the Sentry project users write (a slug) resolved to the numeric id Sentry's data
endpoints take, and Vercel's Rolling Releases setting reported where it changes what a promote does."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.test import Client

from releases.models import Project
from releases.workflows import sentry_project
from tests.conftest import Simulator
from tests.factories import make_project

ENTRY = {
    "name": "shop-web",
    "vercel": {"project_id": "prj_shop"},
    "sentry": {"org": "acme", "project": "shop-web"},
}


@pytest.fixture
def sentry(module_simulator: Simulator, settings: Any) -> Simulator:
    module_simulator.control("POST", "/reset")
    module_simulator.control("POST", "/sentry/projects", json={"org": "acme", "slug": "shop-web", "id": 4507})
    settings.SENTRY_API_URL = f"{module_simulator.url}/sentry/api/0"
    settings.VERCEL_API_URL = f"{module_simulator.url}/vercel"
    return module_simulator


def sync(tmp_path: Path, *entries: dict[str, Any]) -> tuple[list[str], str]:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump({"projects": list(entries)}))
    out, err = StringIO(), StringIO()
    call_command("sync_config", str(path), stdout=out, stderr=err)
    return out.getvalue().splitlines(), err.getvalue()


def entry(project: str = "shop-web", org: str = "acme") -> dict[str, Any]:
    return {**ENTRY, "sentry": {"org": org, "project": project}}


@pytest.mark.django_db
def test_sync_stores_the_id_and_slug_sentry_gives(sentry: Simulator, tmp_path: Path) -> None:
    assert sync(tmp_path, entry())[0] == ["created shop-web"]

    project = Project.objects.get()
    assert (project.sentry_project, project.sentry_project_id, project.sentry_project_slug) == (
        "shop-web",
        4507,
        "shop-web",
    )
    assert project.sentry_resolved_at is not None


@pytest.mark.django_db
def test_a_numeric_id_in_the_config_is_resolved_to_its_slug_for_alerts(
    sentry: Simulator, tmp_path: Path
) -> None:
    sync(tmp_path, entry("4507"))

    project = Project.objects.get()
    assert (project.sentry_project_id, project.sentry_project_slug) == (4507, "shop-web")


@pytest.mark.django_db
@pytest.mark.parametrize(("org", "project"), [("acme", "shop-wbe"), ("acne", "shop-web")])
def test_a_project_sentry_does_not_know_is_refused_naming_the_field(
    sentry: Simulator, tmp_path: Path, org: str, project: str
) -> None:
    with pytest.raises(CommandError) as refused:
        sync(tmp_path, entry(project, org))

    message = str(refused.value)
    assert "projects[0].sentry.project: Sentry has no project" in message
    assert repr(project) in message and "nothing changed" in message
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_a_token_without_project_read_is_refused_with_the_scope_to_add(
    sentry: Simulator, tmp_path: Path
) -> None:
    sentry.control("POST", "/sentry/scopes", json={"scopes": ["org:read"]})

    with pytest.raises(CommandError, match=r"projects\[0\]\.sentry\.project: .*project:read"):
        sync(tmp_path, entry())


@pytest.mark.django_db
def test_a_project_renamed_in_sentry_is_re_resolved_on_the_next_sync(
    sentry: Simulator, tmp_path: Path
) -> None:
    sync(tmp_path, entry())
    sentry.control("POST", "/sentry/projects", json={"org": "acme", "slug": "storefront", "id": 4507})

    lines, notes = sync(tmp_path, entry())

    project = Project.objects.get()
    assert (project.sentry_project_id, project.sentry_project_slug) == (4507, "storefront")
    assert lines == ["updated shop-web: sentry_project_slug: 'shop-web' -> 'storefront'"]
    assert "'shop-web' was renamed 'storefront': update the config" in notes


@pytest.mark.django_db
def test_with_sentry_unreachable_the_file_applies_and_the_first_poll_resolves(
    sentry: Simulator, tmp_path: Path, settings: Any
) -> None:
    settings.SENTRY_API_URL = "http://127.0.0.1:9/api/0"  # nothing listens on the discard port

    lines, notes = sync(tmp_path, entry())

    assert lines == ["created shop-web"]
    assert "not checked, Sentry could not be asked" in notes
    project = Project.objects.get()
    assert project.sentry_project_id is None

    settings.SENTRY_API_URL = f"{sentry.url}/sentry/api/0"
    assert sentry_project.query_id(project) == "4507"
    assert sentry_project.query_id(project) == "4507"
    assert Project.objects.get().sentry_project_id == 4507
    assert len(sentry.requests("sentry", path_contains="/projects/")) == 1  # resolved once, then stored


@pytest.mark.django_db
def test_check_asks_sentry_too_and_offline_does_not(sentry: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump({"projects": [entry("nope")]}))

    with pytest.raises(CommandError, match="Sentry has no project 'nope'"):
        call_command("sync_config", str(path), "--check", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("sync_config", str(path), "--check", "--offline", stdout=out, stderr=StringIO())
    assert "valid, 1 project(s)" in out.getvalue()


@pytest.mark.django_db
def test_the_admin_refuses_a_project_sentry_does_not_know_on_its_field(
    sentry: Simulator, admin_client: Client
) -> None:
    project = make_project(sentry_project_id=None, sentry_project_slug="")
    url = f"/admin/releases/project/{project.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list | dict)}
    data.update(
        production_domains='["shop.example.com"]', gate_checks="[]", canary="null", sentry_project="shop-wbe"
    )
    data = {
        k: (str(v) if not isinstance(v, bool) else ("on" if v else "")) for k, v in data.items() if v != ""
    }

    refused = admin_client.post(url, data)

    assert refused.status_code == 200  # the form again, with the error
    errors = refused.context["adminform"].form.errors
    assert "Sentry has no project 'shop-wbe'" in errors["sentry_project"][0]
    assert Project.objects.get().sentry_project == "shop-web"

    data["sentry_project"] = "shop-web"
    saved = admin_client.post(url, data)

    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else ""
    assert (Project.objects.get().sentry_project_id, Project.objects.get().sentry_project_slug) == (
        4507,
        "shop-web",
    )


# --- Vercel's Rolling Releases setting ---------------------------------------------------------


def vercel_project(module_simulator: Simulator, stages: list[int] | None) -> None:
    module_simulator.control(
        "POST", "/vercel/projects", json={"id": "prj_shop", "name": "shop-web", "domains": []}
    )
    if stages is not None:
        module_simulator.control(
            "PATCH", "/vercel/projects/prj_shop", json={"rolling_release": {"stages": stages}}
        )


@pytest.mark.django_db
def test_rolling_releases_in_vercel_without_a_canary_section_are_reported(
    sentry: Simulator, tmp_path: Path
) -> None:
    vercel_project(sentry, [10, 100])

    lines, notes = sync(tmp_path, entry())

    assert lines == ["created shop-web"]
    assert "has Rolling Releases configured (10%, 100%)" in notes
    assert (
        "projects[0] has no canary: section" in notes and "completes it as soon as the gate passes" in notes
    )


@pytest.mark.django_db
def test_a_vercel_canary_whose_stages_differ_from_vercels_is_reported(
    sentry: Simulator, tmp_path: Path
) -> None:
    vercel_project(sentry, [10, 100])
    canary = {
        "router": "vercel",
        "stages": [{"percent": 5}, {"percent": 100}],
        "checks": [{"kind": "sentry_error_rate", "max": 0.01}],
    }

    _, notes = sync(tmp_path, {**entry(), "canary": canary})

    assert (
        "projects[0].canary.stages (5%, 100%) differ from Vercel's Rolling Releases stages (10%, 100%)"
        in notes
    )


@pytest.mark.django_db
def test_without_rolling_releases_nothing_is_said(sentry: Simulator, tmp_path: Path) -> None:
    vercel_project(sentry, None)

    assert sync(tmp_path, entry()) == (["created shop-web"], "")


@pytest.mark.django_db
def test_a_vercel_project_the_token_cannot_see_is_reported(sentry: Simulator, tmp_path: Path) -> None:
    _, notes = sync(tmp_path, entry())

    assert "projects[0].vercel.project_id: Vercel has no project prj_shop that VERCEL_TOKEN can see" in notes
