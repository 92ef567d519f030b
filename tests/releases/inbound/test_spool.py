"""The spool's files: what a webhook keeps while PostgreSQL is unreachable, and how the replayer
claims it without losing, duplicating or half-reading a line; and the 503 the webhooks answer."""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, ProgrammingError
from django.test import Client

from releases.inbound import sentry, spool, vercel
from releases.inbound.spool import Inbound
from tests.factories import deployment_event, signed
from tests.releases.inbound.test_sentry import alert, post


def inbound(n: int = 0, **overrides: Any) -> Inbound:
    values: dict[str, Any] = {
        "source": "sentry",
        "body": b'{"n": %d, "text": "caf\xc3\xa9\\n"}' % n,
        "headers": {"sentry-hook-resource": "installation", "sentry-hook-signature": "ab" * 32},
    }
    return Inbound(**{**values, **overrides})


def take_all() -> list[Inbound]:
    """What a replayer finds, and then removes as if it had handled it all."""
    with spool.claimed() as files:
        records = [r for f in files for r in f.records]
        for f in files:
            f.done.update(r.id for r in f.records)
            f.finish()
    return records


def spool_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def test_a_kept_delivery_reads_back_byte_for_byte_with_its_headers_and_arrival(settings: Any) -> None:
    record = inbound(received_at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))

    path = spool.keep(record)

    assert path == Path(settings.SPOOL_DIR) / f"{socket.gethostname()}-{os.getpid()}.jsonl"
    assert path.read_bytes().count(b"\n") == 1
    assert take_all() == [record]
    assert spool_files(Path(settings.SPOOL_DIR)) == []


def test_the_replayer_claims_by_renaming_so_a_later_delivery_starts_a_new_file(settings: Any) -> None:
    first, second = inbound(1), inbound(2)
    spool.keep(first)
    with spool.claimed() as files:
        spool.keep(second)  # meanwhile, on the web
        assert [r.id for f in files for r in f.records] == [first.id]
        assert [f.path.suffix for f in files] == [".claimed"]
        files[0].done.add(first.id)
        files[0].finish()
    assert [p.endswith(".jsonl") for p in spool_files(Path(settings.SPOOL_DIR))] == [True]
    assert take_all() == [second]


def _write_many(folder: str, prefix: str, count: int) -> None:
    from django.conf import settings

    settings.SPOOL_DIR = folder
    for n in range(count):
        spool.keep(inbound(n, id=f"{prefix}-{n}"))


def test_writers_in_threads_and_processes_while_a_replayer_rotates_lose_and_duplicate_nothing(
    settings: Any,
) -> None:
    folder = str(settings.SPOOL_DIR)
    threads = [threading.Thread(target=_write_many, args=(folder, f"t{i}", 150)) for i in range(6)]
    processes = [
        multiprocessing.get_context("fork").Process(target=_write_many, args=(folder, f"p{i}", 150))
        for i in range(2)
    ]
    seen: Counter[str] = Counter()
    for worker in (*threads, *processes):
        worker.start()
    while any(t.is_alive() for t in threads) or any(p.is_alive() for p in processes):
        seen.update(r.id for r in take_all())
    for p in processes:
        p.join()
        assert p.exitcode == 0
    seen.update(r.id for r in take_all())

    expected = {
        f"{who}{i}-{n}" for who, count in (("t", 6), ("p", 2)) for i in range(count) for n in range(150)
    }
    assert set(seen) == expected
    assert max(seen.values()) == 1


def test_a_line_torn_by_a_crash_mid_write_is_set_aside_and_the_records_around_it_are_whole(
    settings: Any,
) -> None:
    before, after = inbound(1), inbound(2)
    path = spool.keep(before)
    with path.open("ab") as file:
        file.write(b'{"id": "half-writ')  # the process died here
    spool.keep(after)
    tail = inbound(3)
    with path.open("ab") as file:
        file.write(b'{"id": "' + tail.id.encode())  # and another, at the very end

    with spool.claimed() as files:
        (claimed,) = files
        assert claimed.records == [before, after]
        assert claimed.torn == [b'{"id": "half-writ', b'{"id": "' + tail.id.encode()]


def test_a_write_that_fails_leaves_no_partial_line(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = spool.keep(inbound(1))
    size = path.stat().st_size

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        spool.keep(inbound(2))
    assert path.stat().st_size == size


def test_healthz_counts_the_records_waiting_without_failing(client: Client, db: None) -> None:
    for n in range(3):
        spool.keep(inbound(n))

    body = client.get("/healthz").json()

    assert body["spool"] == {"waiting": 3, "failed": 0}


# --- The webhooks: PostgreSQL unreachable is a 503 with JSON, and the delivery is kept --------


@pytest.fixture
def database_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: Any) -> None:
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setitem(sentry.HANDLERS, "metric_alert", refused)
    monkeypatch.setattr(vercel, "record", refused)


