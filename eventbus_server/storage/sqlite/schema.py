"""The SQLite schema and its migrations, applied in order when storage opens.

`MIGRATIONS[n - 1]` is version n. Each runs in its own transaction together
with its `schema_version` row, so a crash leaves the database without it and
the next start simply retries. Append to the list; never edit a migration
that has shipped.

A version may be reserved (None) for a branch that lands later: it is not
applied and not recorded, and every version a database has not recorded is
applied at the next start, in order, so a database that has 1 and 3 gets 2
once its migration lands. The versions are independent of each other (each
adds its own tables, or, like 4, only reshapes version 1's indexes).

These functions are plain sqlite3: the storage runs them on its connection's
own thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from eventbus_server.storage.base import SchemaTooNew
from eventbus_server.storage.sql import PARTIAL_INDEXES

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "migrate",
    "schema_version",
    "write_transaction",
]

MIGRATIONS: tuple[tuple[str, ...] | None, ...] = (
    # 1: the seed's event_log (plus idempotency_key), and the rule engine's tables.
    (
        """
        CREATE TABLE event_log (
            event_id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL,
            payload TEXT,
            timestamp INTEGER NOT NULL,
            metadata TEXT,
            source_trn TEXT,
            target_trn TEXT,
            correlation_id TEXT,
            idempotency_key TEXT
        )
        """,
        "CREATE INDEX idx_event_log_topic ON event_log (topic)",
        "CREATE INDEX idx_event_log_source_trn ON event_log (source_trn)",
        "CREATE INDEX idx_event_log_target_trn ON event_log (target_trn)",
        "CREATE INDEX idx_event_log_correlation_id ON event_log (correlation_id)",
        "CREATE INDEX idx_event_log_timestamp ON event_log (timestamp)",
        """
        CREATE INDEX idx_event_log_idempotency_key ON event_log (idempotency_key)
        WHERE idempotency_key IS NOT NULL
        """,
        """
        CREATE TABLE rules (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            fired INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            last_fired_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE rule_firings (
            firing_id INTEGER PRIMARY KEY AUTOINCREMENT,
            rule_id TEXT NOT NULL,
            event_id INTEGER NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            started_at INTEGER,
            duration_ms INTEGER,
            result TEXT,
            error TEXT,
            UNIQUE (rule_id, event_id)
        )
        """,
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, event_id INTEGER NOT NULL)",
    ),
    # 2: durable consumers (DESIGN §10): a cursor each, and a row per delivery not yet acked.
    (
        """
        CREATE TABLE consumers (
            name TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            cursor INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            acked INTEGER NOT NULL DEFAULT 0,
            redelivered INTEGER NOT NULL DEFAULT 0,
            last_delivered_id INTEGER NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE consumer_deliveries (
            consumer TEXT NOT NULL,
            event_id INTEGER NOT NULL,
            state TEXT NOT NULL,
            deliveries INTEGER NOT NULL,
            due_at INTEGER NOT NULL,
            reason TEXT,
            PRIMARY KEY (consumer, event_id)
        )
        """,
        "CREATE INDEX idx_consumer_deliveries_due ON consumer_deliveries (consumer, state, due_at)",
    ),
    # 3: scheduled events (pending delayed emits) and recurring schedules (DESIGN §11).
    (
        """
        CREATE TABLE scheduled_events (
            schedule_id TEXT PRIMARY KEY,
            deliver_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            topic TEXT NOT NULL,
            payload TEXT,
            timestamp INTEGER,
            metadata TEXT,
            source_trn TEXT,
            target_trn TEXT,
            correlation_id TEXT,
            idempotency_key TEXT
        )
        """,
        "CREATE INDEX idx_scheduled_events_due ON scheduled_events (deliver_at, schedule_id)",
        """
        CREATE UNIQUE INDEX idx_scheduled_events_idempotency_key ON scheduled_events (idempotency_key)
        WHERE idempotency_key IS NOT NULL
        """,
        """
        CREATE TABLE schedules (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            next_tick INTEGER,
            last_tick INTEGER,
            ticks INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )
        """,
        "CREATE INDEX idx_schedules_next_tick ON schedules (next_tick) WHERE next_tick IS NOT NULL",
    ),
    # 4: the mostly-NULL columns get partial indexes (same names), so an event without
    # them writes no entry there: +14 % single commits, +46 % batches of 1,000 on raw
    # SQLite (issue 14). Any comparison on the column implies NOT NULL, so every
    # filter on it can still use its index.
    PARTIAL_INDEXES,
    # 5: when a keyed event was received: the dedup window counts from it (sql.INSERT_FIELDS).
    ("ALTER TABLE event_log ADD COLUMN received_at INTEGER",),
)

SCHEMA_VERSION = len(MIGRATIONS)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error.

    IMMEDIATE takes the write lock up front: a busy database fails here, before
    any work, instead of at COMMIT. `conn` must be in autocommit mode
    (isolation_level=None) so that sqlite3 opens no transactions of its own.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # The original error says what went wrong; a failed rollback would hide it.
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def schema_version(conn: sqlite3.Connection) -> int:
    """The version the database is at (0 for a fresh file)."""
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the database up to `SCHEMA_VERSION`; returns how many migrations ran.

    `where` names the database in error messages.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    _refuse_newer(schema_version(conn), where)
    if _recorded(conn) >= _DEFINED:
        return 0
    applied = 0
    for version, statements in enumerate(MIGRATIONS, start=1):
        if statements is None:
            continue
        # The versions are re-read under the write lock, so two processes opening
        # the same new file cannot both run a migration.
        with write_transaction(conn):
            _refuse_newer(schema_version(conn), where)
            if version in _recorded(conn):
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, time.time_ns() // 1_000_000),
            )
            applied += 1
    return applied


#: The versions this eventbus has migrations for (reserved ones left out).
_DEFINED = frozenset(
    version for version, statements in enumerate(MIGRATIONS, start=1) if statements is not None
)


def _recorded(conn: sqlite3.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT version FROM schema_version")}


def _refuse_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{where} has schema version {version}, but this eventbus only knows versions up to "
            f"{SCHEMA_VERSION}; upgrade eventbus or point storage_path at another file"
        )
