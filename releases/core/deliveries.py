"""What an inbound delivery led to, for the webhook's answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    status: str  # accepted | ignored
    detail: str
    accepted: bool = False
