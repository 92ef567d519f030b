"""A small HTTP load generator for bench/ingest.py: pre-built request bytes over raw sockets.

Gunicorn's sync workers answer ``Connection: close``, so every request is a new TCP connection:
connect, one ``send`` of bytes built before the run, read to EOF. One process drives hundreds of
connections at once through epoll, without an HTTP library, so a request costs the generator a
few syscalls and a few dozen microseconds of Python; each phase runs in a forked child that
reports its own CPU time, so the report can show the generator was not the bottleneck.

Two modes:
- closed loop: ``level`` connections in flight, each answer starts the next (finds saturation);
- open loop: a new request every ``1/level`` seconds whatever the server does (fixed arrival
  rate); latency counts from when a request was *due*, so a stalled server or a late generator
  shows up in the figures instead of silently lowering the rate (no coordinated omission).
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import resource
import selectors
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["closed", "open"]
TIMEOUT_S = 10.0  # an answer later than this is an error (gunicorn's own timeout is 30 s)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """One phase: counts over everything sent, rates and latencies over the measured window."""

    mode: Mode
    level: float
    seconds: float = 0.0  # length of the measured window
    done_in_window: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # requests due within the window
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, warm-up and drain too
    errors: Counter[str] = field(default_factory=Counter)  # wrong status, refused, reset, timeout
    used: int = 0  # requests taken from the pool (each one sent at most once)
    pool_exhausted: bool = False
    gen_cpu_s: float = 0.0  # the generator's own CPU seconds within the window
    server_cpu_s: float = 0.0  # gunicorn's (master and workers) within the window
    database_cpu_s: float = 0.0  # the PostgreSQL backends of ``database`` (gunicorn's connections)
    machine_busy_s: float = 0.0  # all cores' busy seconds within the window (/proc/stat)
    max_lag_ms: float = 0.0  # open loop: how late the generator started a request, at worst

    @property
    def rate(self) -> float:
        return self.done_in_window / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def machine_busy_s() -> float:
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK  # user..steal; guest time is already in user


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (gunicorn's master and its workers)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return total / CLK_TCK


def backends_cpu_s(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database``, found by process title
    (``postgres: <cluster>: <user> <database> <client> <state>``), so backends that gunicorn's
    workers open during a phase (CONN_MAX_AGE) are counted too."""
    found: dict[int, float] = {}
    marker = f" {database} ".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                title = cmdline.read()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and marker in title:
            found[int(entry.name)] = tree_cpu_s(int(entry.name))
    return found


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Conn:
    __slots__ = ("data", "due", "first", "in_window", "sock")

    def __init__(self, sock: socket.socket, data: bytes, due: float, in_window: bool) -> None:
        self.sock, self.data, self.due, self.in_window = sock, data, due, in_window
        self.first = b""


