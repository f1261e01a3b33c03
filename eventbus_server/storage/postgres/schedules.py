"""Scheduled events and schedules of a bus in PostgreSQL (DESIGN.md §11).

Each function runs on a connection the store hands it, inside a transaction,
like rules.py. Several nodes serve one bus, so `take_due` claims what it
moves with `FOR UPDATE SKIP LOCKED` in the transaction that appends it (the
store also holds the bus's append lock there, so ids follow commit order):
a delayed event or a tick is appended by one node, once, and a crash rolls
the whole move back.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventbus_core.errors import AlreadyExists, Overloaded
from eventbus_core.event import NewEvent
from eventbus_server.storage.base import ScheduledEvent, StoredSchedule, row_bytes
from eventbus_server.storage.postgres.schema import rowcount
from eventbus_server.storage.sql import (
    SCHEDULE_COLUMNS,
    SCHEDULED_COLUMNS,
    schedule_from_row,
    schedule_row,
    scheduled_from_row,
    scheduled_row,
)

__all__ = [
    "add_scheduled",
    "cancel_scheduled",
    "delete_schedule",
    "get_schedule",
    "list_scheduled",
    "list_schedules",
    "next_due",
    "put_schedule",
    "set_schedule_enabled",
    "take_due",
]

_INSERT_SCHEDULED = (
    f"INSERT INTO scheduled_events ({SCHEDULED_COLUMNS})"
    " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8, $9, $10, $11)"
)
_CREATE_SCHEDULE = (
    f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (id) DO NOTHING"
)
# A replaced schedule keeps its created_at, last_tick and ticks.
_REPLACE_SCHEDULE = (
    f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (id) DO UPDATE SET body = excluded.body, enabled = excluded.enabled,"
    " next_tick = excluded.next_tick, updated_at = excluded.updated_at RETURNING (xmax = 0)"
)
_NEXT_DUE = (
    "SELECT LEAST((SELECT MIN(deliver_at) FROM scheduled_events),"
    " (SELECT MIN(next_tick) FROM schedules))"
)


async def add_scheduled(
    conn: asyncpg.Connection, items: Sequence[ScheduledEvent], max_pending: int
) -> list[ScheduledEvent]:
    keys = sorted({item.idempotency_key for item in items if item.idempotency_key is not None})
    by_key: dict[str, ScheduledEvent] = {}
    if keys:
        rows = await conn.fetch(
            f"SELECT {SCHEDULED_COLUMNS} FROM scheduled_events WHERE idempotency_key = ANY($1::text[])",
            keys,
        )
        by_key = {row["idempotency_key"]: scheduled_from_row(row) for row in rows}
    answers: list[ScheduledEvent] = []
    fresh: list[ScheduledEvent] = []
    for item in items:
        key = item.idempotency_key
        if key is not None and key in by_key:
            answers.append(by_key[key])
            continue
        if key is not None:
            by_key[key] = item
        fresh.append(item)
        answers.append(item)
    if fresh:
        pending = await conn.fetchval("SELECT COUNT(*) FROM scheduled_events")
        if pending + len(fresh) > max_pending:
            raise Overloaded(
                f"{pending} delayed events are pending and {len(fresh)} more would pass max_scheduled"
                f" ({max_pending}); wait for some to be delivered, or cancel some"
            )
        await conn.executemany(_INSERT_SCHEDULED, [scheduled_row(item) for item in fresh])
    return answers


async def cancel_scheduled(conn: asyncpg.Connection, schedule_id: str) -> bool:
    return (
        rowcount(
            await conn.execute("DELETE FROM scheduled_events WHERE schedule_id = $1", schedule_id)
        )
        > 0
    )


async def list_scheduled(
    conn: asyncpg.Connection, after: tuple[int, str] | None, limit: int, max_bytes: int | None
) -> list[ScheduledEvent]:
    where, params = (
        ("(deliver_at, schedule_id) > ($1, $2)", list(after)) if after is not None else ("TRUE", [])
    )
    sql = (
        f"SELECT {SCHEDULED_COLUMNS} FROM scheduled_events WHERE {where}"
        f" ORDER BY deliver_at, schedule_id LIMIT ${len(params) + 1}"
    )
    items: list[ScheduledEvent] = []
    budget = max_bytes
    # A server-side cursor, so a page of large events stops before it is all in memory.
    async for row in conn.cursor(sql, *params, limit, prefetch=min(limit, 100)):
        if budget is not None:
            budget -= row_bytes(row[4], row[6])
            if budget < 0 and items:
                break
        items.append(scheduled_from_row(row))
    return items


async def put_schedule(
    conn: asyncpg.Connection, schedule: StoredSchedule, replace: bool, max_schedules: int
) -> bool:
    exists = await conn.fetchval("SELECT 1 FROM schedules WHERE id = $1", schedule.id) is not None
    if not exists:
        count = await conn.fetchval("SELECT COUNT(*) FROM schedules")
        if count >= max_schedules:
            raise Overloaded(f"this bus has {count} schedules, its max_schedules; delete one first")
    if replace:
        created: bool = await conn.fetchval(_REPLACE_SCHEDULE, *schedule_row(schedule))
        return created
    if rowcount(await conn.execute(_CREATE_SCHEDULE, *schedule_row(schedule))) == 0:
        raise AlreadyExists(
            f"schedule {schedule.id!r} already exists; pass replace: true to replace it"
        )
    return True


async def get_schedule(
    conn: asyncpg.Connection, schedule_id: str, *, lock: bool = False
) -> StoredSchedule | None:
    sql = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1" + (
        " FOR UPDATE" if lock else ""
    )
    row = await conn.fetchrow(sql, schedule_id)
    return None if row is None else schedule_from_row(row)


async def list_schedules(
    conn: asyncpg.Connection, after_id: str | None, limit: int
) -> list[StoredSchedule]:
    rows = await conn.fetch(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id > $1 ORDER BY id LIMIT $2",
        after_id or "",
        limit,
    )
    return [schedule_from_row(row) for row in rows]


async def delete_schedule(conn: asyncpg.Connection, schedule_id: str) -> bool:
    return rowcount(await conn.execute("DELETE FROM schedules WHERE id = $1", schedule_id)) > 0


async def set_schedule_enabled(
    conn: asyncpg.Connection, schedule_id: str, enabled: bool, now_ms: int
) -> StoredSchedule | None:
    schedule = await get_schedule(conn, schedule_id, lock=True)
    if schedule is None or schedule.enabled == enabled:
        return schedule
    schedule.enabled = enabled
    schedule.next_tick = schedule.first_tick(now_ms)
    schedule.updated_at = now_ms
    await conn.execute(
        "UPDATE schedules SET enabled = $1, next_tick = $2, updated_at = $3 WHERE id = $4",
        enabled,
        schedule.next_tick,
        now_ms,
        schedule_id,
    )
    return schedule


async def next_due(conn: asyncpg.Connection) -> int | None:
    due: int | None = await conn.fetchval(_NEXT_DUE)
    return due


async def take_due(
    conn: asyncpg.Connection, now_ms: int, bus_id: str, limit: int, max_bytes: int
) -> list[NewEvent]:
    """Claim and take what is due (the caller appends it in the same transaction), in due order."""
    delayed: list[ScheduledEvent] = []
    budget = max_bytes
    claim = (
        f"SELECT {SCHEDULED_COLUMNS} FROM scheduled_events WHERE deliver_at <= $1"
        " ORDER BY deliver_at, schedule_id LIMIT $2 FOR UPDATE SKIP LOCKED"
    )
    async for row in conn.cursor(claim, now_ms, limit, prefetch=min(limit, 100)):
        budget -= row_bytes(row[4], row[6])
        if budget < 0 and delayed:
            break
        delayed.append(scheduled_from_row(row))
    if delayed:
        await conn.execute(
            "DELETE FROM scheduled_events WHERE schedule_id = ANY($1::text[])",
            [d.schedule_id for d in delayed],
        )
    due = [(item.deliver_at, item.schedule_id, item.due(now_ms)) for item in delayed]
    rows = await conn.fetch(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_tick <= $1"
        " ORDER BY next_tick, id LIMIT $2 FOR UPDATE SKIP LOCKED",
        now_ms,
        limit,
    )
    moved = []
    for schedule in map(schedule_from_row, rows):
        event = schedule.tick(bus_id, now_ms)
        moved.append((schedule.next_tick, schedule.last_tick, schedule.ticks, schedule.id))
        due.append((schedule.last_tick or now_ms, schedule.id, event))
    if moved:
        await conn.executemany(
            "UPDATE schedules SET next_tick = $1, last_tick = $2, ticks = $3 WHERE id = $4", moved
        )
    # The log gets them in the order they fell due.
    return [event for _, _, event in sorted(due, key=lambda item: (item[0], item[1]))]
