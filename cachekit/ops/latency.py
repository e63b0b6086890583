"""Latency histograms: how long backend calls take, sampled so they can stay on.

A :class:`~cachekit.Cache` times one call in ``latency_sample_every`` (64 by
default) per cache and records it in a histogram per operation, with
power-of-two buckets from 1 µs to about 1 s. Sampling keeps the cost to a
counter decrement on the other calls; ``benchmarks/bench_locmem.py`` measures
it against a cache with sampling off.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

#: Upper bounds of the buckets in microseconds: 1, 2, 4, ... 2**20 (about 1 s); one more for slower calls.
BOUNDS_US: tuple[float, ...] = tuple(float(2**i) for i in range(21))


class LatencyHistogram:
    """Counts of sampled call durations in power-of-two microsecond buckets."""

    __slots__ = ("counts", "samples", "total_us")

    def __init__(self) -> None:
        #: ``counts[i]`` calls took at most ``BOUNDS_US[i]`` µs (and more than the bucket below);
        #: the last count is for slower calls.
        self.counts: list[int] = [0] * (len(BOUNDS_US) + 1)
        #: How many calls were sampled.
        self.samples = 0
        #: Their summed duration, in microseconds.
        self.total_us = 0.0

    def record(self, seconds: float) -> None:
        """Add one sampled duration."""
        micros = seconds * 1e6
        self.counts[bisect.bisect_left(BOUNDS_US, micros)] += 1
        self.samples += 1
        self.total_us += micros

    def percentile(self, fraction: float) -> float | None:
        """Return the upper bound (µs) of the bucket holding the ``fraction`` quantile, or ``None``.

        :param fraction: between 0 and 1, e.g. 0.99.
        """
        if not self.samples:
            return None
        wanted = fraction * self.samples
        seen = 0
        for bound, count in zip((*BOUNDS_US, float("inf")), self.counts, strict=True):
            seen += count
            if seen >= wanted and count:
                return bound
        return float("inf")

    def summary(self, fractions: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[str, float | int | None]:
        """Return samples, mean and percentiles (bucket upper bounds, µs) as a dict."""
        result: dict[str, float | int | None] = {
            "samples": self.samples,
            "mean_us": self.total_us / self.samples if self.samples else None,
        }
        for fraction in fractions:
            result[f"p{fraction * 100:g}_us"] = self.percentile(fraction)
        return result


__all__ = ["BOUNDS_US", "LatencyHistogram"]
