"""`poll_events`' answers do not depend on the plan: on random logs and random queries,
SQLite (every plan it can pick, and the one it picks) and PostgreSQL return what the
memory store returns, in the same order, with the same cursor and limit."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus_server.storage import EventQuery, MemoryStorage, NewEvent, PostgresStorage
from eventbus_server.storage.postgres import store as pg_store
from eventbus_server.storage.sql import (
    INSERT_EVENT_QMARK,
    Driver,
    event_row,
    range_probe,
    select_events,
)
from eventbus_server.storage.sqlite import reading
from eventbus_server.storage.sqlite.schema import migrate
from tests import postgres

TOPICS = [
    "a.b",
    "a.b.c",
    "a.c",
    "a.bb.c",
    "ab.c",
    "rare.x",
    "rare.y.z",
    "b",
    "b.a",
    "_sys.a",
    "_sys.b.c",
]
TOPIC_PATTERNS = [
    ">",
    "a.>",
    "a.b",
    "a.*",
    "*.c",
    "a.*.c",
    "*.b.>",
    "rare.>",
    "_sys.>",
    "b",
    "zz.>",
    "*",
]
TRNS = [
    "trn:user:alice:tool:x",
    "trn:user:alice:tool:y:v1",
    "trn:user:bob:tool:x",
    "trn:user:bob:agent:x@sha256:ab12",
    "trn:org:acme:repo:api:v1",
    "trn:org:acme_2:repo:api:v1",
    "trn:org:acme:repo",
]
TRN_PATTERNS = [
    "trn:user:",
    "trn:user:alice:",
    "trn:user:alice:tool:x",
    "trn:user:*:tool:x",
    "trn:user:*:tool:*",
    "trn:*:acme:repo:*",
    "trn:org:acme_2:*:api:v1",
    "trn:user:bob:agent:x@sha256:ab12",
    "trn:nobody:",
]
CORRELATIONS = ["c-1", "c-2", "c-3"]
ALL_DRIVERS: tuple[Driver, ...] = (
    None,
    "event_id",
    "timestamp",
    "topic",
    "source_trn",
    "target_trn",
)

events_strategy = st.lists(
    st.builds(
        NewEvent,
        topic=st.sampled_from(TOPICS),
        payload=st.integers(0, 9),
        timestamp=st.integers(1000, 1060),
        source_trn=st.none() | st.sampled_from(TRNS),
        target_trn=st.none() | st.sampled_from(TRNS),
        correlation_id=st.none() | st.sampled_from(CORRELATIONS),
    ),
    max_size=60,
)
queries_strategy = st.builds(
    EventQuery,
    topic=st.sampled_from(TOPIC_PATTERNS),
    since=st.integers(0, 70),
    limit=st.integers(1, 12),
    source_trn=st.none() | st.sampled_from(TRN_PATTERNS),
    target_trn=st.none() | st.sampled_from(TRN_PATTERNS),
    correlation_id=st.none() | st.sampled_from(CORRELATIONS),
    from_ts=st.none() | st.integers(995, 1065),
    to_ts=st.none() | st.integers(995, 1065),
    order=st.sampled_from(["asc", "desc"]),
)


def _memory(events: Sequence[NewEvent]) -> MemoryStorage:
    store = MemoryStorage(10_000)
    asyncio.run(store.append(events))
    return store


def _sqlite(events: Sequence[NewEvent]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, ":memory:")
    conn.executemany(
        INSERT_EVENT_QMARK,
        [event_row(e) for e in events],
    )
    return conn


def _caps(cap: int) -> dict[str, int]:
    return {"timestamp": cap, "topic": cap, "source_trn": cap, "target_trn": cap}


def _applicable(query: EventQuery) -> list[Driver]:
    """The plans SQLite can run `query` by: its own choice, by id, each of its ranges."""
    drivers, _ = range_probe(query, "qmark", _caps(1))
    return [None, "event_id", *drivers]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, queries=st.lists(queries_strategy, min_size=1, max_size=8))
def test_every_sqlite_plan_answers_as_the_memory_store_does(
    events: list[NewEvent], queries: list[EventQuery]
) -> None:
    memory = _memory(events)
    conn = _sqlite(events)
    try:
        for query in queries:
            expected = asyncio.run(memory.query(query))
            for driver in _applicable(query):
                found = reading.collect(conn, query, select_events(query, "qmark", driver=driver))
                assert found == expected, (query, driver)
            assert reading.read_events(conn, query) == expected, query
    finally:
        conn.close()


@pytest.mark.parametrize("cap", [1, 5, 40])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, queries=st.lists(queries_strategy, min_size=1, max_size=8))
def test_the_picked_plan_answers_the_same_whatever_the_cap(
    cap: int, events: list[NewEvent], queries: list[EventQuery]
) -> None:
    memory = _memory(events)
    conn = _sqlite(events)
    try:
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(reading, "PROBE_CAPS", _caps(cap))
            for query in queries:
                assert reading.read_events(conn, query) == asyncio.run(memory.query(query))
    finally:
        conn.close()


def _random_events(rng: random.Random, count: int) -> list[NewEvent]:
    return [
        NewEvent(
            rng.choice(TOPICS),
            rng.randrange(10),
            rng.randrange(1000, 1060),
            source_trn=rng.choice([None, None, *TRNS]),
            target_trn=rng.choice([None, None, None, *TRNS]),
            correlation_id=rng.choice([None, *CORRELATIONS]),
        )
        for _ in range(count)
    ]


def _random_query(rng: random.Random) -> EventQuery:
    def maybe(values: Sequence[object]) -> object:
        return rng.choice([None, *values]) if rng.random() < 0.5 else None

    from_ts = rng.choice([None, rng.randrange(995, 1065)])
    return EventQuery(
        topic=rng.choice(TOPIC_PATTERNS),
        since=rng.choice([0, rng.randrange(0, 2100)]),
        limit=rng.randrange(1, 60),
        source_trn=maybe(TRN_PATTERNS),  # type: ignore[arg-type]
        target_trn=maybe(TRN_PATTERNS),  # type: ignore[arg-type]
        correlation_id=maybe(CORRELATIONS),  # type: ignore[arg-type]
        from_ts=from_ts,
        to_ts=rng.choice([None, None, (from_ts or 1000) + rng.randrange(0, 20)]),
        order=rng.choice(["asc", "desc"]),
    )


async def test_postgres_answers_as_the_memory_store_does_whatever_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(14)
    events = _random_events(rng, 2000)
    memory = MemoryStorage(10_000)
    await memory.append(events)
    store = PostgresStorage(postgres.storage_url(tmp_path), bus_id="differential")
    await store.open()
    try:
        await store.append(events)
        for cap in (1, 30, 2000):
            monkeypatch.setattr(pg_store, "PROBE_CAPS", _caps(cap))
            for _ in range(150):
                query = _random_query(rng)
                expected = await memory.query(query)
                assert await store.query(query) == expected, (query, cap)
    finally:
        await store.close()
