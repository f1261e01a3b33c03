"""What fan-out costs the event loop when many subscriptions cannot take events now.

    .venv/bin/python -m bench.fanout [--subscriptions 1000] [--events 1000] [--no-record]

One connection holding many `>` subscriptions and not reading (the attack of
issue 11: 10,000 subscriptions, never read) makes every committed batch pass
through each of them. This times `FanOut.publish` of one batch to
`--subscriptions` paused subscriptions, in-process (no sockets: only the
fan-out itself), as the median of 5 runs, and appends the figure to
bench/RESULTS.md unless `--no-record`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from eventbus_core.event import Event
from eventbus_server.fanout import FanOut
from eventbus_server.storage.base import EventQuery
from eventbus_server.storage.memory.store import MemoryStorage

from ._common import format_table, record_results, run


class _PausedConnection:
    """A subscriber whose client does not read: every event must be held."""

    can_write = False

    def write(self, data: bytes) -> None:
        raise AssertionError("a paused connection is never written to")

    async def wait_writable(self) -> None:
        raise AssertionError("not replaying")

    def heavy_read(self) -> Any:
        raise AssertionError("not replaying")


async def publish_once(subscriptions: int, events: int) -> float:
    # Room for everything held, in count and bytes: this times holding, not lagging.
    fanout = FanOut(
        MemoryStorage(10_000),
        subscriber_buffer=10 * events,
        max_subscriptions=subscriptions,
        max_held_bytes=2**62,
    )
    connection = _PausedConnection()
    for _ in range(subscriptions):
        fanout.subscribe(EventQuery(topic=">"), connection, replay=False).start()
    batch = [
        Event(i, "orders.created", {"i": i}, 0, None, None, None, None)
        for i in range(1, events + 1)
    ]
    started = time.perf_counter()
    fanout.publish(batch)
    return time.perf_counter() - started


async def measure(subscriptions: int, events: int) -> str:
    times = [await publish_once(subscriptions, events) for _ in range(5)]
    median = statistics.median(times)
    row = {
        "subscriptions": subscriptions,
        "events": events,
        "publish_ms": round(median * 1000, 2),
        "ns_per_pair": round(median / (subscriptions * events) * 1e9, 1),
    }
    return format_table([row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    text = run(measure(args.subscriptions, args.events))
    print(text)
    if not args.no_record:
        record_results(
            "bench.fanout: one batch to paused '>' subscriptions",
            "publish of one batch to subscriptions whose connection is paused, median of 5\n\n"
            + text,
        )


if __name__ == "__main__":
    main()
