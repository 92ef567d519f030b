"""How the verdict writes its numbers for people: percentages that never read alike when they
differ, durations, and likelihood ratios as odds."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction


def odds(log_ratio: float) -> str:
    """A likelihood ratio, given as its natural log, as odds a person reads: "24:1", "1:3"."""
    if log_ratio >= 0:
        ratio = math.exp(min(log_ratio, 700.0))
        return f"{_round_odds(ratio)}:1" if ratio < 1e6 else "over 1,000,000:1"
    ratio = math.exp(min(-log_ratio, 700.0))
    return f"1:{_round_odds(ratio)}" if ratio < 1e6 else "1:over 1,000,000"


def _round_odds(ratio: float) -> str:
    return f"{ratio:,.1f}" if ratio < 10 else f"{ratio:,.0f}"


def percents(*values: Fraction) -> tuple[str, ...]:
    """Percentages to two places, or more where two places would make different values read alike.

    Otherwise 99.4995% against a 99.5% threshold would print as "99.50% < 99.50%".
    """
    distinct = len(set(values))
    shown: tuple[str, ...] = ()
    for places in range(2, 9):
        shown = tuple(_percent(value, places) for value in values)
        if len(set(shown)) == distinct:
            break
    return shown


def _percent(value: Fraction, places: int) -> str:
    scaled = round(value * 100 * 10**places)  # exact, ties to even
    return f"{Decimal(scaled).scaleb(-places):.{places}f}%"


def confidence_percent(confidence: float) -> str:
    return f"{confidence * 100:.10g}%"


def duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return " ".join(part for part in parts if part) or "0s"
