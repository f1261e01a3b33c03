"""Where a bus keeps its events: memory, SQLite or PostgreSQL behind `Storage` (DESIGN.md §8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus_server.storage.base import (
    EventQuery,
    KeysTaken,
    NewEvent,
    SchemaTooNew,
    Storage,
    StoredKey,
    TopicStats,
)
from eventbus_server.storage.memory.store import MemoryStorage
from eventbus_server.storage.postgres.store import PostgresStorage
from eventbus_server.storage.sqlite.store import SqliteStorage

if TYPE_CHECKING:
    from eventbus_core.config import BusConfig

__all__ = [
    "EventQuery",
    "KeysTaken",
    "MemoryStorage",
    "NewEvent",
    "PostgresStorage",
    "SchemaTooNew",
    "SqliteStorage",
    "Storage",
    "StoredKey",
    "TopicStats",
    "open_storage",
]


def open_storage(config: BusConfig) -> Storage:
    """The backend `config` asks for, not yet opened: call `await storage.open()`."""
    kind = config.storage_kind
    if kind == "sqlite":
        assert config.storage_path is not None
        return SqliteStorage(config.storage_path, durability=config.durability, bus_id=config.id)
    if kind == "postgres":
        assert config.storage_url is not None
        return PostgresStorage(config.storage_url.get_secret_value(), bus_id=config.id)
    return MemoryStorage(config.memory_buffer, max_bytes=config.memory_buffer_bytes)
