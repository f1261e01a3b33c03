"""A store made by an older eventbus: the schema up to (not including) a given
migration, and events written as that version wrote them, so a test can open it
with today's code and watch it upgrade."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventbus_core.event import NEW_EVENT_FIELDS
from eventbus_server.storage import NewEvent, PostgresStorage, SqliteStorage
from eventbus_server.storage.postgres import schema as pg_schema
from eventbus_server.storage.sql import event_row
from eventbus_server.storage.sqlite import schema as sqlite_schema

#: What every version before `received_at` inserted (that column is event_row's last).
_OLD_COLUMNS = ", ".join(NEW_EVENT_FIELDS)


def _old_rows(events: Sequence[NewEvent]) -> list[tuple[object, ...]]:
    return [event_row(event)[: len(NEW_EVENT_FIELDS)] for event in events]


def _before(migrations: tuple[object, ...], migration: object) -> tuple[object, ...]:
    return migrations[: migrations.index(migration)]


async def sqlite_store_before(
    path: Path, migration: object, events: Sequence[NewEvent], monkeypatch: pytest.MonkeyPatch
) -> int:
    """A SQLite file at the version before `migration`, holding `events`; its version."""
    with monkeypatch.context() as patched:
        previous = _before(sqlite_schema.MIGRATIONS, migration)
        patched.setattr(sqlite_schema, "MIGRATIONS", previous)
        patched.setattr(sqlite_schema, "SCHEMA_VERSION", len(previous))
        patched.setattr(sqlite_schema, "_DEFINED", frozenset(range(1, len(previous) + 1)))
        store = SqliteStorage(path)
        await store.open()
        await store.close()
    with sqlite3.connect(path) as conn:
        placeholders = ", ".join("?" * len(NEW_EVENT_FIELDS))
        conn.executemany(
            f"INSERT INTO event_log ({_OLD_COLUMNS}) VALUES ({placeholders})", _old_rows(events)
        )
    return len(previous)


async def postgres_store_before(
    url: str,
    bus_id: str,
    migration: object,
    events: Sequence[NewEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    """A PostgreSQL schema at the version before `migration`, holding `events`; its version."""
    with monkeypatch.context() as patched:
        previous = _before(pg_schema.MIGRATIONS, migration)
        patched.setattr(pg_schema, "MIGRATIONS", previous)
        patched.setattr(pg_schema, "SCHEMA_VERSION", len(previous))
        store = PostgresStorage(url, bus_id=bus_id)
        await store.open()
        try:
            placeholders = ", ".join(f"${n}" for n in range(1, len(NEW_EVENT_FIELDS) + 1))
            async with store._connection() as conn:
                await conn.executemany(
                    f"INSERT INTO event_log ({_OLD_COLUMNS}) VALUES ({placeholders})",
                    _old_rows(events),
                )
        finally:
            await store.close()
    return len(previous)
