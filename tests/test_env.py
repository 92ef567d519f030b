"""DATABASE_URL into Django's DATABASES entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gatekeeper.env import database_from_url

BASE = Path("/srv/gatekeeper")


def test_postgres_url_with_the_defaults() -> None:
    db = database_from_url("postgres://gk:s%40cret@db.internal:6543/gatekeeper", BASE)
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "gatekeeper",
        "gk",
        "s@cret",
        "db.internal",
        "6543",
    )
    # psycopg's own defaults, but a connection attempt to an unreachable host gives up in seconds.
    assert db["OPTIONS"] == {"connect_timeout": "5"}
    assert db["CONN_HEALTH_CHECKS"] is True


@pytest.mark.parametrize(("given", "expected"), [("none", None), ("None", None), ("0", 0), ("10", 10)])
def test_prepared_statements_can_be_tuned_or_turned_off_for_poolers(given: str, expected: int | None) -> None:
    db = database_from_url(f"postgres://gk@db/gatekeeper?prepare_threshold={given}&sslmode=require", BASE)
    assert db["OPTIONS"]["prepare_threshold"] == expected
    assert db["OPTIONS"]["sslmode"] == "require"


def test_the_url_may_set_its_own_connect_timeout() -> None:
    db = database_from_url("postgres://gk@db/gatekeeper?connect_timeout=20", BASE)
    assert db["OPTIONS"]["connect_timeout"] == "20"


def test_a_bad_prepare_threshold_is_refused_with_its_name() -> None:
    with pytest.raises(ImproperlyConfigured, match="prepare_threshold"):
        database_from_url("postgres://gk@db/gatekeeper?prepare_threshold=lots", BASE)
