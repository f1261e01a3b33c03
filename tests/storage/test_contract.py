"""One contract for every storage backend (DESIGN.md §8): the event log.

Each test takes the `storage` fixture (tests/storage/conftest.py), which runs
it once per backend in `backends.BACKENDS`; durable backends also run the
`reopen` tests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.config import BusConfig
from eventbus_core.errors import StorageUnavailable
from eventbus_core.event import now_ms
from eventbus_server.storage import (
    EventQuery,
    MemoryStorage,
    NewEvent,
    PostgresStorage,
    SchemaTooNew,
    SqliteStorage,
    Storage,
    open_storage,
)
from eventbus_server.storage.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from tests.ports import closed_port

T0 = 1_764_300_000_000


def new(topic: str = "orders.created", offset: int = 0, **fields: Any) -> NewEvent:
    fields.setdefault("payload", {"n": offset})
    return NewEvent(topic=topic, timestamp=T0 + offset, **fields)


async def ids(storage: Storage, **query: Any) -> list[int]:
    return [e.event_id for e in await storage.query(EventQuery(**query))]


# -- append ----------------------------------------------------------------------


async def test_append_assigns_increasing_ids_in_order(storage: Storage) -> None:
    first = await storage.append([new(offset=i) for i in range(3)])
    second = await storage.append([new(offset=3)])
    assert [e.payload for e in first] == [{"n": 0}, {"n": 1}, {"n": 2}]
    all_ids = [e.event_id for e in first + second]
    assert all_ids == sorted(set(all_ids)) and all_ids[0] >= 1
    assert all_ids == list(range(all_ids[0], all_ids[0] + 4))
    assert await ids(storage) == all_ids
    assert await storage.last_event_id() == all_ids[-1]
    assert await storage.count() == 4


@pytest.mark.parametrize("size", [1, 10, 500])  # small and large batches may take different paths
async def test_a_batch_keeps_its_order_its_ids_and_every_field(storage: Storage, size: int) -> None:
    payloads: list[Any] = [
        None,
        "ünïcode ✓",
        3.5,
        [1, {"a": None}],
        {"deep": {"list": [True, False]}},
    ]
    batch = [
        new(
            f"t.{i % 3}",
            i,
            payload=payloads[i % len(payloads)],
            metadata={"i": i} if i % 2 else None,
            source_trn="trn:user:a:b" if i % 4 == 0 else None,
            target_trn="trn:org:x:y" if i % 4 == 1 else None,
            correlation_id=f"c-{i}" if i % 4 == 2 else None,
        )
        for i in range(size)
    ]
    stored = await storage.append(batch)
    first = stored[0].event_id
    assert [e.event_id for e in stored] == list(range(first, first + size))
    assert await storage.query(EventQuery(limit=size)) == stored
    assert [
        (e.topic, e.payload, e.timestamp, e.metadata, e.source_trn, e.target_trn, e.correlation_id)
        for e in stored
    ] == [
        (n.topic, n.payload, n.timestamp, n.metadata, n.source_trn, n.target_trn, n.correlation_id)
        for n in batch
    ]


async def test_append_now_commits_before_it_returns_or_leaves_it_to_append(
    storage: Storage,
) -> None:
    stored = storage.append_now([new(offset=0), new(offset=1)])
    if isinstance(storage, PostgresStorage):
        assert stored is None  # every commit waits for the server
        assert await storage.count() == 0
        return
    assert stored is not None
    assert [e.payload for e in stored] == [{"n": 0}, {"n": 1}]
    assert await storage.query(EventQuery()) == stored
    if isinstance(storage, SqliteStorage):  # a large batch goes to the writer thread
        assert storage.append_now([new(offset=i) for i in range(2, 100)]) is None
        assert await storage.count() == 2


async def test_append_of_an_empty_batch_stores_nothing(storage: Storage) -> None:
    assert await storage.append([]) == []
    assert await storage.last_event_id() == 0
    assert await storage.count() == 0
    assert await storage.query(EventQuery()) == []
    assert await storage.list_topics() == []


async def test_stored_events_keep_every_field(storage: Storage) -> None:
    event = NewEvent(
        topic="repo.pushed",
        payload={"repo": "acme/api"},
        timestamp=T0,
        metadata={"trace": "t-1", "nested": {"a": [1, 2]}},
        source_trn="trn:user:alice:tool:openapi:github-api:v1.0",
        target_trn="trn:org:acme:repo:api:v1",
        correlation_id="c-7f3a",
        idempotency_key="k-1",
    )
    [appended] = await storage.append([event])
    [read] = await storage.query(EventQuery(topic="repo.pushed"))
    assert read == appended == event.stored(appended.event_id)


async def test_metadata_none_and_dict_round_trip(storage: Storage) -> None:
    await storage.append([new(metadata=None), new(metadata={}), new(metadata={"k": "v"})])
    assert [e.metadata for e in await storage.query(EventQuery())] == [None, {}, {"k": "v"}]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        0,
        -17,
        2**53 + 1,
        3.25,
        True,
        False,
        "",
        "plain",
        "ünïcødé ✓ 🎉 中文",
        [],
        [1, "two", None, 3.5, [4]],
        {},
        {"a": {"b": {"c": [1, {"d": None}]}}, "ключ": "значение"},
    ],
    ids=repr,
)
async def test_payload_of_every_json_type_round_trips(storage: Storage, payload: Any) -> None:
    await storage.append([new(payload=payload)])
    [event] = await storage.query(EventQuery())
    assert event.payload == payload
    assert type(event.payload) is type(payload)


# -- query filters -----------------------------------------------------------------


@pytest.fixture
async def mixed(storage: Storage) -> Storage:
    """Ten events over a few topics, sources, targets and correlation ids."""
    await storage.append(
        [
            new("orders.created", 0, source_trn="trn:user:alice:tool:x", correlation_id="c1"),
            new(
                "orders.paid",
                1,
                source_trn="trn:org:acme:workflow:etl:v1",
                target_trn="trn:org:acme:repo:api:v1",
            ),
            new("orders.eu.created", 2, source_trn="trn:org:acme:tool:y", correlation_id="c1"),
            new("users.created", 3, source_trn="trn:user:bob:tool:z"),
            new("_sys.bus.started", 4),
            new(
                "orders.created",
                5,
                source_trn="trn:org:other:tool:y",
                target_trn="trn:user:alice:inbox",
            ),
            new("orders", 6, correlation_id="c2"),
            new("_sys.rule.fired", 7, source_trn="trn:eventbus:global:rule:r1"),
            new(
                "users.deleted",
                8,
                source_trn="trn:user:alice:tool:x",
                target_trn="trn:org:acme:repo:api:v1",
            ),
            new("orders.paid", 9, source_trn="trn:org:acme", correlation_id="c1"),
        ]
    )
    return storage


async def offsets(storage: Storage, **query: Any) -> list[int]:
    return [e.payload["n"] for e in await storage.query(EventQuery(**query))]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("orders.created", [0, 5]),
        ("orders", [6]),
        ("orders.*", [0, 1, 5, 9]),
        ("*.created", [0, 3, 5]),
        ("orders.>", [0, 1, 2, 5, 9]),
        ("orders.*.created", [2]),
        ("*", [6]),
        (">", [0, 1, 2, 3, 5, 6, 8, 9]),
        ("_sys.>", [4, 7]),
        ("_sys.bus.started", [4]),
        ("nothing.here", []),
    ],
)
async def test_query_by_topic_pattern(mixed: Storage, topic: str, expected: list[int]) -> None:
    assert await offsets(mixed, topic=topic) == expected


@pytest.mark.parametrize(
    ("source_trn", "expected"),
    [
        ("trn:user:alice:tool:x", [0, 8]),
        ("trn:user:", [0, 3, 8]),
        ("trn:org:acme:*", [1, 2]),
        ("trn:org:*:tool:y", [2, 5]),
        ("trn:org:", [1, 2, 5, 9]),
        ("trn:org:acme", [9]),
        ("trn:nobody:", []),
    ],
)
async def test_query_by_source_trn(mixed: Storage, source_trn: str, expected: list[int]) -> None:
    assert await offsets(mixed, topic=">", source_trn=source_trn) == expected


async def test_query_by_target_trn(mixed: Storage) -> None:
    assert await offsets(mixed, target_trn="trn:org:acme:repo:api:v1") == [1, 8]
    assert await offsets(mixed, target_trn="trn:user:") == [5]
    assert await offsets(mixed, target_trn="trn:org:acme:*", source_trn="trn:user:") == [8]


async def test_query_by_correlation_id(mixed: Storage) -> None:
    assert await offsets(mixed, correlation_id="c1") == [0, 2, 9]
    assert await offsets(mixed, correlation_id="c1", topic="orders.*") == [0, 9]
    assert await offsets(mixed, correlation_id="missing") == []


async def test_query_by_time_range_is_inclusive(mixed: Storage) -> None:
    assert await offsets(mixed, from_ts=T0 + 5) == [5, 6, 8, 9]
    assert await offsets(mixed, to_ts=T0 + 2) == [0, 1, 2]
    assert await offsets(mixed, from_ts=T0 + 1, to_ts=T0 + 3) == [1, 2, 3]


async def test_since_is_an_exclusive_cursor_in_both_orders(mixed: Storage) -> None:
    every = await ids(mixed, topic=">")
    assert await ids(mixed, topic=">", since=every[3]) == every[4:]
    assert await ids(mixed, topic=">", since=every[-1]) == []
    assert await ids(mixed, topic=">", order="desc") == every[::-1]
    assert await ids(mixed, topic=">", order="desc", since=every[3]) == every[:3][::-1]
    assert await ids(mixed, topic=">", order="desc", since=every[0]) == []


async def test_limit_pages_through_everything(mixed: Storage) -> None:
    every = await ids(mixed, topic=">")
    seen: list[int] = []
    since = 0
    while page := await ids(mixed, topic=">", since=since, limit=3):
        assert len(page) <= 3
        seen += page
        since = page[-1]
    assert seen == every
    assert await ids(mixed, topic=">", order="desc", limit=2) == every[::-1][:2]


@pytest.mark.parametrize(
    "filters",
    [
        {"topic": "wanted.*.hit"},
        {"topic": "wanted.>"},
        {"source_trn": "trn:user:*:wanted"},
        {"correlation_id": "wanted"},
    ],
    ids=lambda f: next(iter(f.values())),
)
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_filters_that_skip_many_events_still_fill_the_limit(
    storage: Storage, filters: dict[str, Any], order: str
) -> None:
    batch = []
    for i in range(3000):
        if i % 100 == 50:
            batch.append(
                new("wanted.x.hit", i, source_trn="trn:user:u:wanted", correlation_id="wanted")
            )
        else:
            batch.append(new("noise.x.hit", i, source_trn="trn:user:u:noise"))
    await storage.append(batch)
    hits = await offsets(storage, limit=25, order=order, **filters)
    expected = list(range(50, 3000, 100))
    assert hits == (expected[:25] if order == "asc" else expected[::-1][:25])


# -- idempotency keys, topics, counts ------------------------------------------------


async def test_find_keys_counts_the_window_from_when_each_key_was_received(
    storage: Storage,
) -> None:
    received = now_ms()
    # Timestamps from long ago (T0), as a client or a CloudEvent's `time` may set them.
    stored = await storage.append(
        [
            new(offset=10, idempotency_key="a"),
            new(offset=11),
            new(offset=12, idempotency_key="b"),
        ]
    )
    found = await storage.find_keys(["a", "b", "unknown"], since_ts=received - 60_000)
    assert set(found) == {"a", "b"}
    assert (found["a"].event_id, found["a"].timestamp) == (stored[0].event_id, T0 + 10)
    assert found["b"].event_id == stored[2].event_id
    # A window that opens after they were received holds none of them.
    assert await storage.find_keys(["a", "b"], since_ts=now_ms() + 1) == {}
    assert await storage.find_keys([], since_ts=0) == {}


async def test_find_keys_takes_a_whole_batch_of_keys(storage: Storage) -> None:
    keys = [f"key-{i}" for i in range(5000)]
    stored = await storage.append([new(offset=i, idempotency_key=k) for i, k in enumerate(keys)])
    found = await storage.find_keys([*keys, "unknown"], since_ts=T0)
    assert {k: v.event_id for k, v in found.items()} == {
        k: e.event_id for k, e in zip(keys, stored, strict=True)
    }


async def test_reads_run_alongside_writes(storage: Storage) -> None:
    async def write(n: int) -> None:
        await storage.append([new("w", n * 10 + i) for i in range(10)])

    async def read() -> list[int]:
        return await ids(storage, topic="w", limit=10_000)

    results = await asyncio.gather(*(write(n) for n in range(10)), *(read() for _ in range(10)))
    for seen in results[10:]:
        assert seen == sorted(seen) and len(seen) % 10 == 0
    assert len(await read()) == 100


async def test_list_topics_counts_what_is_stored(mixed: Storage) -> None:
    stats = {s.topic: s for s in await mixed.list_topics()}
    every = await mixed.query(EventQuery(topic=">"))
    assert set(stats) == {
        "orders.created",
        "orders.paid",
        "orders.eu.created",
        "users.created",
        "users.deleted",
        "orders",
        "_sys.bus.started",
        "_sys.rule.fired",
    }
    assert stats["orders.created"].count == 2
    assert stats["orders.paid"].count == 2
    last_paid = [e for e in every if e.topic == "orders.paid"][-1]
    assert (stats["orders.paid"].last_event_id, stats["orders.paid"].last_timestamp) == (
        last_paid.event_id,
        last_paid.timestamp,
    )
    assert sum(s.count for s in stats.values()) == await mixed.count() == 10


async def test_prune_drops_the_oldest_events(storage: Storage) -> None:
    stored = await storage.append([new("a", i) for i in range(6)] + [new("b", 6)])
    assert await storage.prune(max_events=4, min_timestamp=None) == 3
    assert await ids(storage) == [e.event_id for e in stored[3:]]
    assert await storage.prune(max_events=None, min_timestamp=T0 + 5) == 2
    assert await ids(storage) == [e.event_id for e in stored[5:]]
    assert {s.topic: s.count for s in await storage.list_topics()} == {"a": 1, "b": 1}
    assert await storage.prune(max_events=10, min_timestamp=T0) == 0
    assert await storage.last_event_id() == stored[-1].event_id
    [later] = await storage.append([new("c", 7)])
    assert later.event_id == stored[-1].event_id + 1


async def test_close_is_safe_twice(storage: Storage) -> None:
    await storage.close()
    await storage.close()


# -- memory ring ---------------------------------------------------------------------


async def test_memory_ring_drops_the_oldest_but_ids_continue() -> None:
    ring = MemoryStorage(3)
    await ring.open()
    stored = await ring.append([new("a", 0), new("b", 1), new("a", 2)])
    stored += await ring.append([new("c", 3), new("a", 4)])
    assert [e.event_id for e in stored] == [1, 2, 3, 4, 5]
    assert await ids(ring) == [3, 4, 5]
    assert await ids(ring, since=1) == [3, 4, 5]
    assert await ids(ring, since=4) == [5]
    assert await ids(ring, order="desc", since=4) == [3]
    assert (await ring.count(), await ring.last_event_id()) == (3, 5)
    assert {s.topic: (s.count, s.last_event_id) for s in await ring.list_topics()} == {
        "a": (2, 5),
        "c": (1, 4),
    }


async def test_memory_ring_holds_at_most_max_bytes_of_events() -> None:
    ring = MemoryStorage(1000, max_bytes=10_000)  # about three events of 3 KB
    await ring.open()
    stored = await ring.append([new("big", i, payload="x" * 3000) for i in range(10)])
    assert await ids(ring) == [e.event_id for e in stored[-3:]]
    assert {s.topic: s.count for s in await ring.list_topics()} == {"big": 3}
    # One event larger than the bound alone is kept, as the newest always is.
    [huge] = await ring.append([new("huge", 10, payload="y" * 50_000)])
    assert await ids(ring) == [huge.event_id]
    # Small events fill it again; pruning keeps the count of bytes right.
    await ring.append([new("small", 20 + i) for i in range(20)])
    assert await ring.count() == 20
    assert await ring.prune(max_events=None, min_timestamp=T0 + 30) == 10
    await ring.append([new("big", 40 + i, payload="x" * 3000) for i in range(2)])
    assert [e.topic for e in await ring.query(EventQuery())] == ["small"] * 10 + ["big"] * 2


async def test_memory_keys_outlive_the_ring() -> None:
    ring = MemoryStorage(1)
    await ring.open()
    [first] = await ring.append([new(offset=0, idempotency_key="k")])
    await ring.append([new(offset=1)])
    assert (await ring.find_keys(["k"], since_ts=T0))["k"].event_id == first.event_id


# -- durable backends ----------------------------------------------------------------


async def test_events_survive_close_and_reopen(reopen: Callable[[], Storage]) -> None:
    store = reopen()
    await store.open()
    before = await store.append([new("a", 0, metadata={"m": 1}), new("b", 1)])
    await store.close()

    store = reopen()
    await store.open()
    try:
        assert await store.query(EventQuery()) == before
        [after] = await store.append([new("c", 2)])
        assert after.event_id == before[-1].event_id + 1
    finally:
        await store.close()


async def test_ids_are_never_reused_after_the_newest_event_is_deleted(
    reopen: Callable[[], Storage],
) -> None:
    store = reopen()
    await store.open()
    stored = await store.append([new(offset=i) for i in range(3)])
    assert await store.prune(max_events=None, min_timestamp=T0 + 100) == 3
    assert await store.count() == 0
    await store.close()

    store = reopen()
    await store.open()
    try:
        assert await store.last_event_id() == stored[-1].event_id
        [after] = await store.append([new(offset=3)])
        assert after.event_id == stored[-1].event_id + 1
    finally:
        await store.close()


# -- SQLite specifics ------------------------------------------------------------------


def schema_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [
            row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")
        ]


async def test_sqlite_creates_schema_once_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    for _ in range(2):
        store = SqliteStorage(path)
        await store.open()
        await store.append([new()])
        await store.close()
    assert schema_versions(path) == [v for v, m in enumerate(MIGRATIONS, start=1) if m is not None]
    with sqlite3.connect(path) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM event_log").fetchone()[0] == 2
    assert {"event_log", "rules", "rule_firings", "cursors", "schema_version"} <= tables
    assert {
        "idx_event_log_topic",
        "idx_event_log_source_trn",
        "idx_event_log_target_trn",
        "idx_event_log_correlation_id",
        "idx_event_log_timestamp",
        "idx_event_log_idempotency_key",
    } <= indexes


async def test_sqlite_refuses_a_database_from_a_newer_eventbus(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    store = SqliteStorage(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))

    store = SqliteStorage(path)
    with pytest.raises(
        SchemaTooNew, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade eventbus"
    ):
        await store.open()
    await store.close()


async def test_sqlite_full_durability_stores_events(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "full.db", durability="full")
    await store.open()
    try:
        [event] = await store.append([new()])
        assert await store.query(EventQuery()) == [event]
    finally:
        await store.close()


async def test_sqlite_locked_database_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    store = SqliteStorage(path, busy_timeout_ms=0)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable, match="database is locked"):
            await store.append([new()])
        other.execute("ROLLBACK")
        [event] = await store.append([new()])
        assert await store.query(EventQuery()) == [event]
    finally:
        other.close()
        await store.close()


async def test_sqlite_unopenable_file_is_storage_unavailable(tmp_path: Path) -> None:
    (tmp_path / "bus.db").mkdir()
    store = SqliteStorage(tmp_path / "bus.db")
    with pytest.raises(StorageUnavailable, match=r"bus\.db"):
        await store.open()
    await store.close()


async def test_closed_sqlite_storage_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "bus.db")
    await store.open()
    await store.close()
    with pytest.raises(StorageUnavailable, match="not open"):
        await store.append([new()])
    with pytest.raises(StorageUnavailable, match="not open"):
        await store.query(EventQuery())


# -- open_storage ------------------------------------------------------------------------


def test_open_storage_picks_the_backend_from_the_config(tmp_path: Path) -> None:
    memory = open_storage(BusConfig(id="m", listen="127.0.0.1:0", memory_buffer=7))
    assert isinstance(memory, MemoryStorage) and memory.capacity == 7
    sqlite = open_storage(
        BusConfig(
            id="s",
            listen="127.0.0.1:0",
            persist=True,
            storage_path=tmp_path / "s.db",
            durability="full",
        )
    )
    assert isinstance(sqlite, SqliteStorage)
    assert (sqlite.path, sqlite.durability) == (tmp_path / "s.db", "full")
    postgres = open_storage(
        BusConfig(
            id="p.1",
            listen="127.0.0.1:0",
            persist=True,
            storage_url="postgresql://u:pw@db/bus?ssl=disable",
        )
    )
    assert isinstance(postgres, PostgresStorage)
    # The bus's own schema by default; the password stays out of messages.
    assert (postgres.schema, postgres.url) == (
        "eventbus_p.1",
        "postgresql://u:pw@db/bus?ssl=disable",
    )
    assert postgres.where == "PostgreSQL db:5432/bus schema 'eventbus_p.1'"
    chosen = open_storage(
        BusConfig(
            id="p",
            listen="127.0.0.1:0",
            persist=True,
            storage_url="postgresql://db/bus?schema=team_a",
        )
    )
    assert isinstance(chosen, PostgresStorage)
    assert (chosen.schema, chosen.url) == ("team_a", "postgresql://db/bus")


async def test_postgres_that_cannot_be_reached_is_storage_unavailable() -> None:
    storage = PostgresStorage(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", bus_id="x")
    with pytest.raises(
        StorageUnavailable,
        match=r"PostgreSQL 127\.0\.0\.1:\d+/test schema 'eventbus_x' is unavailable",
    ):
        await storage.open()
