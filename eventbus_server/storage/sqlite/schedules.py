"""Scheduled events and schedules in SQLite (DESIGN.md §11): plain functions that
run on a connection's own thread (see `SqliteStorage._call`), one hop each.

`append_due` moves what is due into `event_log` in one transaction with
deleting the delayed events and moving the schedules on: after a crash an
item is either still pending (and appended at the next start) or in the log,
never both and never neither. SQLite has one writer, so nothing else can
claim the same rows meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from eventbus_core.errors import AlreadyExists, Overloaded
from eventbus_core.event import NewEvent
from eventbus_server.storage.base import ScheduledEvent, StoredSchedule, row_bytes
from eventbus_server.storage.sql import (
    INSERT_EVENT_QMARK,
    SCHEDULE_COLUMNS,
    SCHEDULED_COLUMNS,
    event_row,
    schedule_from_row,
    schedule_row,
    scheduled_from_row,
    scheduled_row,
)
from eventbus_server.storage.sqlite.schema import write_transaction

__all__ = [
    "add_scheduled",
    "append_due",
    "cancel_scheduled",
    "delete_schedule",
    "get_schedule",
    "list_scheduled",
    "list_schedules",
    "next_due",
    "put_schedule",
    "set_schedule_enabled",
]

_INSERT_SCHEDULED = (
    f"INSERT INTO scheduled_events ({SCHEDULED_COLUMNS}) VALUES ({', '.join('?' * 11)})"
)
_PUT_SCHEDULE = (
    f"INSERT OR REPLACE INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_NEXT_DUE = (
    "SELECT MIN(due) FROM (SELECT MIN(deliver_at) AS due FROM scheduled_events"
    " UNION ALL SELECT MIN(next_tick) FROM schedules)"
)


def add_scheduled(
    conn: sqlite3.Connection, items: Sequence[ScheduledEvent], max_pending: int
) -> list[ScheduledEvent]:
    answers: list[ScheduledEvent] = []
    fresh: list[ScheduledEvent] = []
    by_key: dict[str, ScheduledEvent] = {}
    with write_transaction(conn):
        for item in items:
            key = item.idempotency_key
            if key is not None and key not in by_key:
                row = conn.execute(
                    f"SELECT {SCHEDULED_COLUMNS} FROM scheduled_events WHERE idempotency_key = ?",
                    (key,),
                ).fetchone()
                if row is not None:
                    by_key[key] = scheduled_from_row(row)
            if key is not None and key in by_key:
                answers.append(by_key[key])
                continue
            if key is not None:
                by_key[key] = item
            fresh.append(item)
            answers.append(item)
        if fresh:
            pending = conn.execute("SELECT COUNT(*) FROM scheduled_events").fetchone()[0]
            _check_room(pending, len(fresh), max_pending)
            conn.executemany(_INSERT_SCHEDULED, [scheduled_row(item) for item in fresh])
    return answers


def _check_room(pending: int, adding: int, max_pending: int) -> None:
    if pending + adding > max_pending:
        raise Overloaded(
            f"{pending} delayed events are pending and {adding} more would pass max_scheduled ({max_pending});"
            " wait for some to be delivered, or cancel some"
        )


def cancel_scheduled(conn: sqlite3.Connection, schedule_id: str) -> bool:
    with write_transaction(conn):
        return (
            conn.execute(
                "DELETE FROM scheduled_events WHERE schedule_id = ?", (schedule_id,)
            ).rowcount
            > 0
        )


def list_scheduled(
    conn: sqlite3.Connection, after: tuple[int, str] | None, limit: int, max_bytes: int | None
) -> list[ScheduledEvent]:
    where, params = (
        ("(deliver_at, schedule_id) > (?, ?)", list(after)) if after is not None else ("1", [])
    )
    cursor = conn.execute(
        f"SELECT {SCHEDULED_COLUMNS} FROM scheduled_events WHERE {where} ORDER BY deliver_at, schedule_id LIMIT ?",
        [*params, limit],
    )
    try:
        return _within(cursor, max_bytes)
    finally:
        cursor.close()


def _within(rows: Any, max_bytes: int | None) -> list[ScheduledEvent]:
    """The rows, up to about `max_bytes` of payload and metadata (at least one)."""
    items: list[ScheduledEvent] = []
    budget = max_bytes
    for row in rows:
        if budget is not None:
            budget -= row_bytes(row[4], row[6])
            if budget < 0 and items:
                break
        items.append(scheduled_from_row(row))
    return items


def put_schedule(
    conn: sqlite3.Connection, schedule: StoredSchedule, replace: bool, max_schedules: int
) -> bool:
    with write_transaction(conn):
        old = conn.execute(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule.id,)
        ).fetchone()
        if old is not None:
            if not replace:
                raise AlreadyExists(
                    f"schedule {schedule.id!r} already exists; pass replace: true to replace it"
                )
            kept = schedule_from_row(old)
            schedule.created_at, schedule.last_tick, schedule.ticks = (
                kept.created_at,
                kept.last_tick,
                kept.ticks,
            )
        else:
            count = conn.execute("SELECT COUNT(*) FROM schedules").fetchone()[0]
            if count >= max_schedules:
                raise Overloaded(
                    f"this bus has {count} schedules, its max_schedules; delete one first"
                )
        conn.execute(_PUT_SCHEDULE, schedule_row(schedule))
    return old is None


def get_schedule(conn: sqlite3.Connection, schedule_id: str) -> StoredSchedule | None:
    row = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)
    ).fetchone()
    return None if row is None else schedule_from_row(row)


def list_schedules(
    conn: sqlite3.Connection, after_id: str | None, limit: int
) -> list[StoredSchedule]:
    rows = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id > ? ORDER BY id LIMIT ?",
        (after_id or "", limit),
    )
    return [schedule_from_row(row) for row in rows]


def delete_schedule(conn: sqlite3.Connection, schedule_id: str) -> bool:
    with write_transaction(conn):
        return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0


def set_schedule_enabled(
    conn: sqlite3.Connection, schedule_id: str, enabled: bool, now_ms: int
) -> StoredSchedule | None:
    with write_transaction(conn):
        schedule = get_schedule(conn, schedule_id)
        if schedule is None or schedule.enabled == enabled:
            return schedule
        schedule.enabled = enabled
        schedule.next_tick = schedule.first_tick(now_ms)
        schedule.updated_at = now_ms
        conn.execute(
            "UPDATE schedules SET enabled = ?, next_tick = ?, updated_at = ? WHERE id = ?",
            (enabled, schedule.next_tick, now_ms, schedule_id),
        )
    return schedule


def next_due(conn: sqlite3.Connection) -> int | None:
    due: int | None = conn.execute(_NEXT_DUE).fetchone()[0]
    return due


def append_due(
    conn: sqlite3.Connection, now_ms: int, bus_id: str, limit: int, max_bytes: int
) -> tuple[int, list[NewEvent]]:
    """Append what is due, in due order; the first event's id and the events."""
    with write_transaction(conn):
        cursor = conn.execute(
            f"SELECT {SCHEDULED_COLUMNS} FROM scheduled_events WHERE deliver_at <= ?"
            " ORDER BY deliver_at, schedule_id LIMIT ?",
            (now_ms, limit),
        )
        try:
            delayed = _within(cursor, max_bytes)
        finally:
            cursor.close()
        conn.executemany(
            "DELETE FROM scheduled_events WHERE schedule_id = ?",
            [(d.schedule_id,) for d in delayed],
        )
        due = [(item.deliver_at, item.schedule_id, item.due(now_ms)) for item in delayed]
        rows = conn.execute(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_tick <= ? ORDER BY next_tick, id LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        for schedule in map(schedule_from_row, rows):
            event = schedule.tick(bus_id, now_ms)
            conn.execute(
                "UPDATE schedules SET next_tick = ?, last_tick = ?, ticks = ? WHERE id = ?",
                (schedule.next_tick, schedule.last_tick, schedule.ticks, schedule.id),
            )
            due.append((schedule.last_tick or now_ms, schedule.id, event))
        if not due:
            return 0, []
        # The log gets them in the order they fell due.
        events = [event for _, _, event in sorted(due, key=lambda item: (item[0], item[1]))]
        conn.executemany(INSERT_EVENT_QMARK, [event_row(e) for e in events])
        last_id: int = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    return last_id - len(events) + 1, events
