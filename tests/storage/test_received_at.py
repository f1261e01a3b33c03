"""The dedup window counts from when a keyed event was received (`received_at`, SQLite
migration 5, PostgreSQL 6), not from its timestamp, which a client may set. Rows an
older eventbus wrote have no `received_at`; their timestamp stands in, as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventbus_core.event import now_ms
from eventbus_server.storage import NewEvent, PostgresStorage, SqliteStorage, Storage
from eventbus_server.storage.postgres import schema as pg_schema
from eventbus_server.storage.sqlite import schema as sqlite_schema
from tests import postgres
from tests.storage.old_schema import postgres_store_before, sqlite_store_before

MINUTE = 60_000


def _adding_received_at(migrations: tuple[tuple[str, ...] | None, ...]) -> tuple[str, ...]:
    return next(m for m in migrations if m is not None and "ADD COLUMN received_at" in m[0])


async def _upgraded_store_keeps_old_keys_by_timestamp(store: Storage) -> None:
    await store.open()
    try:
        now = now_ms()
        # Written before the column: found while their timestamp is in the window.
        assert set(await store.find_keys(["recent", "stale"], since_ts=now - 10 * MINUTE)) == {
            "recent"
        }
        # Written after it, with a timestamp from last week: found by when it came in.
        await store.append([NewEvent("t", 3, now - 7 * 24 * 60 * MINUTE, idempotency_key="new")])
        assert set(await store.find_keys(["new"], since_ts=now - 10 * MINUTE)) == {"new"}
    finally:
        await store.close()


def _old_events() -> list[NewEvent]:
    now = now_ms()
    return [
        NewEvent("t", 1, now - MINUTE, idempotency_key="recent"),
        NewEvent("t", 2, now - 60 * MINUTE, idempotency_key="stale"),
    ]


async def test_sqlite_rows_from_before_received_at_keep_their_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bus.db"
    received_at = _adding_received_at(sqlite_schema.MIGRATIONS)
    await sqlite_store_before(path, received_at, _old_events(), monkeypatch)
    await _upgraded_store_keeps_old_keys_by_timestamp(SqliteStorage(path))


async def test_postgres_rows_from_before_received_at_keep_their_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.storage_url(tmp_path)
    received_at = _adding_received_at(pg_schema.MIGRATIONS)
    await postgres_store_before(url, "received", received_at, _old_events(), monkeypatch)
    await _upgraded_store_keeps_old_keys_by_timestamp(PostgresStorage(url, bus_id="received"))
