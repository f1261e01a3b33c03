"""Counting histograms for the hot paths: a bisect and two additions per value.

The emit path must not pay for metrics nobody scrapes (DESIGN §14, measured
in bench/http.py), so the bus counts into plain lists and `/metrics` turns
them into Prometheus histograms at scrape time (http/metrics.py). No lock:
everything runs on the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["BATCH_SIZE_BUCKETS", "DURATION_BUCKETS_S", "Histogram"]

#: Seconds: from a fast in-memory emit (~50 µs) to a slow tool call.
DURATION_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: Events per group commit, up to the writer's MAX_BATCH_EVENTS.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Histogram:
    """Cumulative-at-read histogram: `counts[i]` counts values in (bounds[i-1], bounds[i]]."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """`[(le, count of values <= le), …, ("+Inf", count)]`, as Prometheus wants them."""
        running = 0
        out = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else _le(bound), running))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))
