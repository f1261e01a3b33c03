"""The storage backends every contract test runs against.

A new backend joins by adding one entry to `BACKENDS` (and to `DURABLE` if it
survives a restart). Building one twice over the same tmp_path reopens the
same log (for durable backends).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from eventbus_server.storage import MemoryStorage, PostgresStorage, SqliteStorage, Storage
from tests import postgres

BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "memory": lambda tmp_path: MemoryStorage(10_000),
    "sqlite": lambda tmp_path: SqliteStorage(tmp_path / "data" / "bus.db"),
    # Its own schema per test; skips without PostgreSQL (fails on CI, see tests/postgres.py).
    "postgres": lambda tmp_path: PostgresStorage(postgres.storage_url(tmp_path), bus_id="contract"),
}
DURABLE = ["sqlite", "postgres"]


@contextlib.asynccontextmanager
async def opened(make: Callable[[Path], Storage], tmp_path: Path) -> AsyncIterator[Storage]:
    """`make(tmp_path)` opened for the block and closed after it (a fixture's body)."""
    store = make(tmp_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
