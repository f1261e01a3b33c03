"""Durable consumers in PostgreSQL, which several nodes may serve at once.

Every write takes the consumer's row `FOR UPDATE` first, so the fetches,
acks and expiries of one consumer are serialized across all nodes: an event
is leased to one worker at a time, and `lease_new` moves the cursor only if
it is still where the caller read it. The states and their transitions are
storage/consumers.py's. Each function runs on a connection the store hands
it, inside a transaction where it writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from eventbus_core.codec import dumps, loads
from eventbus_core.event import Event
from eventbus_server.storage.base import READ_PAGE_BYTES, EventQuery, row_bytes
from eventbus_server.storage.consumers import (
    ConsumerConfig,
    Delivery,
    FetchResult,
    Scan,
    Settle,
    StoredConsumer,
    expire,
    page_rows,
    pick,
    redeliver,
    settle,
)
from eventbus_server.storage.reader import READ_PAGE
from eventbus_server.storage.sql import (
    EVENT_COLUMNS,
    count_events,
    count_rows,
    event_from_row,
    select_events,
)

__all__ = [
    "count_after",
    "dead_letters",
    "delete_consumer",
    "delivery_counts",
    "fetch_leases",
    "list_consumers",
    "load_consumer",
    "put_consumer",
    "redrive",
    "settle_leased",
]

_CONSUMER_COLUMNS = (
    "name, config, cursor, created_at, updated_at, acked, redelivered, last_delivered_id"
)
_DELIVERY_COLUMNS = "event_id, state, deliveries, due_at, reason"
_STORE = (
    "INSERT INTO consumer_deliveries (consumer, event_id, state, deliveries, due_at, reason)"
    " SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::int[], $5::bigint[], $6::text[])"
    " ON CONFLICT (consumer, event_id) DO UPDATE SET state = excluded.state,"
    " deliveries = excluded.deliveries, due_at = excluded.due_at, reason = excluded.reason"
)


async def put_consumer(
    conn: asyncpg.Connection, name: str, config: ConsumerConfig, cursor: int, now_ms: int
) -> bool:
    created: bool = await conn.fetchval(
        "INSERT INTO consumers (name, config, cursor, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)"
        " ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at"
        " RETURNING (xmax = 0)",
        name,
        dumps(config.wire()).decode(),
        cursor,
        now_ms,
    )
    return created


async def load_consumer(
    conn: asyncpg.Connection, name: str, *, lock: bool = False
) -> StoredConsumer | None:
    row = await conn.fetchrow(
        f"SELECT {_CONSUMER_COLUMNS} FROM consumers WHERE name = $1"
        + (" FOR UPDATE" if lock else ""),
        name,
    )
    return _consumer(row) if row is not None else None


async def list_consumers(conn: asyncpg.Connection) -> list[StoredConsumer]:
    return [
        _consumer(row)
        for row in await conn.fetch(f"SELECT {_CONSUMER_COLUMNS} FROM consumers ORDER BY name")
    ]


async def delete_consumer(conn: asyncpg.Connection, name: str) -> bool:
    await conn.execute("DELETE FROM consumer_deliveries WHERE consumer = $1", name)
    return (
        await conn.fetchval("DELETE FROM consumers WHERE name = $1 RETURNING true", name)
        is not None
    )


async def fetch_leases(
    conn: asyncpg.Connection, name: str, now_ms: int, limit: int, scan: Scan
) -> FetchResult | None:
    consumer = await load_consumer(conn, name, lock=True)
    if consumer is None:
        return None
    config, result = consumer.config, FetchResult()
    expired = await _deliveries(
        conn, "consumer = $1 AND state = 'leased' AND due_at <= $2", name, now_ms
    )
    changed = expire(expired, config, now_ms)
    await _store(conn, name, changed)
    result.died = [row for row in changed if row.state == "dead"]
    room = min(limit, config.max_ack_pending - await _count(conn, name, "leased"))
    budget = scan.max_bytes
    if room > 0:
        due = await _deliveries(
            conn,
            "consumer = $1 AND state = 'waiting' AND due_at <= $2 ORDER BY event_id LIMIT $3",
            name,
            now_ms,
            room,
        )
        events = await _events(conn, [row.event_id for row in due])
        result.leased, dead, budget = redeliver(due, events, config, now_ms, budget)
        await _store(conn, name, [*dead, *(lease for _, lease in result.leased)])
        result.died += dead
        if result.leased:
            await conn.execute(
                "UPDATE consumers SET redelivered = redelivered + $1 WHERE name = $2",
                len(result.leased),
                name,
            )
    room -= len(result.leased)
    cursor = consumer.cursor
    rows = page_rows(scan, room, exact=True, full_page=READ_PAGE)  # PostgreSQL's SQL is exact
    for _ in range(scan.max_pages if room > 0 and budget > 0 else 0):
        page = await _page(conn, scan.query, cursor, rows)
        chosen, moved, budget, full = pick(page, scan, room, budget, have_some=bool(result.leased))
        leases = [Delivery(e.event_id, "leased", 1, now_ms + config.ack_wait_ms) for e in chosen]
        await _store(conn, name, leases)
        result.leased += zip(chosen, leases, strict=True)
        room -= len(chosen)
        cursor = moved if moved is not None else cursor
        if full or not page:
            break
    await conn.execute(
        "UPDATE consumers SET cursor = $1, last_delivered_id = GREATEST(last_delivered_id, $2) WHERE name = $3",
        cursor,
        max((event.event_id for event, _ in result.leased), default=0),
        name,
    )
    result.next_due_ms = await conn.fetchval(
        "SELECT MIN(due_at) FROM consumer_deliveries WHERE consumer = $1 AND state != 'dead'", name
    )
    return result


async def _page(conn: asyncpg.Connection, query: EventQuery, since: int, rows: int) -> list[Event]:
    """The next page of the log after `since` that `query` lets through (at most `rows`
    events, bounded in bytes, like every internal read; see storage/reader.py)."""
    page_query = dataclasses.replace(query, since=since, limit=rows, order="asc")
    select = select_events(page_query, "numeric")
    page: list[Event] = []
    budget = READ_PAGE_BYTES
    for row in await conn.fetch(
        select.sql if select.exact else f"{select.sql} LIMIT {10 * rows}", *select.params
    ):
        if not select.exact and not query.matches(
            Event(row[0], row[1], None, row[3], None, row[5], row[6], row[7])
        ):
            continue
        budget -= row_bytes(row[2], row[4])
        if budget < 0 and page:
            break
        page.append(event_from_row(row))
        if len(page) == rows:
            break
    return page


async def _events(conn: asyncpg.Connection, event_ids: list[int]) -> dict[int, Event]:
    if not event_ids:
        return {}
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM event_log WHERE event_id = ANY($1::bigint[])", event_ids
    )
    return {event.event_id: event for event in map(event_from_row, rows)}


async def settle_leased(
    conn: asyncpg.Connection,
    name: str,
    event_ids: Sequence[int],
    action: Settle,
    now_ms: int,
    delay_ms: int | None,
    reason: str | None,
) -> tuple[int, list[Delivery]] | None:
    consumer = await load_consumer(conn, name, lock=True)
    if consumer is None:
        return None
    if not event_ids:
        return 0, []
    rows = await _deliveries(
        conn,
        "consumer = $1 AND state = 'leased' AND event_id = ANY($2::bigint[])",
        name,
        list(dict.fromkeys(event_ids)),
    )
    after = [
        settle(row, action, consumer.config, now_ms, delay_ms=delay_ms, reason=reason)
        for row in rows
    ]
    acked = [row.event_id for row, new in zip(rows, after, strict=True) if new is None]
    if acked:
        await conn.execute(
            "DELETE FROM consumer_deliveries WHERE consumer = $1 AND event_id = ANY($2::bigint[])",
            name,
            acked,
        )
        await conn.execute(
            "UPDATE consumers SET acked = acked + $1 WHERE name = $2", len(acked), name
        )
    kept = [new for new in after if new is not None]
    await _store(conn, name, kept)
    return len(rows), [row for row in kept if row.state == "dead"]


async def dead_letters(
    conn: asyncpg.Connection, name: str, after_id: int, limit: int
) -> list[Delivery]:
    return await _deliveries(
        conn,
        "consumer = $1 AND state = 'dead' AND event_id > $2 ORDER BY event_id LIMIT $3",
        name,
        after_id,
        limit,
    )


async def redrive(
    conn: asyncpg.Connection, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int
) -> int:
    await load_consumer(conn, name, lock=True)
    if event_ids is None:
        rows = await _deliveries(
            conn, "consumer = $1 AND state = 'dead' ORDER BY event_id LIMIT $2", name, limit
        )
    else:
        rows = await _deliveries(
            conn,
            "consumer = $1 AND state = 'dead' AND event_id = ANY($2::bigint[])",
            name,
            list(dict.fromkeys(event_ids)),
        )
    await _store(conn, name, [Delivery(row.event_id, "waiting", 0, now_ms) for row in rows])
    return len(rows)


async def delivery_counts(conn: asyncpg.Connection, name: str) -> dict[str, int]:
    counts = {"leased": 0, "waiting": 0, "dead": 0}
    for state, count in await conn.fetch(
        "SELECT state, COUNT(*) FROM consumer_deliveries WHERE consumer = $1 GROUP BY state", name
    ):
        counts[state] = count
    return counts


async def count_after(conn: asyncpg.Connection, query: EventQuery, since: int, cap: int) -> int:
    select = count_events(query, since, cap, "numeric")
    if select.exact:
        return int(await conn.fetchval(select.sql, *select.params))
    return count_rows(query, await conn.fetch(select.sql, *select.params), cap)


def _consumer(row: asyncpg.Record) -> StoredConsumer:
    name, config, cursor, created_at, updated_at, acked, redelivered, last_delivered_id = row
    return StoredConsumer(
        name,
        ConsumerConfig.from_wire(loads(config)),
        cursor,
        created_at,
        updated_at,
        acked,
        redelivered,
        last_delivered_id,
    )


async def _deliveries(conn: asyncpg.Connection, where: str, *params: object) -> list[Delivery]:
    return [
        Delivery(*row)
        for row in await conn.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM consumer_deliveries WHERE {where}", *params
        )
    ]


async def _count(conn: asyncpg.Connection, name: str, state: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT COUNT(*) FROM consumer_deliveries WHERE consumer = $1 AND state = $2",
            name,
            state,
        )
    )


async def _store(conn: asyncpg.Connection, name: str, rows: Sequence[Delivery]) -> None:
    if rows:
        await conn.execute(
            _STORE,
            name,
            [r.event_id for r in rows],
            [r.state for r in rows],
            [r.deliveries for r in rows],
            [r.due_at for r in rows],
            [r.reason for r in rows],
        )
