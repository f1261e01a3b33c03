"""The PostgreSQL schema of one bus and its migrations, applied at start.

Each bus lives in its own PostgreSQL schema (`eventbus_<bus id>` unless the
`storage_url` says `?schema=…`), so several buses, and several nodes of
one bus, can share a database. The tables are SQLite's (`schema.py`) with
PostgreSQL types: `BIGSERIAL` ids, `JSONB` payloads, and `COLLATE "C"` on
the columns that are narrowed by prefix ranges, so that string order is byte
order whatever the database's locale.

Migrations run under a transaction-level advisory lock, so two nodes
starting together cannot both apply one. Append to `MIGRATIONS`; never edit
one that has shipped. As on SQLite (sqlite/schema.py), a version may be
reserved (None) for a branch that lands later: it is neither applied nor
recorded, and every version a database has not recorded is applied at the
next start, in order.
"""

from __future__ import annotations

import hashlib

import asyncpg

from eventbus_server.storage.base import SchemaTooNew
from eventbus_server.storage.sql import PARTIAL_INDEXES

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "quote_ident", "rowcount", "schema_for_bus"]

MIGRATIONS: tuple[tuple[str, ...] | None, ...] = (
    (
        """
        CREATE TABLE event_log (
            event_id BIGSERIAL PRIMARY KEY,
            topic TEXT COLLATE "C" NOT NULL,
            payload JSONB,
            timestamp BIGINT NOT NULL,
            metadata JSONB,
            source_trn TEXT COLLATE "C",
            target_trn TEXT COLLATE "C",
            correlation_id TEXT COLLATE "C",
            idempotency_key TEXT COLLATE "C"
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
            body JSONB NOT NULL,
            enabled BOOLEAN NOT NULL,
            fired BIGINT NOT NULL DEFAULT 0,
            failed BIGINT NOT NULL DEFAULT 0,
            last_fired_at BIGINT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE rule_firings (
            firing_id BIGSERIAL PRIMARY KEY,
            rule_id TEXT NOT NULL,
            event_id BIGINT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            started_at BIGINT,
            duration_ms BIGINT,
            result JSONB,
            error TEXT,
            UNIQUE (rule_id, event_id)
        )
        """,
        "CREATE INDEX idx_rule_firings_pending ON rule_firings (firing_id) WHERE status = 'pending'",
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, event_id BIGINT NOT NULL)",
    ),
    # 2: which node claimed a firing, so another can adopt it when that node is gone.
    ("ALTER TABLE rule_firings ADD COLUMN claimed_by TEXT",),
    # 3: durable consumers (DESIGN §10): a cursor each, and a row per delivery not yet acked.
    (
        """
        CREATE TABLE consumers (
            name TEXT PRIMARY KEY,
            config JSONB NOT NULL,
            cursor BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            acked BIGINT NOT NULL DEFAULT 0,
            redelivered BIGINT NOT NULL DEFAULT 0,
            last_delivered_id BIGINT NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE consumer_deliveries (
            consumer TEXT NOT NULL,
            event_id BIGINT NOT NULL,
            state TEXT NOT NULL,
            deliveries INTEGER NOT NULL,
            due_at BIGINT NOT NULL,
            reason TEXT,
            PRIMARY KEY (consumer, event_id)
        )
        """,
        "CREATE INDEX idx_consumer_deliveries_due ON consumer_deliveries (consumer, state, due_at)",
    ),
    # 4: scheduled events (pending delayed emits) and recurring schedules (DESIGN §11).
    (
        """
        CREATE TABLE scheduled_events (
            schedule_id TEXT COLLATE "C" PRIMARY KEY,
            deliver_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            topic TEXT COLLATE "C" NOT NULL,
            payload JSONB,
            timestamp BIGINT,
            metadata JSONB,
            source_trn TEXT COLLATE "C",
            target_trn TEXT COLLATE "C",
            correlation_id TEXT COLLATE "C",
            idempotency_key TEXT COLLATE "C"
        )
        """,
        "CREATE INDEX idx_scheduled_events_due ON scheduled_events (deliver_at, schedule_id)",
        """
        CREATE UNIQUE INDEX idx_scheduled_events_idempotency_key ON scheduled_events (idempotency_key)
        WHERE idempotency_key IS NOT NULL
        """,
        """
        CREATE TABLE schedules (
            id TEXT COLLATE "C" PRIMARY KEY,
            body JSONB NOT NULL,
            enabled BOOLEAN NOT NULL,
            next_tick BIGINT,
            last_tick BIGINT,
            ticks BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX idx_schedules_next_tick ON schedules (next_tick) WHERE next_tick IS NOT NULL",
    ),
    # 5: the mostly-NULL columns get partial indexes (same names), so an event without
    # them writes no entry there: +14 % single commits, +46 % batches of 1,000 on raw
    # SQLite (issue 14). Any comparison on the column implies NOT NULL, so every
    # filter on it can still use its index.
    PARTIAL_INDEXES,
    # 6: when a keyed event was received: the dedup window counts from it (sql.INSERT_FIELDS).
    ("ALTER TABLE event_log ADD COLUMN received_at BIGINT",),
)

SCHEMA_VERSION = len(MIGRATIONS)

#: PostgreSQL truncates identifiers beyond 63 bytes.
_MAX_IDENTIFIER = 63


def schema_for_bus(bus_id: str) -> str:
    """The default schema of a bus: `eventbus_<id>`, shortened with a hash if too long."""
    name = f"eventbus_{bus_id}"
    if len(name.encode()) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(bus_id.encode()).hexdigest()[:12]
    return f"{name[: _MAX_IDENTIFIER - 13]}_{digest}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: asyncpg.Connection, schema: str, where: str) -> int:
    """Create the schema if needed and bring it to `SCHEMA_VERSION`; returns how many ran."""
    applied = 0
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"eventbus-migrate:{schema}"
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.schema_version"
            " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        recorded = {
            row[0]
            for row in await conn.fetch(f"SELECT version FROM {quote_ident(schema)}.schema_version")
        }
        current = max(recorded, default=0)
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{where} has schema version {current}, but this eventbus only knows versions up to "
                f"{SCHEMA_VERSION}; upgrade eventbus or use another schema"
            )
        await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        for version, statements in enumerate(MIGRATIONS, start=1):
            if statements is None or version in recorded:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, (extract(epoch FROM now()) * 1000)::bigint)",
                version,
            )
            applied += 1
    return applied


def rowcount(status: str) -> int:
    """asyncpg answers `execute` with the command tag, e.g. 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])
