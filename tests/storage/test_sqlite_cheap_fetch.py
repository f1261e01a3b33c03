"""On SQLite (durability normal) a small fetch commits on the event loop only when it has
little else to do: few leases ran out (each becomes waiting or dead in the same
transaction) and few waiting events are due (sorted by id). Past either bound it goes to
the writer's thread, so 10,000 leases running out at once never hold the loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from eventbus_core.event import NewEvent, now_ms
from eventbus_server.storage import EventQuery, SqliteStorage
from eventbus_server.storage.consumers import ConsumerConfig, Scan
from eventbus_server.storage.sqlite.consumers import CHEAP_DUE, CHEAP_EXPIRED, cheap_to_fetch

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
