"""The plan of each `poll_events` shape, from the database's own EXPLAIN, so that a plan
cannot silently regress to a walk of the whole log: a narrow range (time, topic prefix,
TRN prefix or a pattern's literal part) is read by its index, an equality by its index
in id order, and a wide range or no filter by id from the cursor. SQLite and
PostgreSQL (30,000 events, ANALYZEd) alike."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus_server.storage import EventQuery, NewEvent, PostgresStorage
from eventbus_server.storage.sql import INSERT_EVENT_QMARK, PROBE_CAPS, event_row, range_probe
from eventbus_server.storage.sqlite.reading import plan_events
from eventbus_server.storage.sqlite.schema import migrate
from tests import postgres

COUNT = 30_000
BY_ID = "by id"


def _events() -> list[NewEvent]:
    events = []
    for n in range(COUNT):
        events.append(
            NewEvent(
                "rare.x" if n % 3000 == 7 else f"svc{n % 10}.e{n % 50}.done",
                {"n": n},
                1_000_000 + n,
                source_trn=f"trn:user:u{n % 400}:tool:app{n % 7}" if n % 10 < 3 else None,
                target_trn=f"trn:org:o{n % 50}:repo:r{n % 100}" if n % 10 >= 8 else None,
                correlation_id=f"c-{n // 4}" if n % 10 < 4 else None,
            )
        )
    return events


#: (shape, query, the index that must read it, or BY_ID for the primary key)
SHAPES = [
    ("time range, 100 ms", EventQuery(from_ts=1_015_000, to_ts=1_015_099), "timestamp"),
    ("time range, the last 50 ms", EventQuery(from_ts=1_029_950), "timestamp"),
    ("time range, 5,000 rows", EventQuery(from_ts=1_010_000, to_ts=1_014_999), "timestamp"),
    (
        "time range, newest first",
        EventQuery(from_ts=1_029_950, order="desc", since=COUNT - 10),
        "timestamp",
    ),
    ("rare topic prefix", EventQuery(topic="rare.>"), "topic"),
    ("rare topic prefix, after a cursor", EventQuery(topic="rare.>", since=20_000), "topic"),
    ("source_trn prefix", EventQuery(source_trn="trn:user:u7:"), "source_trn"),
    ("source_trn prefix, no match", EventQuery(source_trn="trn:user:nobody:"), "source_trn"),
    ("source_trn wildcard", EventQuery(source_trn="trn:user:u7:*:app0"), "source_trn"),
    ("target_trn wildcard", EventQuery(target_trn="trn:org:o3:*:r3"), "target_trn"),
    (
        "time range and a rarer topic prefix",
        EventQuery(topic="rare.>", from_ts=1_000_000, to_ts=1_010_000),
        "topic",
    ),
    ("exact topic", EventQuery(topic="rare.x"), "topic"),
    ("exact source_trn", EventQuery(source_trn="trn:user:u7:tool:app0"), "source_trn"),
    ("correlation id", EventQuery(correlation_id="c-100"), "correlation_id"),
    ("wide topic prefix", EventQuery(topic="svc1.>"), BY_ID),
    ("wide time range", EventQuery(from_ts=1_000_000), BY_ID),
    ("wide source_trn prefix", EventQuery(source_trn="trn:user:"), BY_ID),
    ("no filter, deep cursor", EventQuery(since=29_000), BY_ID),
    ("topic wildcard", EventQuery(topic="*.e3.*"), BY_ID),
]
IDS = [shape for shape, _, _ in SHAPES]


# -- SQLite: EXPLAIN QUERY PLAN ------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = tmp_path_factory.mktemp("plans") / "bus.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    conn.execute("BEGIN")
    conn.executemany(
        INSERT_EVENT_QMARK,
        [event_row(e) for e in _events()],
    )
    conn.execute("COMMIT")
    try:
        yield conn
    finally:
        conn.close()


def _sqlite_plan(conn: sqlite3.Connection, sql: str, params: list[object]) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@pytest.mark.parametrize(("shape", "query", "index"), SHAPES, ids=IDS)
def test_sqlite_reads_each_shape_by_the_right_index(
    sqlite_log: sqlite3.Connection, shape: str, query: EventQuery, index: str
) -> None:
    select = plan_events(sqlite_log, query)
    plan = _sqlite_plan(sqlite_log, select.sql, select.params)
    if index == BY_ID:
        assert plan[0].startswith("SEARCH event_log USING INTEGER PRIMARY KEY"), plan
    else:
        assert plan[0].startswith(f"SEARCH event_log USING INDEX idx_event_log_{index} ("), plan
    # A range read whole is sorted by id; an equality or the walk by id needs no sort.
    is_range = index != BY_ID and "=" not in plan[0]
    assert ("USE TEMP B-TREE FOR ORDER BY" in plan) == is_range, plan


@pytest.mark.parametrize(("shape", "query", "index"), SHAPES, ids=IDS)
def test_sqlite_counts_each_range_from_its_index_alone(
    sqlite_log: sqlite3.Connection, shape: str, query: EventQuery, index: str
) -> None:
    drivers, probe = range_probe(query, "qmark", PROBE_CAPS)
    if not drivers:
        return
    plan = _sqlite_plan(sqlite_log, probe.sql, probe.params)
    searches = [line for line in plan if line.startswith("SEARCH")]
    assert len(searches) == len(drivers), plan
    for driver, line in zip(drivers, searches, strict=True):
        assert line.startswith(f"SEARCH event_log USING COVERING INDEX idx_event_log_{driver} ")


# -- PostgreSQL: EXPLAIN on an ANALYZEd table -----------------------------------------


async def test_postgres_reads_each_shape_by_the_right_index(tmp_path: Path) -> None:
    store = PostgresStorage(postgres.storage_url(tmp_path), bus_id="plans")
    await store.open()
    try:
        events = _events()
        for start in range(0, COUNT, 5000):
            await store.append(events[start : start + 5000])
        async with store._connection() as conn:
            await conn.execute("ANALYZE event_log")
        wrong = {}
        for shape, query, index in SHAPES:
            plan = await _postgres_plan(store, query)
            name = "event_log_pkey" if index == BY_ID else f"idx_event_log_{index}"
            if name not in plan or "Seq Scan" in plan:
                wrong[shape] = plan
    finally:
        await store.close()
    assert not wrong, "\n\n".join(
        f"{shape} (wants {dict(s[::2] for s in SHAPES)[shape]}):\n{plan}"
        for shape, plan in wrong.items()
    )


async def _postgres_plan(store: PostgresStorage, query: EventQuery) -> str:
    select = await store._plan(query)
    async with store._connection() as conn:
        rows = await conn.fetch(f"EXPLAIN {select.sql}", *select.params)
    return "\n".join(row[0] for row in rows)
