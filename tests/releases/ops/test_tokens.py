"""REST API tokens: hashed at rest, shown once, refused when wrong, revoked, expired or orphaned."""

from __future__ import annotations

import hashlib
import importlib
import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command, get_commands
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from releases.models import ApiToken
from tests.factories import make_token

pytestmark = pytest.mark.django_db

RELEASES = "/api/releases/"
ADMIN = "/admin/releases/apitoken/"
migration = importlib.import_module("releases.migrations.0013_api_tokens")


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


def calling(key: str, keyword: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {key}")
    return client


def issued_by_command(*args: str) -> tuple[str, str]:
    out = StringIO()
    call_command("drf_create_token", *args, stdout=out)
    printed = out.getvalue()
    found = re.search(r"Generated token ([0-9a-f]+) for user ", printed)
    assert found, printed
    return found.group(1), printed


def every_table_as_text() -> str:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        texts = []
        for name in tables:
            cursor.execute(f"SELECT coalesce(string_agg(t::text, '|'), '') FROM {quote(name)} t")  # noqa: S608
            texts.append(cursor.fetchone()[0])
    return "\n".join(texts)


# --- issuing ------------------------------------------------------------------------------------


def test_drf_create_token_prints_the_key_once_and_stores_only_its_digest(alice: User) -> None:
    key, printed = issued_by_command("alice", "--name", "deploy bot")

    assert printed.count(key) == 1
    assert "will not be shown again" in printed
    assert len(key) == 40  # 160 random bits, in hex
    token = ApiToken.objects.get(user=alice)
    assert token.name == "deploy bot"
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:8]
    assert all(key not in str(getattr(token, f.attname)) for f in ApiToken._meta.concrete_fields)


def test_no_table_holds_the_key(alice: User) -> None:
    key, _ = issued_by_command("alice")
    admin_key = make_token(alice, name="second")

    stored = every_table_as_text()

    assert key[:8] in stored  # the prefix is, so this reading does see the token rows
    assert key not in stored and admin_key not in stored


def test_each_run_adds_a_token_and_reset_revokes_the_users_others(alice: User) -> None:
    bob = User.objects.create_user("bob")
    bobs = make_token(bob)
    first, _ = issued_by_command("alice")
    second, _ = issued_by_command("alice")
    assert calling(first).get(RELEASES).status_code == 200

    third, _ = issued_by_command("alice", "--reset")

    assert calling(first).get(RELEASES).status_code == 401
    assert calling(second).get(RELEASES).status_code == 401
    assert calling(third).get(RELEASES).status_code == 200
    assert calling(bobs).get(RELEASES).status_code == 200
    assert ApiToken.objects.filter(user=alice, revoked_at__isnull=True).count() == 1


def test_an_unknown_user_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="'nobody': no such user"):
        call_command("drf_create_token", "nobody", stdout=StringIO())
    assert not ApiToken.objects.exists()


def test_an_inactive_user_gets_no_token() -> None:
    User.objects.create_user("gone", is_active=False)

    with pytest.raises(CommandError, match="inactive"):
        call_command("drf_create_token", "gone", stdout=StringIO())
    assert not ApiToken.objects.exists()


# --- authenticating -----------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["Token", "token", "Bearer"])
def test_the_token_and_bearer_headers_authenticate(alice: User, keyword: str) -> None:
    response = calling(make_token(alice), keyword).get(RELEASES)

    assert response.status_code == 200
    assert response.json()["results"] == []  # alice operates no project


def test_a_key_with_the_right_prefix_and_a_wrong_rest_is_refused(alice: User) -> None:
    key = make_token(alice)
    wrong = key[:8] + ("0" if key[8] != "0" else "1") + key[9:]

    response = calling(wrong).get(RELEASES)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"revoked_at": timezone.now() - timedelta(seconds=1)}, "Invalid token."),
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "Invalid token."),
    ],
    ids=["revoked", "expired"],
)
def test_a_revoked_or_expired_token_is_refused(alice: User, overrides: dict[str, Any], detail: str) -> None:
    response = calling(make_token(alice, **overrides)).get(RELEASES)

    assert response.status_code == 401
    assert response.json() == {"detail": detail}


def test_a_token_not_yet_expired_is_accepted(alice: User) -> None:
    key = make_token(alice, expires_at=timezone.now() + timedelta(days=1))

    assert calling(key).get(RELEASES).status_code == 200


def test_the_token_of_an_inactive_user_is_refused(alice: User) -> None:
    key = make_token(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)

    response = calling(key).get(RELEASES)

    assert response.status_code == 401
    assert response.json() == {"detail": "User inactive or deleted."}


@pytest.mark.parametrize("header", ["Token", "Token a b", "Bearer \u00e9t\u00e9"])
def test_a_malformed_header_is_a_401(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert client.get(RELEASES).status_code == 401


def test_last_use_is_written_at_most_once_a_minute(alice: User) -> None:
    key = make_token(alice)
    client = calling(key)
    start = timezone.now()

    def updates_during_a_request() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(RELEASES).status_code == 200
        return sum(q["sql"].startswith("UPDATE") for q in queries.captured_queries)

    with time_machine.travel(start, tick=False) as clock:
        assert updates_during_a_request() == 1
        first = ApiToken.objects.get(user=alice).last_used_at
        assert first == start
        clock.shift(timedelta(seconds=59))
        assert updates_during_a_request() == 0
        assert ApiToken.objects.get(user=alice).last_used_at == first
        clock.shift(timedelta(seconds=2))
        assert updates_during_a_request() == 1
        assert ApiToken.objects.get(user=alice).last_used_at == start + timedelta(seconds=61)


def test_the_schema_documents_the_token_header() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)

    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert {"tokenAuth": []} in schema["paths"]["/api/releases/"]["get"]["security"]


