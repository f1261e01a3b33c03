"""Rules, firings and the engine's cursor in SQLite: plain functions that run
on a connection's own thread (see `SqliteStorage._call`), one hop each.

Claiming a firing is `INSERT OR IGNORE` against `UNIQUE (rule_id, event_id)`,
in the same transaction that moves the cursor: after a crash, a pair is
either claimed (and re-run from `pending_firings`) or after the cursor (and
matched again), never lost and never claimed twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from eventbus_core.codec import dumps
from eventbus_server.storage.base import Firing, FiringQuery, FiringSelection, StoredRule
from eventbus_server.storage.sql import (
    FIRING_COLUMNS,
    RULE_COLUMNS,
    firing_from_row,
    rule_counts,
    rule_from_row,
    select_firings,
    select_rearmable,
)
from eventbus_server.storage.sqlite.schema import write_transaction

__all__ = [
    "claim_firings",
    "delete_rule",
    "finish_firing",
    "list_firings",
    "load_cursor",
    "load_rules",
    "pending_firings",
    "put_rule",
    "rearm_firings",
    "save_cursor",
    "set_rule_enabled",
]

CURSOR_NAME = "rule_engine"

_SAVE_CURSOR = (
    "INSERT INTO cursors (name, event_id) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET event_id = MAX(event_id, excluded.event_id)"
)


def load_rules(conn: sqlite3.Connection) -> list[StoredRule]:
    return [
        rule_from_row(row) for row in conn.execute(f"SELECT {RULE_COLUMNS} FROM rules ORDER BY id")
    ]


def put_rule(
    conn: sqlite3.Connection, rule_id: str, body: dict[str, Any], enabled: bool, now_ms: int
) -> bool:
    with write_transaction(conn):
        existed = (
            conn.execute("SELECT 1 FROM rules WHERE id = ?", (rule_id,)).fetchone() is not None
        )
        conn.execute(
            "INSERT INTO rules (id, body, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET body = excluded.body, enabled = excluded.enabled,"
            " updated_at = excluded.updated_at",
            (rule_id, dumps(body).decode(), int(enabled), now_ms, now_ms),
        )
    return not existed


def delete_rule(conn: sqlite3.Connection, rule_id: str) -> bool:
    with write_transaction(conn):
        return conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0


def set_rule_enabled(conn: sqlite3.Connection, rule_id: str, enabled: bool, now_ms: int) -> bool:
    with write_transaction(conn):
        cursor = conn.execute(
            "UPDATE rules SET enabled = ?, updated_at = ? WHERE id = ?",
            (int(enabled), now_ms, rule_id),
        )
        return cursor.rowcount > 0


def claim_firings(
    conn: sqlite3.Connection, pairs: Sequence[tuple[str, int]], cursor: int
) -> list[Firing]:
    created = []
    with write_transaction(conn):
        for rule_id, event_id in pairs:
            row = conn.execute(
                "INSERT OR IGNORE INTO rule_firings (rule_id, event_id, status) VALUES (?, ?, 'pending')"
                " RETURNING firing_id",
                (rule_id, event_id),
            ).fetchone()
            if row is not None:
                created.append(Firing(row[0], rule_id, event_id))
        conn.execute(_SAVE_CURSOR, (CURSOR_NAME, cursor))
    return created


def finish_firing(conn: sqlite3.Connection, firing: Firing) -> None:
    counter = {"ok": "fired", "failed": "failed"}.get(firing.status)
    with write_transaction(conn):
        conn.execute(
            "UPDATE rule_firings SET status = ?, attempts = ?, started_at = ?, duration_ms = ?,"
            " result = ?, error = ? WHERE firing_id = ?",
            (
                firing.status,
                firing.attempts,
                firing.started_at,
                firing.duration_ms,
                None if firing.result is None else dumps(firing.result).decode(),
                firing.error,
                firing.firing_id,
            ),
        )
        if counter is not None:
            conn.execute(
                f"UPDATE rules SET {counter} = {counter} + 1, last_fired_at = ? WHERE id = ?",
                (firing.started_at, firing.rule_id),
            )


def rearm_firings(conn: sqlite3.Connection, selection: FiringSelection) -> list[Firing]:
    select = select_rearmable(selection, "qmark")
    with write_transaction(conn):
        chosen = [firing_from_row(row) for row in conn.execute(select.sql, select.params)]
        conn.executemany(
            "UPDATE rule_firings SET status = 'pending' WHERE firing_id = ?",
            [(f.firing_id,) for f in chosen],
        )
        for rule_id, count in rule_counts(chosen, "failed").items():
            conn.execute(
                "UPDATE rules SET failed = MAX(failed - ?, 0) WHERE id = ?", (count, rule_id)
            )
    for firing in chosen:
        firing.status = "pending"
    return chosen


def pending_firings(conn: sqlite3.Connection) -> list[Firing]:
    rows = conn.execute(
        f"SELECT {FIRING_COLUMNS} FROM rule_firings WHERE status = 'pending' ORDER BY firing_id"
    )
    return [firing_from_row(row) for row in rows]


def list_firings(conn: sqlite3.Connection, query: FiringQuery) -> list[Firing]:
    select = select_firings(query, "qmark")
    return [firing_from_row(row) for row in conn.execute(select.sql, select.params)]


def load_cursor(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT event_id FROM cursors WHERE name = ?", (CURSOR_NAME,)).fetchone()
    return None if row is None else int(row[0])


def save_cursor(conn: sqlite3.Connection, event_id: int) -> None:
    with write_transaction(conn):
        conn.execute(_SAVE_CURSOR, (CURSOR_NAME, event_id))
