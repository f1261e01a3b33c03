"""On SQLite (durability normal) a small fetch commits on the event loop only when its read
of the log stops at what it leases (an exact topic or every topic, nothing else to match)
and it has little else to do: few leases ran out (each becomes waiting or dead in the same
transaction) and few waiting events are due (sorted by id). Otherwise it goes to the
writer's thread, so neither 10,000 leases running out at once nor a prefix filter over a
million events that do not match holds the loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from eventbus_core.event import NewEvent, now_ms
from eventbus_server.storage import EventQuery, SqliteStorage
from eventbus_server.storage.consumers import ConsumerConfig, Scan
from eventbus_server.storage.sqlite.consumers import (
    CHEAP_DUE,
    CHEAP_EXPIRED,
    cheap_to_fetch,
    reads_only_what_it_leases,
)

SCAN = Scan(EventQuery(topic="jobs"), None, 10_000_000)


async def _leased(path: Path, leases: int, ack_wait_ms: int) -> SqliteStorage:
    store = SqliteStorage(path)
    await store.open()
    await store.append([NewEvent("jobs", i, now_ms()) for i in range(leases)])
    config = ConsumerConfig(ack_wait_ms=ack_wait_ms, max_ack_pending=10_000)
    await store.put_consumer("c", config, 0, now_ms())
    result = await store.fetch_leases("c", now_ms(), leases, SCAN)
    assert result is not None and len(result.leased) == leases
    return store


def _cheap(path: Path) -> bool:
    with sqlite3.connect(path) as conn:
        return cheap_to_fetch(conn, "c", now_ms())


async def test_a_fetch_is_cheap_while_few_leases_ran_out(tmp_path: Path) -> None:
    store = await _leased(tmp_path / "bus.db", CHEAP_EXPIRED, ack_wait_ms=100)
    try:
        assert _cheap(tmp_path / "bus.db")  # none ran out yet
        await asyncio.sleep(0.2)
        assert _cheap(tmp_path / "bus.db")  # CHEAP_EXPIRED ran out: still cheap
    finally:
        await store.close()


async def test_a_fetch_after_many_leases_ran_out_is_not_cheap_and_still_redelivers_them(
    tmp_path: Path,
) -> None:
    store = await _leased(tmp_path / "bus.db", CHEAP_EXPIRED + 1, ack_wait_ms=100)
    try:
        await asyncio.sleep(0.2)
        assert not _cheap(tmp_path / "bus.db")
        # The fetch that takes them (on the writer's thread) redelivers every one.
        result = await store.fetch_leases("c", now_ms(), 1000, SCAN)
        assert result is not None
        assert sorted(lease.deliveries for _, lease in result.leased) == [2] * (CHEAP_EXPIRED + 1)
    finally:
        await store.close()


async def test_a_fetch_with_many_waiting_events_due_is_not_cheap(tmp_path: Path) -> None:
    store = await _leased(tmp_path / "bus.db", CHEAP_DUE + 1, ack_wait_ms=60_000)
    try:
        leased = [event_id for event_id in range(1, CHEAP_DUE + 2)]
        settled = await store.settle("c", leased[:CHEAP_DUE], "nack", now_ms(), delay_ms=0)
        assert settled is not None
        assert _cheap(tmp_path / "bus.db")  # CHEAP_DUE due: still cheap
        await store.settle("c", leased[CHEAP_DUE:], "nack", now_ms(), delay_ms=0)
        assert not _cheap(tmp_path / "bus.db")
    finally:
        await store.close()


def test_only_filters_read_in_id_order_without_skipping_run_on_the_loop() -> None:
    def scan(**query: str) -> Scan:
        return Scan(EventQuery(**query), None, 10_000_000)  # type: ignore[arg-type]

    assert reads_only_what_it_leases(scan(topic="jobs.resize"))  # the topic index, in id order
    assert reads_only_what_it_leases(scan(topic=">"))  # every event read is leased
    # Each of these may walk past any number of events that do not match.
    assert not reads_only_what_it_leases(scan(topic="orders.>"))
    assert not reads_only_what_it_leases(scan(topic="orders.*.paid"))
    assert not reads_only_what_it_leases(scan(topic="jobs", source_trn="trn:user:alice:tool:x"))
    assert not reads_only_what_it_leases(scan(topic=">", target_trn="trn:org:acme:"))
    with_pattern = Scan(EventQuery(topic="jobs"), lambda event: True, 10_000_000)
    assert not reads_only_what_it_leases(with_pattern)
