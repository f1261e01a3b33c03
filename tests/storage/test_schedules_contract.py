"""One contract for every storage backend (DESIGN.md §11): delayed events and schedules.

Each test runs once per backend (tests/storage/conftest.py); `reopen` tests on
the durable ones. Times are fixed epoch ms, so nothing here waits for a clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.errors import AlreadyExists, Overloaded
from eventbus_server.storage import EventQuery, PostgresStorage, Storage
from eventbus_server.storage.base import ScheduledEvent, StoredSchedule
from tests import postgres

T0 = 1_764_300_000_000  # a whole minute
BUS = "contract"


def delayed(schedule_id: str, deliver_at: int, **fields: Any) -> ScheduledEvent:
    fields.setdefault("topic", "later")
    fields.setdefault("payload", {"id": schedule_id})
    return ScheduledEvent(schedule_id, deliver_at, T0, **fields)


def every(schedule_id: str, every_ms: int, now_ms: int = T0, **event: Any) -> StoredSchedule:
    schedule = StoredSchedule(
        schedule_id,
        {
            "every_ms": every_ms,
            "timezone": "UTC",
            "event": {"topic": "tick", "payload": {"s": schedule_id}, **event},
        },
        True,
        None,
        created_at=now_ms,
        updated_at=now_ms,
    )
    schedule.next_tick = schedule.first_tick(now_ms)
    return schedule


async def test_delayed_events_are_appended_when_due_in_due_order_and_only_once(
    storage: Storage,
) -> None:
    await storage.add_scheduled(
        [delayed("c", T0 + 300), delayed("a", T0 + 100, timestamp=5), delayed("b", T0 + 200)],
        max_pending=10,
    )
    assert await storage.next_due() == T0 + 100
    assert await storage.append_due(T0 + 99, bus_id=BUS, limit=100) == []
    stored = await storage.append_due(T0 + 250, bus_id=BUS, limit=100)
    assert [e.payload for e in stored] == [{"id": "a"}, {"id": "b"}]
    # The emitter's timestamp is kept; none given: the time it was appended.
    assert [e.timestamp for e in stored] == [5, T0 + 250]
    assert await storage.query(EventQuery()) == stored
    assert (
        await storage.append_due(T0 + 250, bus_id=BUS, limit=100) == []
    )  # taken off the pending set
    assert [s.schedule_id for s in await storage.list_scheduled(after=None, limit=10)] == ["c"]
    assert await storage.next_due() == T0 + 300


async def test_append_due_is_bounded_per_call(storage: Storage) -> None:
    await storage.add_scheduled([delayed(f"d{i:03}", T0 + i) for i in range(25)], max_pending=100)
    first = await storage.append_due(T0 + 1000, bus_id=BUS, limit=10)
    second = await storage.append_due(T0 + 1000, bus_id=BUS, limit=10)
    third = await storage.append_due(T0 + 1000, bus_id=BUS, limit=10)
    assert [len(first), len(second), len(third)] == [10, 10, 5]
    ids = [e.event_id for e in first + second + third]
    assert ids == sorted(ids)
    assert [e.payload["id"] for e in first + second + third] == [f"d{i:03}" for i in range(25)]


async def test_cancel_list_and_the_cap(storage: Storage) -> None:
    await storage.add_scheduled([delayed(f"s{i}", T0 + 10 - i) for i in range(4)], max_pending=4)
    with pytest.raises(Overloaded, match="max_scheduled"):
        await storage.add_scheduled([delayed("one-more", T0)], max_pending=4)
    assert await storage.cancel_scheduled("s1") is True
    assert await storage.cancel_scheduled("s1") is False
    assert await storage.cancel_scheduled("nope") is False
    page = await storage.list_scheduled(after=None, limit=2)
    assert [s.schedule_id for s in page] == ["s3", "s2"]  # due first
    rest = await storage.list_scheduled(after=(page[-1].deliver_at, page[-1].schedule_id), limit=2)
    assert [s.schedule_id for s in rest] == ["s0"]
    await storage.add_scheduled([delayed("fits", T0)], max_pending=4)  # the cancelled one made room


async def test_a_pending_idempotency_key_answers_with_the_first_event(storage: Storage) -> None:
    [first] = await storage.add_scheduled(
        [delayed("first", T0 + 5, idempotency_key="k")], max_pending=10
    )
    again, other, twin = await storage.add_scheduled(
        [
            delayed("again", T0 + 9, idempotency_key="k"),
            delayed("other", T0 + 9, idempotency_key="j"),
            delayed("twin", T0 + 9, idempotency_key="j"),
        ],
        max_pending=10,
    )
    assert again == first and other.schedule_id == "other" and twin == other
    assert {s.schedule_id for s in await storage.list_scheduled(after=None, limit=10)} == {
        "first",
        "other",
    }
    [event] = await storage.append_due(T0 + 5, bus_id=BUS, limit=10)
    assert event.payload == {"id": "first"}
    # Appended, the key no longer names a pending event.
    [later] = await storage.add_scheduled(
        [delayed("later", T0 + 50, idempotency_key="k")], max_pending=10
    )
    assert later.schedule_id == "later"


async def test_a_schedule_ticks_once_per_tick_and_only_its_latest_missed_tick(
    storage: Storage,
) -> None:
    schedule = every("heartbeat", 1000, T0 + 10, source_trn=None, metadata={"m": 1})
    assert await storage.put_schedule(schedule, replace=False, max_schedules=10) is True
    assert (await storage.get_schedule("heartbeat")).next_tick == T0 + 1000  # type: ignore[union-attr]
    assert await storage.next_due() == T0 + 1000
    assert await storage.append_due(T0 + 999, bus_id=BUS, limit=10) == []
    [tick] = await storage.append_due(T0 + 1003, bus_id=BUS, limit=10)
    assert tick.topic == "tick" and tick.payload == {"s": "heartbeat"}
    assert tick.metadata == {"m": 1, "schedule": {"id": "heartbeat", "tick": T0 + 1000}}
    assert tick.source_trn == f"trn:eventbus:{BUS}:schedule:heartbeat"
    assert (
        await storage.append_due(T0 + 1500, bus_id=BUS, limit=10) == []
    )  # this tick fired already
    # Down from 2 s to 9.5 s: ticks 2..9 were missed; only 9 s is emitted.
    [late] = await storage.append_due(T0 + 9500, bus_id=BUS, limit=10)
    assert late.metadata["schedule"]["tick"] == T0 + 9000  # type: ignore[index]
    stored = await storage.get_schedule("heartbeat")
    assert stored is not None
    assert (stored.last_tick, stored.next_tick, stored.ticks) == (T0 + 9000, T0 + 10_000, 2)


async def test_schedules_put_replace_list_switch_delete(storage: Storage) -> None:
    for i in range(3):
        await storage.put_schedule(every(f"s{i}", 60_000), replace=False, max_schedules=3)
    with pytest.raises(Overloaded, match="max_schedules"):
        await storage.put_schedule(every("s9", 60_000), replace=False, max_schedules=3)
    with pytest.raises(AlreadyExists, match="replace: true"):
        await storage.put_schedule(every("s0", 60_000), replace=False, max_schedules=3)
    await storage.append_due(T0 + 60_000, bus_id=BUS, limit=10)
    # Replacing keeps the counters; it is not one more schedule.
    assert (
        await storage.put_schedule(every("s0", 5000, T0 + 60_000), replace=True, max_schedules=3)
        is False
    )
    s0 = await storage.get_schedule("s0")
    assert (
        s0 is not None
        and s0.body["every_ms"] == 5000
        and s0.ticks == 1
        and s0.last_tick == T0 + 60_000
    )
    assert s0.created_at == T0
    assert [s.id for s in await storage.list_schedules(after_id=None, limit=2)] == ["s0", "s1"]
    assert [s.id for s in await storage.list_schedules(after_id="s1", limit=2)] == ["s2"]

    off = await storage.set_schedule_enabled("s1", False, T0 + 61_000)
    assert off is not None and off.enabled is False and off.next_tick is None
    assert await storage.append_due(T0 + 200_000, bus_id=BUS, limit=10) != []
    assert (await storage.get_schedule("s1")).ticks == 1  # type: ignore[union-attr]  # none while off
    on = await storage.set_schedule_enabled("s1", True, T0 + 300_000)
    assert on is not None and on.next_tick == T0 + 360_000  # no catching up on the time it was off
    assert await storage.set_schedule_enabled("nope", True, T0) is None
    assert await storage.delete_schedule("s1") is True
    assert await storage.delete_schedule("s1") is False
    assert await storage.get_schedule("s1") is None


async def test_delayed_events_and_ticks_share_one_append_in_due_order(storage: Storage) -> None:
    await storage.put_schedule(every("tock", 1000), replace=False, max_schedules=10)
    await storage.add_scheduled(
        [delayed("before", T0 + 999), delayed("after", T0 + 1001)], max_pending=10
    )
    stored = await storage.append_due(T0 + 1001, bus_id=BUS, limit=10)
    assert [e.topic for e in stored] == ["later", "tick", "later"]
    assert [e.event_id for e in stored] == sorted(e.event_id for e in stored)


async def test_pending_events_and_schedules_survive_a_reopen(reopen: Callable[[], Storage]) -> None:
    store = reopen()
    await store.open()
    try:
        await store.add_scheduled(
            [delayed("kept", T0 + 5, payload={"big": "x" * 1000})], max_pending=10
        )
        await store.put_schedule(every("kept", 1000), replace=False, max_schedules=10)
    finally:
        await store.close()
    store = reopen()
    await store.open()
    try:
        [item] = await store.list_scheduled(after=None, limit=10)
        assert item.payload == {"big": "x" * 1000}
        schedule = await store.get_schedule("kept")
        assert schedule is not None and schedule.next_tick == T0 + 1000
        assert len(await store.append_due(T0 + 1000, bus_id=BUS, limit=10)) == 2
    finally:
        await store.close()


async def test_two_postgres_nodes_append_each_due_item_once(tmp_path: Path) -> None:
    """Two stores on one schema racing through the same due items: each is appended once."""
    url = postgres.storage_url(tmp_path)
    nodes = [PostgresStorage(url, bus_id=BUS), PostgresStorage(url, bus_id=BUS)]
    for node in nodes:
        await node.open()
    try:
        await nodes[0].add_scheduled(
            [delayed(f"d{i:04}", T0 + i) for i in range(600)], max_pending=1000
        )
        for i in range(20):
            await nodes[1].put_schedule(every(f"s{i:02}", 1000), replace=False, max_schedules=100)

        async def drain(node: PostgresStorage) -> list[Any]:
            events = []
            while batch := await node.append_due(T0 + 1000, bus_id=BUS, limit=50):
                events += batch
                await asyncio.sleep(0)
            return events

        a, b = await asyncio.gather(drain(nodes[0]), drain(nodes[1]))
        assert a and b  # both took a share
        keys = Counter(e.payload.get("id") or e.payload.get("s") for e in a + b)
        assert len(keys) == 620 and set(keys.values()) == {1}
        stored = await nodes[0].query(EventQuery(limit=10_000))
        assert len(stored) == 620
    finally:
        for node in nodes:
            await node.close()


# -- a reserved migration version that lands later ---------------------------------------
#
# Schedules took SQLite 3 / PostgreSQL 4 while consumers' 2 / 3 were still on their
# branch, with None in their place. These tests make such a gap at the end of today's
# list: a database migrated without the reserved version gets it once it lands.


def _with_gap(migrations: tuple[object, ...], reserved: object) -> tuple[object, ...]:
    return (*migrations, reserved, ("CREATE TABLE landed_after (x INTEGER)",))


async def test_sqlite_applies_a_reserved_version_when_it_lands_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from eventbus_server.storage import SqliteStorage
    from eventbus_server.storage.sqlite import schema

    today = schema.MIGRATIONS
    path = tmp_path / "bus.db"

    def reopen(migrations: tuple[object, ...]) -> None:
        monkeypatch.setattr(schema, "MIGRATIONS", migrations)
        monkeypatch.setattr(schema, "SCHEMA_VERSION", len(migrations))
        monkeypatch.setattr(
            schema, "_DEFINED", frozenset(v for v, m in enumerate(migrations, 1) if m is not None)
        )

    async def open_and_close() -> list[int]:
        store = SqliteStorage(path)
        await store.open()
        await store.close()
        with sqlite3.connect(path) as conn:
            return [
                row[0]
                for row in conn.execute("SELECT version FROM schema_version ORDER BY version")
            ]

    reopen(_with_gap(today, None))
    reserved = len(today) + 1
    assert reserved not in await open_and_close()
    reopen(_with_gap(today, ("CREATE TABLE landed_later (x INTEGER)",)))
    assert await open_and_close() == list(range(1, len(today) + 3))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM landed_later").fetchone()[0] == 0


async def test_postgres_applies_a_reserved_version_when_it_lands_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventbus_server.storage.postgres import schema

    today = schema.MIGRATIONS
    url = postgres.storage_url(tmp_path)

    async def open_with(migrations: tuple[object, ...]) -> list[int]:
        monkeypatch.setattr(schema, "MIGRATIONS", migrations)
        monkeypatch.setattr(schema, "SCHEMA_VERSION", len(migrations))
        store = PostgresStorage(url, bus_id=BUS)
        await store.open()
        try:
            async with store._connection() as conn:
                return [
                    row[0]
                    for row in await conn.fetch(
                        "SELECT version FROM schema_version ORDER BY version"
                    )
                ]
        finally:
            await store.close()

    reserved = len(today) + 1
    assert reserved not in await open_with(_with_gap(today, None))
    assert await open_with(_with_gap(today, ("CREATE TABLE landed_later (x INTEGER)",))) == list(
        range(1, len(today) + 3)
    )
