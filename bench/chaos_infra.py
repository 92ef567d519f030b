"""What the chaos run stands on: its own PostgreSQL cluster and Redis server (it restarts them, so
never the shared ones), Gatekeeper's processes, and the hand that kills and restarts them.

Everything here is started by the run and stopped by it, by process id.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
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


@dataclass
class Faults:
    """The schedule of infrastructure faults, and what was actually done."""

    kills: int
    redis_restarts: int
    pg_restarts: int
    seconds: float
    beat_kills: int = 0
    beat_outage: float = 0.0  # both beats down this long, once: the stalled-dispatch page
    done: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def schedule(self, rng: random.Random) -> list[tuple[float, str]]:
        """Random moments over the window; kills never closer than a second apart."""
        events = [(rng.uniform(0.05, 0.95) * self.seconds, "kill") for _ in range(self.kills)]
        events += [(rng.uniform(0.15, 0.85) * self.seconds, "redis") for _ in range(self.redis_restarts)]
        events += [(rng.uniform(0.25, 0.75) * self.seconds, "postgres") for _ in range(self.pg_restarts)]
        events += [(rng.uniform(0.1, 0.9) * self.seconds, "beat") for _ in range(self.beat_kills)]
        if self.beat_outage > 0:
            events.append((rng.uniform(0.2, 0.4) * self.seconds, "beat_outage"))
        return sorted(events)


class Chaos(threading.Thread):
    """Runs the fault schedule against the stack; the worker is restarted after every kill."""

    def __init__(
        self, faults: Faults, stack: Stack, pg: PrivatePostgres, redis: PrivateRedis, seed: int
    ) -> None:
        super().__init__(daemon=True, name="chaos")
        self.faults, self.stack, self.pg, self.redis = faults, stack, pg, redis
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.beat_lock = threading.Lock()
        self.beat_faults: list[threading.Thread] = []

    def run(self) -> None:
        started = time.monotonic()
        kills = 0
        for at, what in self.faults.schedule(self.rng):
            if self.stopping.wait(max(0.0, started + at - time.monotonic())):
                return
            try:
                if what == "kill":
                    kills += 1
                    self._kill(child=kills % 3 == 0)
                elif what in ("beat", "beat_outage"):
                    # In a thread of its own, so the faults after it keep their moments.
                    fault = self._kill_beat if what == "beat" else self._beat_outage
                    thread = threading.Thread(target=self._beats_fault, args=(fault,), daemon=True)
                    thread.start()
                    self.beat_faults.append(thread)
                elif what == "redis":
                    self.redis.flush_and_restart(down_for=self.rng.uniform(1.0, 3.0))
                    self._note("redis", started, "FLUSHALL + SHUTDOWN NOSAVE, started again")
                else:
                    took = self.pg.restart()
                    self._note("postgres", started, f"pg_ctl restart -m fast ({took:.1f} s)")
            except Exception as exc:
                self.faults.errors.append(f"{what}: {type(exc).__name__}: {exc}")
        # The vendors' faults last the whole window, after the last scheduled event too.
        self.stopping.wait(max(0.0, started + self.faults.seconds - time.monotonic()))

    def _kill(self, *, child: bool) -> None:
        worker = self.stack.services["worker"]
        children = worker.children()
        if child and children:
            # One pool process: the task it ran is lost, the main process forks a new one.
            os.kill(self.rng.choice(children), signal.SIGKILL)
            self._note("worker_child_kills", 0.0, "SIGKILL a pool child")
            return
        worker.kill()
        self._note("worker_kills", 0.0, "SIGKILL the worker's main process")
        self.stopping.wait(self.rng.uniform(0.5, 3.0))  # down a moment, as a supervisor restarts it
        worker.start()

    def _beats_fault(self, fault: Any) -> None:
        with self.beat_lock:  # one at a time: a beat kill must not end an outage of both early
            try:
                fault()
            except Exception as exc:
                self.faults.errors.append(f"beats: {type(exc).__name__}: {exc}")

    def join_beat_faults(self, timeout: float) -> None:
        for thread in self.beat_faults:
            thread.join(timeout)

    def _kill_beat(self) -> None:
        """SIGKILL the beat holding the lease (the one sending); the other must take over."""
        leader = self._beat_leader()
        self.stack.services[leader].kill()
        self._note("beat_kills", 0.0, f"SIGKILL {leader}, the beat holding the lease")
        self.stopping.wait(self.rng.uniform(5.0, 15.0))
        self.stack.services[leader].start()

    def _beat_outage(self) -> None:
        """Both beats down: nothing dispatches, so Gatekeeper must page once and resolve once."""
        for name in BEATS:
            self.stack.services[name].kill()
        started = time.monotonic()
        self.stopping.wait(self.faults.beat_outage)
        for name in BEATS:
            self.stack.services[name].start()
        self._note("beat_outage", 0.0, f"both beats down {time.monotonic() - started:.0f} s")

    def _beat_leader(self) -> str:
        from django.conf import settings
        from django.db import connection

        from releases.scheduling.lease import read

        try:
            lease = read(settings.BEAT_LEASE_NAME)
        finally:
            connection.close()  # this thread's own connection
        holder = lease.held_by() if lease is not None else ""
        pid = holder.split(":")[1] if holder.count(":") >= 2 else ""
        for name in BEATS:
            process = self.stack.services[name].process
            if process is not None and str(process.pid) == pid:
                return name
        return BEATS[0]  # nobody holds it right now: either will do

    def _note(self, what: str, started: float, text: str) -> None:
        self.faults.done[what] = self.faults.done.get(what, 0) + 1
        self.faults.log.append(f"{time.strftime('%H:%M:%S')} {text}")


class Outage(threading.Thread):
    """PostgreSQL down while Sentry alerts arrive: stop it, send the alerts, start it again.

    Sentry never retries an alert, so each must be kept by the web process (the spool) and acted
    on once the database is back."""

    def __init__(self, pg: PrivatePostgres, gates: list[Any], send: Any, seconds: float) -> None:
        super().__init__(daemon=True, name="outage")
        self.pg, self.gates, self.send, self.seconds = pg, gates, send, seconds
        self.down_for = 0.0
        self.error = ""

    def run(self) -> None:
        with self.pg.lock:
            try:
                self.pg.down()
            except Exception as exc:
                self.error = f"stop: {type(exc).__name__}: {exc}"
                return
            started = time.monotonic()
            try:
                for gate in self.gates:
                    self.send(gate)
                time.sleep(max(0.0, self.seconds - (time.monotonic() - started)))
            finally:
                self.pg.up()
                self.down_for = time.monotonic() - started


def run_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="gatekeeper-chaos-"))


def sim_env(extra: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **{k: str(v) for k, v in extra.items()}}
