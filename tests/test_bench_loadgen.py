"""bench/loadgen.py, the ingest benchmark's load generator, against a small local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import run_phase


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202 if self.path == "/ok" else 500)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def requests(port: int, path: str, count: int) -> list[bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    return [f"{head}{n % 100:02d}".encode() for n in range(count)]


def test_open_loop_keeps_its_rate_and_counts_every_answer(server: int) -> None:
    pool = requests(server, "/ok", 400)
    result = run_phase(
        pool, 0, ("127.0.0.1", server), mode="open", level=200, seconds=1.0, warmup=0.2, ok_status=202
    )
    assert result.errors == {}
    assert result.statuses == {202: result.used}
    assert 180 <= result.rate <= 220
    assert len(result.latencies_ms) >= 180 and min(result.latencies_ms) > 0
    assert result.gen_cpu_s > 0 and result.machine_busy_s >= result.gen_cpu_s * 0.5


def test_closed_loop_counts_a_wrong_status_as_an_error_and_stops_at_the_pool(server: int) -> None:
    pool = requests(server, "/fail", 50)
    result = run_phase(
        pool, 10, ("127.0.0.1", server), mode="closed", level=4, seconds=5.0, warmup=0.0, ok_status=202
    )
    assert result.pool_exhausted and result.used == 40
    assert result.statuses == {500: 40} and result.errors == {"HTTP 500": 40}
    assert result.latencies_ms == []  # only answers with the expected status have a latency
