"""What every simulated vendor provides to the HTTP plumbing."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from simulator.wire import Request, Response

if TYPE_CHECKING:
    from simulator.faults import Fault
    from simulator.state import Simulator

Handler = Callable[[Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    return Route(method, re.compile(f"^{pattern}$"), handler)


def resolve(routes: list[Route], request: Request) -> tuple[Handler, dict[str, str]] | str | None:
    """The handler and decoded path arguments; a string naming the allowed method when only the
    method is wrong; None when no route has this path."""
    allowed = None
    for candidate in routes:
        found = candidate.pattern.match(request.path)
        if not found:
            continue
        if candidate.method != request.method:
            allowed = candidate.method
            continue
        return candidate.handler, {key: unquote(value) for key, value in found.groupdict().items()}
    return allowed


class Service:
    name = ""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def reset(self) -> None:
        """Forget everything (state lives on the subclass)."""

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def fault_response(self, fault: Fault, request: Request) -> Response:
        """The vendor-shaped answer for an injected 5xx, 429 or (after hanging) timeout."""
        raise NotImplementedError

    def decorate(self, response: Response, request: Request) -> None:
        """Headers every response of this vendor carries (rate-limit counters); a fault's own
        values win over these."""


class RateWindow:
    """A fixed-window counter that only reports; real enforcement comes from injected faults,
    so a test never trips over a limit it did not ask for."""

    def __init__(self, limit: int, seconds: int) -> None:
        self.limit = limit
        self.seconds = seconds
        self._window_start = 0
        self._count = 0

    def hit(self, now: float) -> tuple[int, int, int]:
        """(limit, remaining, reset epoch seconds) after counting one request."""
        window_start = int(now) - int(now) % self.seconds
        if window_start != self._window_start:
            self._window_start, self._count = window_start, 0
        self._count += 1
        return self.limit, max(0, self.limit - self._count), window_start + self.seconds

    def reset_at(self, now: float, after: float | None) -> int:
        if after is not None:
            return math.ceil(now + after)
        return int(now) - int(now) % self.seconds + self.seconds
