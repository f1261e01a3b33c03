"""`GET /metrics`: a bus's counters in the Prometheus text format (DESIGN §14).

Nothing here runs per event: the bus counts into plain integers and
`histogram.Histogram`s on its hot paths, and this collector reads them at
scrape time (`Bus.metrics()`), building prometheus-client metric families
labelled `bus`. The cost of a scrape on emit throughput is measured in
bench/http.py.

The consumer series (`eventbus_consumer_*`, DESIGN §10) are the one part
read from storage: `Bus.list_consumers()` once per scrape (two small queries
per consumer, bounded by `max_consumers`), before the families are built. A
storage that does not answer within CONSUMERS_TIMEOUT_S leaves them without
samples for that scrape rather than failing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from eventbus_core.errors import EventBusError
from eventbus_server.bus import Bus
from eventbus_server.histogram import Histogram

__all__ = ["CONTENT_TYPE", "BusCollector", "MetricsEndpoint"]

log = logging.getLogger("eventbus.http")

#: How long a scrape waits for the consumers' stats.
CONSUMERS_TIMEOUT_S = 5.0

#: What generate_latest writes: the text format every Prometheus (2.x and 3.x) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, labels=labels)


def _add(family: HistogramMetricFamily, values: list[str], histogram: Histogram) -> None:
    family.add_metric(
        values, [(le, float(count)) for le, count in histogram.cumulative()], histogram.sum
    )


class BusCollector(Collector):
    """Every series of one bus, read from its counters when scraped."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        #: The consumers (with stats) read for the scrape in progress.
        self.consumers: list[dict[str, Any]] = []

    def collect(self) -> Iterator[Metric]:
        bus_id = self.bus.id
        snapshot = self.bus.metrics()
        stats = snapshot.info["stats"]

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, documentation, labels=["bus"])
            family.add_metric([bus_id], value)
            return family

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, documentation, labels=["bus"])
            family.add_metric([bus_id], value)
            return family

        yield counter(
            "eventbus_events_emitted", "Events stored (duplicates not counted).", stats["emitted"]
        )
        rejected = CounterMetricFamily(
            "eventbus_events_rejected", "Events refused, by reason.", labels=["bus", "reason"]
        )
        for reason, count in snapshot.rejected.items():
            rejected.add_metric([bus_id, reason], count)
        yield rejected
        emit = _histogram(
            "eventbus_emit_duration_seconds",
            "Emit requests from queued to acknowledged (committed).",
            ["bus"],
        )
        _add(emit, [bus_id], snapshot.emit_duration)
        yield emit
        batch = _histogram("eventbus_commit_batch_size", "Events per group commit.", ["bus"])
        _add(batch, [bus_id], snapshot.batch_size)
        yield batch
        yield gauge(
            "eventbus_queue_depth", "Emit requests waiting for the writer.", stats["queue_depth"]
        )
        yield gauge("eventbus_connections", "Open JSON-RPC connections.", stats["connections"])
        yield gauge(
            "eventbus_subscriptions",
            "Open subscriptions (events, firings, SSE streams).",
            stats["subscriptions"],
        )
        yield counter(
            "eventbus_subscriber_lagged",
            "Subscriptions dropped for lagging (told to resume from storage).",
            stats["lagged"],
        )
        yield gauge(
            "eventbus_last_event_id", "The newest event id delivered.", stats["last_event_id"]
        )
        firings = CounterMetricFamily(
            "eventbus_rule_firings",
            "Finished rule firings, by rule and status.",
            labels=["bus", "rule", "status"],
        )
        for (rule, status), count in sorted(snapshot.firings.items()):
            firings.add_metric([bus_id, rule, status], count)
        yield firings
        durations = _histogram(
            "eventbus_rule_firing_duration_seconds",
            "A finished firing's duration_ms (its tool calls, retries and backoff), in seconds.",
            ["bus", "rule"],
        )
        for rule, histogram in sorted(snapshot.firing_durations.items()):
            _add(durations, [bus_id, rule], histogram)
        yield durations
        calls = CounterMetricFamily(
            "eventbus_tool_calls",
            "Tool calls, by route kind and outcome.",
            labels=["bus", "kind", "outcome"],
        )
        for (kind, outcome), count in sorted(snapshot.tool_calls.items()):
            calls.add_metric([bus_id, kind, outcome], count)
        yield calls
        yield from self._consumer_families(bus_id)
        yield counter(
            "eventbus_storage_errors",
            "Group commits failed because storage was unavailable.",
            stats["storage_errors"],
        )

    def _consumer_families(self, bus_id: str) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "pending": GaugeMetricFamily(
                "eventbus_consumer_pending",
                "Events matching a consumer after its cursor: its lag.",
                labels=["bus", "consumer"],
            ),
            "ack_pending": GaugeMetricFamily(
                "eventbus_consumer_ack_pending",
                "Events leased and not yet acked.",
                labels=["bus", "consumer"],
            ),
            "redelivered": CounterMetricFamily(
                "eventbus_consumer_redelivered",
                "Deliveries after the first.",
                labels=["bus", "consumer"],
            ),
            "dead": GaugeMetricFamily(
                "eventbus_consumer_dead",
                "Dead letters of a consumer now.",
                labels=["bus", "consumer"],
            ),
        }
        for consumer in self.consumers:
            for stat, family in families.items():
                family.add_metric([bus_id, consumer["name"]], consumer["stats"][stat])
        yield from families.values()


class MetricsEndpoint:
    """The `/metrics` handler of one bus (its own registry: every series is that bus's)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.collector = BusCollector(bus)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._lock = asyncio.Lock()  # one scrape at a time: the collector holds its consumers

    async def handle(self, request: Request) -> Response:
        async with self._lock:
            try:
                async with asyncio.timeout(CONSUMERS_TIMEOUT_S):
                    self.collector.consumers = await self.bus.list_consumers()
            except (TimeoutError, EventBusError) as exc:
                log.warning(
                    "bus=%s /metrics without consumer series: %s", self.bus.id, exc or "timed out"
                )
                self.collector.consumers = []
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)
