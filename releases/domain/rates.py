"""Exact rate arithmetic the verdict decides by: the crashes a threshold allows, and the Wilson
bound of the fixed rule's early fail.

A threshold written ``0.995`` in the config means exactly 995/1000 and counts are integers, so
"exactly at the threshold passes" holds at every sample size. Comparing floats would let the
binary approximation of the threshold decide a release at the boundary: in floats,
``10 * (1 - 0.9)`` is 0.999..., which would allow no crash at all in ten sessions.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from statistics import NormalDist


def allowed_crashes(sessions: int, threshold: float) -> int:
    """The most crashed sessions out of ``sessions`` whose crash-free rate still reaches ``threshold``.

    (sessions - c) / sessions >= t  <=>  c <= sessions * (1 - t), so it is floor(sessions * (1 - t)),
    computed exactly.
    """
    if sessions < 0:
        raise ValueError(f"sessions must not be negative, got {sessions}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    return math.floor(sessions * (1 - exact(threshold)))


def wilson_upper_bound(successes: int, n: int, confidence: float) -> float:
    """Upper end of the two-sided Wilson score interval for the rate ``successes / n``."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = _z(confidence)
    z2 = z * z
    # The textbook formula multiplied through by n, which keeps the square root's argument
    # away from the cancellation p(1 - p) suffers near p = 1, where crash-free rates live.
    bound = (successes + z2 / 2 + z * math.sqrt(successes * (n - successes) / n + z2 / 4)) / (n + z2)
    rate = successes / n
    # Exactly, the bound lies in [rate, 1]; rounding can step a hair outside, which would read as nonsense.
    return min(1.0, max(rate, bound))


def exact(value: float) -> Fraction:
    # repr gives the shortest decimal that round-trips, i.e. what was written in the config (0.995),
    # not the binary approximation Fraction(0.995) would give (0.99499999999999999555...).
    return Fraction(Decimal(repr(float(value))))


def upper_bound_below(successes: int, n: int, confidence: float, threshold: Fraction) -> bool:
    """Whether the Wilson upper bound of successes / n is below the threshold, decided exactly.

    The Wilson interval is every p with n * (p_hat - p)**2 <= z**2 * p * (1 - p). It contains p_hat,
    so the threshold lies above it iff threshold > p_hat and the inequality fails at the threshold.
    Multiplied through by n that is (successes - n * t)**2 > z**2 * n * t * (1 - t): rational in
    everything but z, whose float is taken exactly, so no rounding of the bound decides a release.
    """
    if threshold * n <= successes:
        return False
    z2 = Fraction(_z(confidence)) ** 2
    return (successes - threshold * n) ** 2 > z2 * n * threshold * (1 - threshold)


def _z(confidence: float) -> float:
    # Two-sided: 0.99 leaves 0.5% in each tail. Asking for the lower tail keeps the argument
    # away from 1.0, where inv_cdf is undefined and a confidence near 1 would round to.
    return -NormalDist().inv_cdf((1 - confidence) / 2)
