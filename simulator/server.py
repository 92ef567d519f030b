"""HTTP plumbing: one port, each vendor under its own path prefix, control API under ``/_sim/``.

Every vendor request is logged, checked against injected faults, handed to its vendor module,
and decorated with that vendor's rate-limit headers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qs, urlsplit

from simulator import control
from simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from simulator.service import Service
    from simulator.state import Simulator

PREFIXES = {
    "/vercel": "vercel",
    "/sentry": "sentry",
    "/slack": "slack",
    "/pagerduty": "pagerduty",
    "/datadog": "datadog",
    "/posthog": "posthog",
}
MAX_BODY = 10 * 1024 * 1024


def split_service(path: str) -> tuple[str | None, str]:
    for prefix, service in PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return service, path[len(prefix) :] or "/"
    return None, path


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as the real APIs do; every answer sets Content-Length.
    protocol_version = "HTTP/1.1"
    sim: ClassVar[Simulator]

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle's algorithm on, a keep-alive
        # client's delayed ACK would add ~40 ms to every answer.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "gatekeeper-simulator"

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def do_PUT(self) -> None:
        self.handle_any()

    def do_PATCH(self) -> None:
        self.handle_any()

    def do_DELETE(self) -> None:
        self.handle_any()

    def log_message(self, format: str, *args: object) -> None:
        if self.sim.options.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def handle_any(self) -> None:
        try:
            body = self.read_body()
        except ValueError as bad:
            self.send(json_response(400, {"error": str(bad)}))
            return
        split = urlsplit(self.path)
        request_path = split.path
        service, path = split_service(request_path)
        request = Request(
            method=self.command,
            service=service or "control",
            path=path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            full_path=self.path,
        )
        try:
            if request_path == "/_sim" or request_path.startswith("/_sim/"):
                response = control.dispatch(self.sim, request)
            elif service is None:
                response = json_response(404, {"error": f"no simulated service at {request_path}"})
            else:
                response = self.vendor(self.sim.services[service], request)
        except Exception:
            # A simulator bug must look like a 500, not a dropped connection that a client
            # would retry as a network error.
            traceback.print_exc()
            response = json_response(500, {"error": "simulator bug; traceback on its stderr"})
        self.send(response)

    def vendor(self, service: Service, request: Request) -> Response:
        sim = self.sim
        with sim.lock:
            entry = sim.log.start(request, sim.now())
            fault = sim.faults.take(request)
            if fault is not None:
                entry["fault"] = fault.kind
            sim.inflight[service.name] = sim.inflight.get(service.name, 0) + 1
            wake = sim.wake
        try:
            if fault is not None and fault.apply:
                # The vendor did it; only the answer goes missing below.
                applied = service.handle(request)
                with sim.lock:
                    entry["applied_status"] = applied.status
            if fault is None:
                response = service.handle(request)
            elif fault.kind == "reset":
                response = Response(0, abort=True)
            else:
                response = service.fault_response(fault, request)
                if fault.kind == "timeout":
                    with sim.lock:
                        # Logged with its status at once: the hang is the point, not the reply.
                        entry["status"] = response.status
                    wake.wait(fault.delay)  # a reset or shutdown cuts the hang short
            if not response.abort:
                service.decorate(response, request)
        finally:
            with sim.lock:
                sim.inflight[service.name] -= 1
        with sim.lock:
            entry["status"] = None if response.abort else response.status
        return response

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def read_chunked(self) -> bytes:
        chunks = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def send(self, response: Response) -> None:
        if response.abort:
            self.drop_connection()
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its own timeout fired)

    def drop_connection(self) -> None:
        """Close with a TCP reset and no answer, as a crashed load balancer would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client closing its socket mid-request is normal here (timeouts, resets); a real
        # bug still shows its traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def make_server(sim: Simulator) -> Server:
    handler = type("BoundHandler", (Handler,), {"sim": sim})
    return Server((sim.options.host, sim.options.port), handler)
