"""The migration to partial indexes on the mostly-NULL columns (SQLite 4, PostgreSQL 5):
a store made by the previous version upgrades when it opens and keeps its events, and
a fresh one has the partial indexes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventbus_server.storage import EventQuery, NewEvent, PostgresStorage, SqliteStorage, Storage
from eventbus_server.storage.postgres import schema as pg_schema
from eventbus_server.storage.sqlite import schema as sqlite_schema
from tests import postgres
from tests.storage.old_schema import postgres_store_before, sqlite_store_before

PARTIAL = ("source_trn", "target_trn", "correlation_id")
EVENTS = [
    NewEvent("orders.created", {"n": 1}, 1000),
    NewEvent("orders.created", {"n": 2}, 1001, source_trn="trn:user:alice:tool:x"),
    NewEvent("orders.paid", {"n": 3}, 1002, target_trn="trn:org:acme:repo:api:v1"),
    NewEvent("orders.paid", {"n": 4}, 1003, correlation_id="c-1"),
]


async def _filtered(store: Storage) -> list[list[int]]:
    """Each partial index's column as a filter, and no filter: the ids found."""
    queries = [
        EventQuery(),
        EventQuery(source_trn="trn:user:"),
        EventQuery(source_trn="trn:user:alice:tool:x"),
        EventQuery(target_trn="trn:org:acme:*:api:v1"),
        EventQuery(correlation_id="c-1"),
    ]
    return [[event.event_id for event in await store.query(q)] for q in queries]


EXPECTED = [[1, 2, 3, 4], [2], [2], [3], [4]]


def _sqlite_indexes(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event_log'"
        )
        return {name: sql or "" for name, sql in rows}


async def test_sqlite_store_of_version_3_upgrades_and_keeps_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bus.db"
    version = await sqlite_store_before(path, sqlite_schema.PARTIAL_INDEXES, EVENTS, monkeypatch)
    assert version == 3
    assert "WHERE" not in _sqlite_indexes(path)["idx_event_log_source_trn"]

    store = SqliteStorage(path)
    await store.open()
    try:
        assert await _filtered(store) == EXPECTED
    finally:
        await store.close()
    indexes = _sqlite_indexes(path)
    for column in PARTIAL:
        assert indexes[f"idx_event_log_{column}"].endswith(f"WHERE {column} IS NOT NULL")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            sqlite_schema.SCHEMA_VERSION,
        )


async def test_sqlite_fresh_store_has_the_partial_indexes(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "bus.db")
    await store.open()
    await store.append(EVENTS)
    await store.close()
    indexes = _sqlite_indexes(tmp_path / "bus.db")
    for column in PARTIAL:
        assert indexes[f"idx_event_log_{column}"].endswith(f"WHERE {column} IS NOT NULL")
    assert "WHERE" not in indexes["idx_event_log_topic"]


async def _pg_indexes(store: PostgresStorage) -> dict[str, str]:
    async with store._connection() as conn:
        rows = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = 'event_log'"
        )
    return {name: definition for name, definition in rows}


async def test_postgres_schema_of_version_4_upgrades_and_keeps_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.storage_url(tmp_path)
    version = await postgres_store_before(
        url, "partial", pg_schema.PARTIAL_INDEXES, EVENTS, monkeypatch
    )
    assert version == 4

    store = PostgresStorage(url, bus_id="partial")
    await store.open()
    try:
        assert await _filtered(store) == EXPECTED
        indexes = await _pg_indexes(store)
        async with store._connection() as conn:
            assert (
                await conn.fetchval("SELECT MAX(version) FROM schema_version")
                == pg_schema.SCHEMA_VERSION
            )
    finally:
        await store.close()
    for column in PARTIAL:
        assert indexes[f"idx_event_log_{column}"].endswith(f"WHERE ({column} IS NOT NULL)")
    assert "WHERE" not in indexes["idx_event_log_topic"]
