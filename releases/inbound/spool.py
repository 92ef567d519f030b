"""The spool: signed webhooks kept on local disk while PostgreSQL is unreachable (DESIGN.md, Processes).

Sentry never retries a delivery, so one that arrives while the database is down would be lost.
The view keeps it here instead and answers 503; ``replay.py`` takes it through the same handling
once the database answers again. A record is the raw body and the headers its handling reads,
so the replay verifies the signature again over the very bytes Vercel or Sentry signed.

Files, in ``SPOOL_DIR``: each web process appends to its own ``<host>-<pid>.jsonl``, one JSON
record a line, and fsyncs before answering. The replayer claims a file by renaming it to
``<name>.<ns>.claimed``; it never reads a live file. A writer appends under ``flock`` and, once
it has the lock, checks that the live name still names the file it opened: a file renamed under
it belongs to the replayer, and the writer opens a new one. The replayer takes the same lock on
a file it has just renamed before reading it, which waits for a writer that got in before the
rename; so no line is lost or read half-written. One replayer at a time (``.replay.lock``).
Records that cannot be handled go to ``failed/``, one JSON file each, with the error;
``manage.py replay_spool --retry-failed`` puts them back.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

LIVE = ".jsonl"
CLAIMED = ".claimed"
FAILED = "failed"
# /healthz reads at most this much to count the waiting records; past it, the count is a floor.
COUNT_BUDGET = 8 * 1024 * 1024


@dataclass(frozen=True)
class Inbound:
    """A delivery whose signature was verified: the bytes as sent and the headers handling reads
    (lower-case names). What the live view handles, and what the spool keeps."""

    source: str
    body: bytes
    headers: Mapping[str, str]
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "received_at": self.received_at.isoformat(),
            "headers": dict(self.headers),
            "body": base64.b64encode(self.body).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Inbound:
        """The record, or ValueError/KeyError/TypeError when it is not one."""
        received = datetime.fromisoformat(data["received_at"])
        if received.tzinfo is None:
            raise ValueError("received_at has no time zone")
        headers = data["headers"]
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError("headers must be an object of strings")
        return cls(
            source=str(data["source"]),
            body=base64.b64decode(data["body"], validate=True),
            headers=headers,
            received_at=received,
            id=str(data["id"]),
        )


def directory() -> Path:
    return Path(settings.SPOOL_DIR)


# --- Writing (web processes) ---------------------------------------------------------------
# One writer at a time per process: the file is this process's own, so the lock is too.
_write_lock = threading.Lock()
_kept = 0  # records this process has kept, for the log


def kept_total() -> int:
    return _kept


def _after_fork() -> None:
    # A child forked while a thread held the lock would inherit it held, and it names its own file.
    global _write_lock  # noqa: PLW0603
    _write_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def keep(inbound: Inbound) -> Path:
    """Append the record to this process's file and fsync it; OSError when the disk refuses."""
    global _kept  # noqa: PLW0603
    line = json.dumps(inbound.to_json(), separators=(",", ":")).encode() + b"\n"
    folder = directory()
    with _write_lock:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        # Named by host and pid: after a crash, a new process may get the same pid and append to
        # its predecessor's file, which _append allows for.
        path = folder / f"{socket.gethostname()}-{os.getpid()}{LIVE}"
        while True:
            fd, created = _open_live(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _names(path, fd):
                    continue  # claimed since we opened it: the replayer's now; open a new one
                if created:
                    _fsync_dir(folder)
                _append(fd, line)
                _kept += 1
                return path
            finally:
                os.close(fd)  # and with it the lock


def _open_live(path: Path) -> tuple[int, bool]:
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags | os.O_EXCL, 0o600), True
    except FileExistsError:
        return os.open(path, flags, 0o600), False


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _append(fd: int, line: bytes) -> None:
    start = os.lseek(fd, 0, os.SEEK_END)
    if start and os.pread(fd, 1, start - 1) != b"\n":
        line = b"\n" + line  # after a torn line (a writer died mid-line): this record on its own line
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        # Disk full or an I/O error: take back the part written, so the file holds whole records.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Claiming and reading (the replayer) -----------------------------------------------------
@dataclass
class Claimed:
    """A claimed file: its records, and the lines in it that are no record."""

    path: Path
    records: list[Inbound]
    torn: list[bytes]
    done: set[str] = field(default_factory=set)
    torn_kept: bool = False

    def finish(self) -> None:
        """Remove the file when every record in it was taken, else keep only those that were not."""
        if self.torn and not self.torn_kept:
            return  # a torn line could not be saved in failed/: leave the file as it is
        left = [r for r in self.records if r.id not in self.done]
        if not left:
            self.path.unlink(missing_ok=True)
            self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
        elif len(left) < len(self.records) or self.torn:
            _rewrite(self.path, left)


