"""Chaos: 100 gates at once while workers die, Redis and PostgreSQL restart and every vendor fails.

    .venv/bin/python bench/chaos.py                  # the issue's run: 100 gates, ~6 minutes
    .venv/bin/python bench/chaos.py --gates 12 --kills 2 --redis-restarts 1 --chaos-seconds 25

It starts its own PostgreSQL cluster and Redis server on free ports (it restarts them, so never
the shared ones), the simulator, and Gatekeeper's web (gunicorn), one Celery worker (prefork)
and two beats (their own processes, one leading by lease). It creates the gates (40% good, 30%
bad, 10% slow, 10% canary ramps, 10% promoted and then hit by a Sentry alert; see
bench/chaos_scenario.py) and, while they run, SIGKILLs the worker (every third kill a pool child
instead), SIGKILLs the beat that leads, stops both beats long enough for the stalled-dispatch
page, flushes and restarts Redis, restarts PostgreSQL, and has the simulator answer a share of
all vendor calls with 5xx, timeouts (half of them after doing the work) and 429s with each
vendor's reset headers. Once the last builds of some projects are live, it stops PostgreSQL and
sends their Sentry alerts while it is down (traffic stays healthy, so only the alert can roll
them back), then starts it again. Then it turns the faults off, waits for quiet (every gate
decided, no action pending) and prints what it found (see bench/chaos_report.py for what counts
as a duplicate). Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.chaos_faults import Chaos, Faults, Outage
from bench.chaos_infra import PrivatePostgres, PrivateRedis, Stack, run_directory, sim_env
from bench.chaos_report import Figures, collect, render
from bench.chaos_scenario import OUTAGE_INCIDENTS, PD_KEY, PD_KEY_ENV, Driver, Plan, plan, setup
from bench.common import bench_env

VERCEL_SECRET, SENTRY_SECRET = "chaos-vercel-secret", "chaos-sentry-secret"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--gates", type=int, default=100, help="gates in the run (default 100)")
    add("--kills", type=int, default=10, help="worker SIGKILLs (default 10)")
    add("--redis-restarts", type=int, default=2, help="FLUSHALL + restart of Redis (default 2)")
    add("--pg-restarts", type=int, default=1, help="PostgreSQL restarts (default 1)")
    add("--beat-kills", type=int, default=2, help="SIGKILLs of the beat holding the lease (default 2)")
    add(
        "--beat-outage",
        type=float,
        default=40,
        help="both beats down this long once, s (default 40; 0: never)",
    )
    add(
        "--stall-seconds",
        type=float,
        default=20,
        help="DISPATCH_STALL_SECONDS: no dispatch this long pages (default 20)",
    )
    add("--outage-alerts", type=int, default=2, help="alerts sent while PostgreSQL is down (default 2)")
    add("--outage-seconds", type=float, default=15, help="how long PostgreSQL is down for them (default 15)")
    add("--error-rate", type=float, default=0.20, help="vendor answers that are 5xx (default 0.20)")
    add("--timeout-rate", type=float, default=0.05, help="vendor calls that time out (default 0.05)")
    add("--rate-limit-rate", type=float, default=0.03, help="vendor answers that are 429 (default 0.03)")
    add("--chaos-seconds", type=float, default=150, help="how long the faults go on (default 150)")
    add("--timeout", type=float, default=600, help="seconds to wait for quiet after the faults (default 600)")
    add("--concurrency", type=int, default=4, help="worker pool processes (default 4)")
    add("--poll-interval", type=float, default=2.0, help="the projects' poll_interval, s (default 2)")
    add("--max-wait", type=float, default=45.0, help="max_wait of the slow builds' projects, s (default 45)")
    add("--gate-max-wait", type=float, default=300.0, help="every other project's max_wait, s (default 300)")
    add("--watch", type=float, default=90.0, help="the projects' watch_after_promotion, s (default 90)")
    add("--failures-to-abort", type=int, default=12, help="the canary policy's (default 12)")
    add("--per-lane", type=float, default=2.5, help="builds shipped one after another per project")
    add("--provider-timeout", type=float, default=3.0, help="PROVIDER_TIMEOUT, s (default 3)")
    add("--action-lease", type=float, default=30.0, help="GATEKEEPER_ACTION_LEASE, s (default 30)")
    add("--dispatch-lease", type=float, default=20.0, help="GATEKEEPER_DISPATCH_LEASE, s (default 20)")
    add("--watchdog-interval", type=float, default=5.0, help="WATCHDOG_INTERVAL, s (default 5)")
    add("--seed", type=int, default=5)
    add("--json", default="", help="also write the figures to this file")
    add("--keep", action="store_true", help="keep the run directory (logs, database) afterwards")
    return parser.parse_args(argv)


def sim_faults(sim: httpx.Client, args: argparse.Namespace) -> None:
    """Faults on every vendor. Each is tried in turn, so each probability is of what is left, which
    makes the overall rates the ones asked for."""
    half_timeouts = args.timeout_rate / 2
    hang = args.provider_timeout + 2  # past the client's timeout, then the thread is free again
    specs: list[tuple[float, dict[str, Any]]] = [
        (args.error_rate / 3, {"kind": "5xx", "status": 500}),
        (args.error_rate / 3, {"kind": "5xx", "status": 502}),
        (args.error_rate / 3, {"kind": "5xx", "status": 503}),
        (half_timeouts, {"kind": "timeout", "delay": hang}),
        # The vendor did it and the answer never came: the case that makes duplicates.
        (half_timeouts, {"kind": "timeout", "delay": hang, "apply": True}),
        (args.rate_limit_rate / 2, {"kind": "429", "reset_after": 1, "retry_after": 1}),
        (args.rate_limit_rate / 2, {"kind": "429", "reset_after": 3, "retry_after": 3}),
    ]
    left = 1.0
    for rate, spec in specs:
        if rate <= 0:
            continue
        sim.post("/_sim/faults", json={"service": "*", "probability": min(1.0, rate / left), **spec})
        left -= rate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it stuck?
    # Stopped from outside (a CI timeout): still stop everything it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = run_directory()
    pg, redis = PrivatePostgres(root), PrivateRedis()
    stack: Stack | None = None
    try:
        pg.start()
        redis.start()
        env = bench_env(
            "unused",
            0,
            DATABASE_URL=pg.url(),
            CELERY_BROKER_URL=redis.url(),
            VERCEL_WEBHOOK_SECRET=VERCEL_SECRET,
            SENTRY_WEBHOOK_SECRET=SENTRY_SECRET,
            PROVIDER_TIMEOUT=str(args.provider_timeout),
            GATEKEEPER_ACTION_LEASE=str(args.action_lease),
            GATEKEEPER_DISPATCH_LEASE=str(args.dispatch_lease),
            WATCHDOG_INTERVAL=str(args.watchdog_interval),
            GATEKEEPER_DISPATCH_INTERVAL="1",
            # Where web keeps what arrives while PostgreSQL is down, and the worker replays it from.
            SPOOL_DIR=str(root / "spool"),
            DISPATCH_STALL_SECONDS=str(args.stall_seconds),
            GATEKEEPER_DISPATCH_STALL_CHECK="2",
            **{PD_KEY_ENV: PD_KEY},
        )
        stack = Stack(root, env, args.concurrency)
        stack.start_simulator(
            sim_env(
                {
                    "VERCEL_WEBHOOK_SECRET": VERCEL_SECRET,
                    "SENTRY_WEBHOOK_SECRET": SENTRY_SECRET,
                    "SIM_ALIAS_DELAY": 0.5,
                }
            )
        )
        env.update(
            VERCEL_API_URL=f"{stack.sim_url}/vercel",
            SENTRY_API_URL=f"{stack.sim_url}/sentry/api/0",
            SLACK_API_URL=f"{stack.sim_url}/slack/api",
            PAGERDUTY_EVENTS_URL=f"{stack.sim_url}/pagerduty",
            GATEKEEPER_PUBLIC_URL=stack.web_url,
        )
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "gatekeeper.settings"
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        stack.start_gatekeeper()
        the_plan = plan(
            args.gates,
            args.seed,
            stage_window=args.chaos_seconds * 0.6,
            per_lane=args.per_lane,
            outage_alerts=args.outage_alerts,
        )
        figures, faults = run(args, stack, pg, redis, the_plan)
        deaths = {name: service.died for name, service in stack.services.items()}
        lines = render(figures, faults.done, deaths)
        print(f"chaos: {len(the_plan.gates)} gates in {len(the_plan.lanes)} projects, {os.cpu_count()} cores")
        print("\n".join(lines))
        for error in faults.errors:
            print(f"  fault not done: {error}")
        met = figures.target_met()
        print(
            f"TARGET {'met' if met else 'MISSED'}: {figures.decided}/{figures.total} decided, "
            f"{len(figures.lost)} lost, 0 duplicates wanted"
        )
        print(f"CHECK  outcomes {'as expected' if figures.outcomes_right() else 'NOT as expected'}")
        if args.json:
            with open(args.json, "w") as out:
                json.dump({**asdict(figures), "faults": faults.done, "deaths": deaths}, out, indent=1)
        return 0 if met and figures.outcomes_right() else 1
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        pg.stop()
        if args.keep:
            print(f"run directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(
    args: argparse.Namespace, stack: Stack, pg: PrivatePostgres, redis: PrivateRedis, the_plan: Plan
) -> tuple[Figures, Faults]:
    from django.db import close_old_connections, connection

    from releases.models import Action, Project, Release

    sim = httpx.Client(base_url=stack.sim_url, timeout=60, trust_env=False)
    setup(the_plan, sim, args)
    names = [lane.project for lane in the_plan.lanes]
    deadline = time.monotonic() + 60
    while Project.objects.filter(name__in=names, live_deployment_id="").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the baselines never went live in Gatekeeper (see web.log, worker.log)")
        time.sleep(0.3)
    faults = Faults(
        args.kills,
        args.redis_restarts,
        args.pg_restarts,
        args.chaos_seconds,
        beat_kills=args.beat_kills,
        beat_outage=args.beat_outage,
    )
    window = [last_seq(sim), 0]  # the request log's sequence numbers while the vendors fail
    sim_faults(sim, args)
    chaos = Chaos(faults, stack, pg, redis, args.seed)
    driver = Driver(the_plan, stack.sim_url)
    chaos.start()
    ids = [gate.deployment_id for gate in the_plan.gates]
    states: dict[str, str] = {}
    outage: Outage | None = None
    quiet_by: float | None = None
    next_report = 0.0
    try:
        while True:
            time.sleep(0.5)
            for name in ("web", "beat", "beat-2", "simulator", "worker"):
                stack.services[name].check()
            try:
                close_old_connections()
                states = dict(
                    Release.objects.filter(deployment_id__in=ids).values_list("deployment_id", "state")
                )
                busy = Action.objects.filter(status__in=["pending", "running", "confirming"]).count()
            except Exception:
                connection.close()
                continue
            driver.step(states)
            ready = driver.outage_ready(states) if outage is None else None
            if ready:
                outage = Outage(
                    pg,
                    ready,
                    lambda gate: driver.alert_now(gate, OUTAGE_INCIDENTS + gate.index),
                    args.outage_seconds,
                )
                outage.start()
                faults.done["postgres_outage"] = 1
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + 10
                decided = sum(gate.done(states.get(gate.deployment_id)) for gate in the_plan.gates)
                print(
                    f"  {time.strftime('%H:%M:%S')} decided {decided}/{len(the_plan.gates)}, "
                    f"actions busy {busy}, "
                    f"faults {faults.done}{' (vendors healthy again)' if quiet_by else ''}",
                    file=sys.stderr,
                    flush=True,
                )
            if quiet_by is None and not chaos.is_alive():
                sim.delete("/_sim/faults")  # the vendors are healthy again
                window[1] = last_seq(sim)
                quiet_by = time.monotonic() + args.timeout
            settled = all(gate.done(states.get(gate.deployment_id)) for gate in the_plan.gates)
            if quiet_by is not None and ((settled and busy == 0) or time.monotonic() > quiet_by):
                break
    finally:
        chaos.stopping.set()
        chaos.join(timeout=120)
        chaos.join_beat_faults(timeout=60)
        if outage is not None:
            outage.join(timeout=120)
            if outage.error:
                faults.errors.append(f"outage: {outage.error}")
            faults.log.append(
                f"PostgreSQL down {outage.down_for:.1f} s while {len(outage.gates)} alerts came"
            )
        driver.close()
    close_old_connections()
    if args.keep:  # for a post-mortem: what every vendor was asked, and answered
        (stack.root / "requests.json").write_text(sim.get("/_sim/requests").text)
    return collect(the_plan, sim, (window[0], window[1] or last_seq(sim))), faults


def last_seq(sim: httpx.Client) -> int:
    entries = sim.get("/_sim/requests").json()["requests"]
    return entries[-1]["seq"] if entries else 0


if __name__ == "__main__":
    sys.exit(main())