def drive(
    requests: list[bytes],
    start: int,
    address: tuple[str, int],
    *,
    mode: Mode,
    level: float,
    seconds: float,
    warmup: float,
    ok_status: int,
    server_pid: int = 0,
    database: str = "",
) -> Result:
    """Run one phase in this process: ``warmup`` seconds unmeasured, then ``seconds`` measured,
    then wait for the answers still due. Requests are taken from ``requests[start:]``."""
    result = Result(mode, level)
    selector = selectors.EpollSelector()
    inflight: dict[int, _Conn] = {}
    index = start
    began = time.monotonic()
    window_start, window_end = began + warmup, began + warmup + seconds
    marks: dict[str, tuple[float, float, float, float]] = {}
    backends: dict[str, dict[int, float]] = {}

    def mark(name: str) -> None:
        server = tree_cpu_s(server_pid) if server_pid else 0.0
        backends[name] = backends_cpu_s(database) if database else {}
        marks[name] = (time.monotonic(), _own_cpu_s(), machine_busy_s(), server)

    def launch(due: float) -> None:
        nonlocal index
        if index >= len(requests):
            result.pool_exhausted = True
            return
        data = requests[index]
        index += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            result.errors[f"connect: {errno.errorcode.get(code, code)}"] += 1
            sock.close()
            return
        conn = _Conn(sock, data, due, window_start <= due < window_end)
        inflight[sock.fileno()] = conn
        selector.register(sock, selectors.EVENT_WRITE, conn)

    def finish(conn: _Conn, now: float, error: str = "") -> None:
        selector.unregister(conn.sock)
        del inflight[conn.sock.fileno()]
        conn.sock.close()
        if not error:
            try:
                status = int(conn.first[9:12])
            except ValueError:
                status, error = 0, "unreadable answer"
            else:
                result.statuses[status] += 1
                if status != ok_status:
                    error = f"HTTP {status}"
        if error:
            result.errors[error] += 1
        if window_start <= now < window_end:
            result.done_in_window += 1
        if conn.in_window and not error:
            result.latencies_ms.append((now - conn.due) * 1000)
        if mode == "closed" and now < window_end:
            launch(now)

    interval = 1.0 / level if mode == "open" else 0.0
    sent_open = 0
    if mode == "closed":
        for _ in range(int(level)):
            launch(began)
    while True:
        now = time.monotonic()
        if "start" not in marks and now >= window_start:
            mark("start")
        if "end" not in marks and now >= window_end:
            mark("end")
        if mode == "open":
            while now < window_end and began + sent_open * interval <= now:
                due = began + sent_open * interval
                if due >= window_start:
                    result.max_lag_ms = max(result.max_lag_ms, (now - due) * 1000)
                sent_open += 1
                launch(due)
            wait = max(0.0, min(began + sent_open * interval, window_end) - now) if now < window_end else 0.05
        else:
            wait = max(0.0, window_end - now) if now < window_end else 0.05
        if "start" not in marks:
            wait = min(wait, window_start - now)  # the window's first mark on time, not up to 50 ms late
        if not inflight and (now >= window_end or result.pool_exhausted):
            break
        if now >= window_end + TIMEOUT_S:
            for conn in list(inflight.values()):
                finish(conn, now, "timeout")
            break
        for key, events in selector.select(min(wait, 0.05)):
            conn = key.data
            now = time.monotonic()
            if events & selectors.EVENT_WRITE:
                problem = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if problem:
                    finish(conn, now, f"connect: {errno.errorcode.get(problem, problem)}")
                    continue
                try:
                    sent = conn.sock.send(conn.data)
                except OSError as exc:
                    finish(conn, now, f"send: {errno.errorcode.get(exc.errno or 0, exc)}")
                    continue
                conn.data = conn.data[sent:]
                if not conn.data:
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
                continue
            try:
                chunk = conn.sock.recv(65536)
            except OSError as exc:
                finish(conn, now, f"recv: {errno.errorcode.get(exc.errno or 0, exc)}")
                continue
            if chunk:
                if len(conn.first) < 12:
                    conn.first += chunk
            else:
                finish(conn, now)
    for name in ("start", "end"):  # a phase cut short (its pool ran out) still has both
        if name not in marks:
            mark(name)
    (t0, cpu0, busy0, srv0), (t1, cpu1, busy1, srv1) = marks["start"], marks["end"]
    result.seconds = t1 - t0
    result.gen_cpu_s, result.machine_busy_s, result.server_cpu_s = cpu1 - cpu0, busy1 - busy0, srv1 - srv0
    # A backend that ended within the window is missed (a slight undercount); a new one counts whole.
    before = backends["start"]
    result.database_cpu_s = sum(cpu - before.get(pid, 0.0) for pid, cpu in backends["end"].items())
    result.used = index - start
    return result


def _child(conn: multiprocessing.connection.Connection, args: tuple, kwargs: dict) -> None:  # type: ignore[type-arg]
    conn.send(drive(*args, **kwargs))
    conn.close()


def run_phase(
    requests: list[bytes],
    start: int,
    address: tuple[str, int],
    **kwargs: object,
) -> Result:
    """``drive`` in a forked child: the request bytes are shared, the CPU it reports is its own."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, (requests, start, address), kwargs))
    child.start()
    sender.close()
    result: Result = receiver.recv()
    child.join()
    return result
