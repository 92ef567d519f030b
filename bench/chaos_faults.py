"""The hand that breaks the chaos run's stack: the schedule of faults, the thread that carries it
out (worker kills, Redis and PostgreSQL restarts, beat kills and outages), and PostgreSQL's outage
while Sentry alerts arrive."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_infra import BEATS, PrivatePostgres, PrivateRedis, Stack


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
