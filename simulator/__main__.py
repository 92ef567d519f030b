"""``python -m simulator``: serve the simulated vendors on one port.

The first stdout line is ``simulator listening on http://HOST:PORT`` (flushed), so a test can
start it with ``--port 0`` and read the port it got.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from simulator import scenario
from simulator.server import make_server
from simulator.state import Options, Simulator
from simulator.wire import ControlError

# datadog=API_KEY checks DD-API-KEY; datadog=API_KEY:APP_KEY checks DD-APPLICATION-KEY too.
TOKEN_SERVICES = ("vercel", "sentry", "slack", "datadog", "posthog")


def _token_pair(text: str) -> tuple[str, str]:
    service, sep, token = text.partition("=")
    if not sep or service not in TOKEN_SERVICES or not token:
        raise argparse.ArgumentTypeError(
            f"expected SERVICE=TOKEN with SERVICE in {', '.join(TOKEN_SERVICES)}"
        )
    return service, token


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def parse_args(argv: Sequence[str] | None = None) -> Options:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Serve simulated Vercel, Sentry, Slack, PagerDuty, Datadog and PostHog APIs on one port.",
    )
    parser.add_argument("--host", default=env.get("SIM_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(env.get("SIM_PORT", "8900")), help="0 = any free port"
    )
    parser.add_argument("--gatekeeper-url", default=env.get("GATEKEEPER_URL") or None)
    parser.add_argument("--vercel-webhook-secret", default=env.get("VERCEL_WEBHOOK_SECRET") or None)
    parser.add_argument("--sentry-webhook-secret", default=env.get("SENTRY_WEBHOOK_SECRET") or None)
    parser.add_argument(
        "--alias-delay",
        type=_delay,
        default=_delay(env.get("SIM_ALIAS_DELAY", "0.5")),
        help="seconds a promote/rollback alias job takes",
    )
    parser.add_argument("--scenario", default=env.get("SIM_SCENARIO") or None, help="YAML scenario to play")
    parser.add_argument(
        "--require-token",
        action="extend",
        nargs="+",
        type=_token_pair,
        default=[],
        metavar="SERVICE=TOKEN",
        help="accept only this bearer token for the service (default: any non-empty token)",
    )
    parser.add_argument("--verbose", action="store_true", help="log one line per request to stderr")
    args = parser.parse_args(argv)
    tokens = dict(_token_pair(pair) for pair in env.get("SIM_REQUIRE_TOKENS", "").split(",") if pair.strip())
    tokens.update(dict(args.require_token))
    return Options(
        host=args.host,
        port=args.port,
        gatekeeper_url=args.gatekeeper_url,
        vercel_webhook_secret=args.vercel_webhook_secret,
        sentry_webhook_secret=args.sentry_webhook_secret,
        alias_delay=args.alias_delay,
        scenario=args.scenario,
        required_tokens=tokens,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    sim = Simulator(options)
    loaded = None
    if options.scenario:
        try:
            loaded = scenario.load(options.scenario)
        except ControlError as bad:
            sys.stderr.write(f"{bad.message}\n")
            return 2
    server = make_server(sim)
    host, port = server.server_address[:2]
    print(f"simulator listening on http://{host}:{port}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if loaded is not None:
        try:
            scenario.start(sim, loaded)
        except ControlError as bad:
            sys.stderr.write(f"scenario {options.scenario}: {bad.message}\n")
            return 2
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sim.wake.set()  # release hanging "timeout" faults
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