# --- the admin ----------------------------------------------------------------------------------


@pytest.fixture
def superuser(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("carol", "carol@example.com", None))
    return client


@pytest.fixture
def staff_user() -> User:
    user = User.objects.create_user("dave", is_staff=True)
    for action in ("view", "add", "change", "delete"):
        user.user_permissions.add(Permission.objects.get(codename=f"{action}_apitoken"))
    return user


@pytest.fixture
def staff(staff_user: User) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize("who", ["superuser", "staff"])
def test_the_admin_pages_never_show_a_key_or_digest(
    who: str, request: pytest.FixtureRequest, staff_user: User
) -> None:
    client: Client = request.getfixturevalue(who)
    key = make_token(staff_user, name="ci")
    token = ApiToken.objects.get(user=staff_user)

    pages = [client.get(path) for path in (ADMIN, f"{ADMIN}{token.pk}/change/", f"{ADMIN}{token.pk}/delete/")]

    for page in pages:
        assert page.status_code == 200
        body = page.content.decode()
        assert token.prefix in body
        assert key not in body and token.digest not in body


def test_adding_a_token_in_the_admin_shows_its_key_once(superuser: Client, alice: User) -> None:
    added = superuser.post(f"{ADMIN}add/", {"user": alice.pk, "name": "laptop"}, follow=True)

    assert added.status_code == 200
    shown = [m.message for m in added.context["messages"] if "will not be shown again" in m.message]
    assert len(shown) == 1
    key = re.search(r" is ([0-9a-f]{40}) ", shown[0]).group(1)  # type: ignore[union-attr]
    token = ApiToken.objects.get(user=alice)
    assert token.name == "laptop" and token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert calling(key).get(RELEASES).status_code == 200
    assert key not in superuser.get(f"{ADMIN}{token.pk}/change/").content.decode()
    assert key not in superuser.get(ADMIN).content.decode()


def test_a_staff_user_sees_only_their_own_tokens_and_issues_only_for_themselves(
    staff: Client, staff_user: User, alice: User
) -> None:
    make_token(staff_user, name="mine")
    theirs = ApiToken.objects.get(pk=ApiToken.objects.get(name="mine").pk)
    make_token(alice, name="alices")
    alices = ApiToken.objects.get(name="alices")

    listing = staff.get(ADMIN).content.decode()
    assert theirs.prefix in listing and alices.prefix not in listing
    assert staff.get(f"{ADMIN}{alices.pk}/change/").status_code == 302  # "does not exist" redirect

    staff.post(f"{ADMIN}add/", {"user": alice.pk, "name": "sneaky"})
    assert ApiToken.objects.get(name="sneaky").user == staff_user


def test_the_revoke_action_revokes_and_refuses_the_token(superuser: Client, alice: User) -> None:
    key = make_token(alice)
    token = ApiToken.objects.get(user=alice)

    superuser.post(ADMIN, {"action": "revoke", "_selected_action": [token.pk], "index": 0})

    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert calling(key).get(RELEASES).status_code == 401


def test_a_staff_user_cannot_revoke_someone_elses_token(staff: Client, alice: User) -> None:
    make_token(alice)
    token = ApiToken.objects.get(user=alice)

    staff.post(ADMIN, {"action": "revoke", "_selected_action": [token.pk], "index": 0})

    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


# --- carrying DRF's authtoken keys over ---------------------------------------------------------


def carry_over() -> None:
    state = MigrationLoader(connection).project_state(("releases", "0013_api_tokens"))
    with connection.schema_editor() as editor:
        migration.carry_over_authtoken_keys(state.apps, editor)


def test_keys_in_drfs_authtoken_table_keep_working(alice: User) -> None:
    old_key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # the shape DRF issued: 40 hex characters
    created = timezone.now() - timedelta(days=30)
    with connection.cursor() as cursor:
        # DRF's authtoken_token as its migrations leave it; inside the test's transaction, so it
        # is gone afterwards.
        cursor.execute(
            'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, "created" timestamptz NOT NULL,'
            ' "user_id" integer NOT NULL UNIQUE)'
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [old_key, created, alice.pk])

    carry_over()
    carry_over()  # a second run finds the key carried already

    token = ApiToken.objects.get(user=alice)
    assert (token.prefix, token.created_at) == (old_key[:8], created)
    assert token.digest == hashlib.sha256(old_key.encode()).hexdigest()
    assert calling(old_key).get(RELEASES).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 1  # DRF's table is left as it was


def test_carrying_over_is_a_no_op_without_drfs_table(alice: User) -> None:
    assert "authtoken_token" not in connection.introspection.table_names()

    carry_over()

    assert not ApiToken.objects.exists()


def test_drf_create_token_is_ours_not_drfs() -> None:
    assert get_commands()["drf_create_token"] == "releases"