@contextlib.contextmanager
def claimed() -> Iterator[list[Claimed]]:
    """The spool's files for this replayer: live ones renamed to claimed, and claimed ones a
    replayer before it left. One listdir when the spool is empty; nothing while another replayer
    holds the spool (it takes them all)."""
    folder = directory()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        names = []
    if not any(n.endswith((LIVE, CLAIMED)) for n in names):
        yield []
        return
    fd = os.open(folder / ".replay.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield []
            return
        yield _claim(folder, sorted(os.listdir(folder)))
    finally:
        os.close(fd)


def _claim(folder: Path, names: list[str]) -> list[Claimed]:
    found = []
    for name in names:
        path = folder / name
        if name.endswith(LIVE):
            claimed_path = folder / f"{name[: -len(LIVE)]}.{time.time_ns()}{CLAIMED}"
            os.rename(path, claimed_path)
            _fsync_dir(folder)
            found.append(_read(claimed_path, wait_for_writer=True))
        elif name.endswith(CLAIMED):
            found.append(_read(path, wait_for_writer=False))
    return found


def _read(path: Path, *, wait_for_writer: bool) -> Claimed:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if wait_for_writer:
            # A writer that opened the file before the rename may hold the lock, mid-line: this
            # waits for its line. One that takes the lock after it sees the rename and moves on.
            fcntl.flock(fd, fcntl.LOCK_EX)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    records, torn = _parse(b"".join(chunks))
    return Claimed(path, records, torn, torn_kept=not torn)


def _parse(content: bytes) -> tuple[list[Inbound], list[bytes]]:
    lines = content.split(b"\n")
    records, torn = [], []
    # The last piece follows the last newline: empty, or a record whose writer died mid-write
    # (the writer answered 503 "not kept" or nothing at all: no sender was told it is safe).
    for number, line in enumerate(lines):
        if not line:
            continue
        try:
            if number == len(lines) - 1:
                raise ValueError("no newline: the write did not finish")
            records.append(Inbound.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            torn.append(line)
    return records, torn


def _rewrite(path: Path, records: Iterable[Inbound]) -> None:
    """Replace the claimed file, atomically, by one that holds only ``records``."""
    temporary = path.with_name(path.name + ".tmp")
    content = b"".join(json.dumps(r.to_json(), separators=(",", ":")).encode() + b"\n" for r in records)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _fsync_dir(path.parent)


# --- failed/ ---------------------------------------------------------------------------------
def fail(record: Inbound, error: str) -> None:
    """Keep a record that could not be handled, with why, in failed/ (one file per record)."""
    _write_failed(
        f"{record.id}.json",
        json.dumps({"error": error, "failed_at": datetime.now(UTC).isoformat(), "record": record.to_json()}),
    )


def fail_torn(claimed: Claimed) -> None:
    """Save the lines of a claimed file that are no record, for a human to read."""
    for number, line in enumerate(claimed.torn):
        _write_failed(f"{claimed.path.name}.torn-{number}", line.decode("utf-8", "replace"))
    claimed.torn_kept = True


def _write_failed(name: str, text: str) -> None:
    folder = directory() / FAILED
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_text(text)
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, folder / name)
    _fsync_dir(folder)


def retry_failed() -> int:
    """Put the records in failed/ back in the spool; how many. Torn lines stay."""
    folder = directory() / FAILED
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return 0
    count = 0
    for name in names:
        try:
            record = Inbound.from_json(json.loads((folder / name).read_text())["record"])
        except (ValueError, KeyError, TypeError):
            logger.warning("spool.unreadable_failed_record", extra={"file": name})
            continue
        keep(record)
        (folder / name).unlink()
        count += 1
    return count


# --- /healthz --------------------------------------------------------------------------------
def waiting() -> dict[str, Any]:
    """Records waiting for replay, and records in failed/: a count cheap enough for /healthz."""
    folder = directory()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {"waiting": 0, "failed": 0}
    count, budget, exact = 0, COUNT_BUDGET, True
    for name in names:
        if not name.endswith((LIVE, CLAIMED)):
            continue
        try:
            size = os.stat(folder / name).st_size
            if size > budget:
                count, exact = count + 1, False  # at least one record in it
                continue
            budget -= size
            count += (folder / name).read_bytes().count(b"\n")
        except FileNotFoundError:
            continue  # replayed and removed meanwhile
    try:
        failed = sum(1 for n in os.listdir(folder / FAILED) if not n.startswith("."))
    except FileNotFoundError:
        failed = 0
    answer: dict[str, Any] = {"waiting": count, "failed": failed}
    if not exact:
        answer["approximate"] = True
    return answer
