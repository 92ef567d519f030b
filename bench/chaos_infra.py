"""What the chaos run stands on: its own PostgreSQL cluster and Redis server (it restarts them, so
never the shared ones) and Gatekeeper's processes; bench/chaos_faults.py is the hand that breaks them.

Everything here is started by the run and stopped by it, by process id.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import PYTHON, ROOT, free_port, gunicorn_command

DATABASE = "gatekeeper_chaos"
BEATS = ("beat", "beat-2")


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's versioned directory (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    raise RuntimeError(f"{name} not found: install PostgreSQL's server package")


def postgres_available() -> bool:
    try:
        _pg_bin("initdb")
        _pg_bin("pg_ctl")
    except RuntimeError:
        return False
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _as_postgres(args: list[str]) -> list[str]:
    # initdb refuses to run as root; the cluster belongs to the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PrivatePostgres:
    """A throwaway cluster on a free port (fsync off: it only has to survive a restart)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.port = free_port()
        # A restart and an outage never overlap: a restart would end the outage early.
        self.lock = threading.Lock()
        self.options = (
            f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir.parent, "postgres")
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        subprocess.run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        self._ctl("start", "-o", self.options, "-l", str(self.dir / "log"))
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c",
             f'CREATE DATABASE "{DATABASE}"'],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def restart(self) -> float:
        """pg_ctl restart -m fast (every connection is cut); returns the seconds it took."""
        with self.lock:
            started = time.monotonic()
            self._ctl("restart", "-m", "fast", "-l", str(self.dir / "log"))
            return time.monotonic() - started

    def down(self) -> None:
        """pg_ctl stop -m fast: every connection is cut and new ones are refused until ``up``."""
        self._ctl("stop", "-m", "fast")

    def up(self) -> None:
        self._ctl("start", "-o", self.options, "-l", str(self.dir / "log"))

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self._ctl("stop", "-m", "immediate", check=False)

    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _ctl(self, *args: str, check: bool = True) -> None:
        # No pipes: the server pg_ctl starts would hold them open, and this would wait forever.
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-w", "-t", "60", *args]),
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
        )


class PrivateRedis:
    """A redis-server child on a free port, no persistence: a restart is an empty broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while self._cli("ping") != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def flush_and_restart(self, down_for: float) -> None:
        """FLUSHALL, SHUTDOWN NOSAVE, stay down a moment, start again on the same port."""
        self._cli("flushall")
        self._cli("shutdown", "nosave")
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()


@dataclass
class Service:
    """One long-running process, restartable; its output goes to a log file in the run's directory."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    died: list[int] = field(default_factory=list)  # exit codes of deaths nobody asked for
    groups: list[int] = field(default_factory=list)  # every process group it ever led
    down: bool = False  # killed on purpose and not started again yet

    def start(self) -> None:
        with open(self.log, "ab") as out:
            # Its own session, so a worker's pool children can be found and ended with it.
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        self.starts += 1
        self.groups.append(self.process.pid)
        self.down = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Restart it if it died on its own (and remember that it did: a crash is a finding)."""
        if not self.down and self.process is not None and self.process.poll() is not None:
            self.died.append(self.process.returncode)
            self.start()

    def kill(self) -> None:
        """SIGKILL the main process only, as an OOM killer or a lost node would."""
        self.down = True
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def children(self) -> list[int]:
        if not self.alive():
            return []
        assert self.process is not None
        try:
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as found:
                return [int(pid) for pid in found.read().split()]
        except OSError:
            return []

    def stop(self) -> None:
        self.down = True
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Pool children orphaned by a SIGKILL of their parent are still in its process group.
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def celery(*args: str) -> list[str]:
    return [PYTHON, "-m", "celery", "-A", "gatekeeper", *args, "--loglevel", "WARNING"]


@dataclass
class Stack:
    """The simulator and Gatekeeper's web, worker and beat, on the private database and broker."""

    root: Path
    env: dict[str, str]
    concurrency: int
    sim_url: str = ""
    web_url: str = ""
    services: dict[str, Service] = field(default_factory=dict)

    def start_simulator(self, sim_env: dict[str, str]) -> None:
        port, web_port = free_port(), free_port()
        self.sim_url, self.web_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{web_port}"
        args = [PYTHON, "-m", "simulator", "--port", str(port), "--gatekeeper-url", self.web_url]
        self._add("simulator", args, sim_env, ready=f"{self.sim_url}/_sim/health")

    def start_gatekeeper(self) -> None:
        port = self.web_url.rsplit(":", 1)[1]
        self._add("web", gunicorn_command(int(port)), self.env, ready=f"{self.web_url}/healthz")
        # Beat is its own process, as docker-compose runs it: killing a worker must not stop the
        # dispatcher, or every kill would also be a beat outage and the run would measure that.
        # Two of them, as docker-compose runs: the one holding the PostgreSQL lease sends.
        for name in BEATS:
            schedule = str(self.root / f"{name}-schedule")
            self._add(name, celery("beat", "--schedule", schedule), self.env)
        # Prefork, as production runs: a SIGKILL of the main process orphans the children
        # mid-task, and killing one child loses only the task it ran.
        worker = celery(
            "worker", "--pool", "prefork", "--concurrency", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        )  # fmt: skip
        self._add("worker", worker, self.env)

    def _add(self, name: str, args: list[str], env: dict[str, str], ready: str = "") -> None:
        service = Service(name, args, env, self.root / f"{name}.log")
        service.start()
        self.services[name] = service
        if ready:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(ready, timeout=2, trust_env=False)
                    return
                except httpx.HTTPError:
                    if time.monotonic() > deadline or not service.alive():
                        raise RuntimeError(f"{name} did not start (see {service.log})") from None
                    time.sleep(0.2)

    def stop(self) -> None:
        for name in ("worker", *BEATS, "web", "simulator"):
            if name in self.services:
                self.services[name].stop()


def run_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="gatekeeper-chaos-"))


def sim_env(extra: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **{k: str(v) for k, v in extra.items()}}
