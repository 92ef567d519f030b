"""Injected failures: 5xx, 429, hanging requests and dropped connections.

A matching fault replaces the vendor's handler entirely, so a faulted request changes no
state: exactly what a client sees when the vendor fails before doing anything. A ``timeout``
or ``reset`` fault with ``apply: true`` is the other, nastier case: the vendor does the work
and only its answer is lost (the request log then shows the answer it would have sent as
``applied_status``), so a client that sends again does it twice.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass
from typing import Any

from simulator.wire import ControlError, Request, as_number, as_text

SERVICES = ("vercel", "sentry", "slack", "pagerduty", "datadog", "posthog", "*")
KINDS = ("5xx", "timeout", "429", "reset")
# Longer than Gatekeeper's client timeouts, so a timeout fault is seen as a timeout.
DEFAULT_HANG_SECONDS = 35.0


@dataclass
class Fault:
    id: int
    service: str
    kind: str
    path_contains: str | None
    method: str | None
    count: int | None  # requests still to fault; None = unlimited (probability decides)
    probability: float
    status: int | None
    retry_after: float | None
    reset_after: float | None
    delay: float
    empty_body: bool
    apply: bool = False  # timeout/reset only: the handler runs first, then the answer is lost
    hits: int = 0

    def matches(self, request: Request) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.service not in ("*", request.service):
            return False
        if self.method and self.method.upper() != request.method:
            return False
        return not (self.path_contains and self.path_contains not in request.path)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(body: dict[str, Any], fault_id: int) -> Fault:
    service = as_text(body, "service") or ""
    if service not in SERVICES:
        raise ControlError(f"service: one of {', '.join(SERVICES)}")
    kind = str(body.get("kind", ""))
    if kind not in KINDS:
        raise ControlError(f"kind: one of {', '.join(KINDS)}")
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ControlError("count: a positive integer")
    probability = as_number(body, "probability", 1.0)
    if probability is None or not 0.0 <= probability <= 1.0:
        raise ControlError("probability: a number between 0 and 1")
    status = body.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise ControlError("status: an HTTP status code")
    if status is not None and not 400 <= status <= 599:
        raise ControlError("status: between 400 and 599")
    apply = body.get("apply", False)
    if not isinstance(apply, bool):
        raise ControlError("apply: true or false")
    if apply and kind not in ("timeout", "reset"):
        raise ControlError("apply: only for timeout and reset (a 5xx or 429 did nothing)")
    return Fault(
        id=fault_id,
        service=service,
        kind=kind,
        path_contains=as_text(body, "path_contains"),
        method=as_text(body, "method"),
        count=count,
        probability=probability,
        status=status,
        retry_after=as_number(body, "retry_after"),
        reset_after=as_number(body, "reset_after"),
        delay=as_number(body, "delay", DEFAULT_HANG_SECONDS) or 0.0,
        empty_body=bool(body.get("empty_body", False)),
        apply=apply,
    )


class FaultStore:
    """Not locked itself: callers hold the simulator lock."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, body: dict[str, Any]) -> Fault:
        fault = parse_fault(body, next(self._ids))
        self._faults.append(fault)
        return fault

    def take(self, request: Request) -> Fault | None:
        """The first active fault for this request, consuming one of its counts."""
        for fault in self._faults:
            if not fault.matches(request):
                continue
            if fault.probability < 1.0 and random.random() >= fault.probability:
                continue
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
            return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self._faults]

    def delete(self, fault_id: int) -> bool:
        before = len(self._faults)
        self._faults = [fault for fault in self._faults if fault.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        self._faults.clear()