@pytest.mark.django_db
def test_a_signed_alert_that_meets_an_unreachable_database_is_kept_and_answered_503(
    client: Client, database_down: None, settings: Any
) -> None:
    payload = alert()

    response = post(client, payload, HTTP_REQUEST_ID="req-1")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    assert answer["status"] == "spooled"
    (record,) = take_all()
    assert record.id == answer["id"]
    assert record.source == "sentry"
    assert record.body == response.wsgi_request.body
    assert record.headers["sentry-hook-resource"] == "metric_alert"
    assert record.headers["request-id"] == "req-1"
    assert set(record.headers) == {
        "sentry-hook-resource",
        "sentry-hook-timestamp",
        "sentry-hook-signature",
        "request-id",
    }
    assert abs(record.received_at - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.django_db
def test_a_signed_vercel_delivery_that_meets_an_unreachable_database_is_kept(
    client: Client, database_down: None
) -> None:
    body, signature = signed(deployment_event())

    response = client.post("/webhooks/vercel/", data=body, content_type="application/json", **signature)

    assert response.status_code == 503 and response.json()["status"] == "spooled"
    (record,) = take_all()
    assert (record.source, record.body) == ("vercel", body)
    assert record.headers == {"x-vercel-signature": signature["HTTP_X_VERCEL_SIGNATURE"]}


@pytest.mark.django_db
def test_a_bad_signature_is_refused_before_anything_is_kept(client: Client, database_down: None) -> None:
    response = post(client, alert(), HTTP_SENTRY_HOOK_SIGNATURE="0" * 64)

    assert response.status_code == 401
    assert take_all() == []


@pytest.mark.django_db
@pytest.mark.parametrize("error", [ProgrammingError("relation does not exist"), ValueError("a bug")])
def test_a_database_error_that_is_no_outage_or_a_bug_is_not_spooled(
    client: Client, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def broken(*args: Any) -> None:
        raise error

    monkeypatch.setitem(sentry.HANDLERS, "metric_alert", broken)
    with pytest.raises(type(error)):
        post(client, alert())
    assert take_all() == []


@pytest.mark.django_db
def test_when_the_spool_cannot_be_written_either_the_answer_is_still_503_json_and_an_error_logged(
    client: Client, database_down: None, settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.SPOOL_DIR = blocker / "spool"

    with caplog.at_level(logging.ERROR):
        response = post(client, alert())

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    ours = [r for r in caplog.records if r.name.startswith("releases.")]
    assert [(r.levelno, r.message) for r in ours] == [(logging.ERROR, "spool.write_failed")]


def test_a_writer_that_opened_the_file_before_the_replayer_renamed_it_writes_to_a_new_one(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the inode check is for: open, then (before the lock) the replayer claims the file."""
    early = inbound(1)
    spool.keep(early)
    opened = threading.Event()
    claimed = threading.Event()
    real_open = spool._open_live

    def slow_open(path: Path) -> tuple[int, bool]:
        result = real_open(path)
        if not opened.is_set():
            opened.set()
            claimed.wait(5)
        return result

    monkeypatch.setattr(spool, "_open_live", slow_open)
    late = inbound(2)
    writer = threading.Thread(target=spool.keep, args=(late,))
    writer.start()
    opened.wait(5)
    first = take_all()  # renames the file the writer holds open, and removes it
    claimed.set()
    writer.join(5)

    assert first == [early]
    assert not writer.is_alive()
    assert take_all() == [late]


def test_records_from_failed_go_back_to_the_spool_on_request(settings: Any) -> None:
    record = inbound(1)
    spool.fail(record, "400: body is not JSON")
    assert spool.waiting()["failed"] == 1

    assert spool.retry_failed() == 1

    assert spool.waiting() == {"waiting": 1, "failed": 0}
    assert take_all() == [record]


def test_an_empty_spool_costs_one_listdir(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = os.listdir

    def counted(path: Any) -> list[str]:
        calls.append(str(path))
        return real(path)

    Path(settings.SPOOL_DIR).mkdir(parents=True)
    monkeypatch.setattr(spool.os, "listdir", counted)
    assert take_all() == []
    assert calls == [str(settings.SPOOL_DIR)]
