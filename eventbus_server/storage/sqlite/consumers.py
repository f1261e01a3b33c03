"""Durable consumers in SQLite: plain functions that run on a connection's own
thread (see `SqliteStorage._call`), one transaction each.

The states and their transitions are storage/consumers.py's; here they are
read and written. `lease_new` moves the cursor only if it is still where the
caller read it, so two fetches of one consumer never lease an event twice.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

from eventbus_core.codec import dumps, loads
from eventbus_core.event import Event
from eventbus_server.storage.base import READ_PAGE_BYTES, EventQuery
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
    decided_in_sql,
    event_from_row,
    select_events,
)
from eventbus_server.storage.sqlite.reading import collect
from eventbus_server.storage.sqlite.schema import write_transaction

__all__ = [
    "cheap_to_fetch",
    "count_after",
    "dead_letters",
    "delete_consumer",
    "delivery_counts",
    "fetch_leases",
    "list_consumers",
    "load_consumer",
    "page_size",
    "put_consumer",
    "reads_only_what_it_leases",
    "redrive",
    "settle_leased",
]

_CONSUMER_COLUMNS = (
    "name, config, cursor, created_at, updated_at, acked, redelivered, last_delivered_id"
)
_DELIVERY_COLUMNS = "event_id, state, deliveries, due_at, reason"
#: When the consumer's next lease runs out or waiting event falls due: one seek per live
#: state on (consumer, state, due_at), where `state != 'dead'` walked all its rows.
_NEXT_DUE = (
    "SELECT MIN(due) FROM ("
    "SELECT MIN(due_at) AS due FROM consumer_deliveries WHERE consumer = ? AND state = 'leased'"
    " UNION ALL "
    "SELECT MIN(due_at) FROM consumer_deliveries WHERE consumer = ? AND state = 'waiting')"
)


def put_consumer(
    conn: sqlite3.Connection, name: str, config: ConsumerConfig, cursor: int, now_ms: int
) -> bool:
    with write_transaction(conn):
        updated = conn.execute(
            "UPDATE consumers SET config = ?, updated_at = ? WHERE name = ?",
            (_config_text(config), now_ms, name),
        ).rowcount
        if updated:
            return False
        conn.execute(
            "INSERT INTO consumers (name, config, cursor, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (name, _config_text(config), cursor, now_ms, now_ms),
        )
        return True


def load_consumer(conn: sqlite3.Connection, name: str) -> StoredConsumer | None:
    row = conn.execute(
        f"SELECT {_CONSUMER_COLUMNS} FROM consumers WHERE name = ?", (name,)
    ).fetchone()
    return _consumer(row) if row is not None else None


def list_consumers(conn: sqlite3.Connection) -> list[StoredConsumer]:
    return [
        _consumer(row)
        for row in conn.execute(f"SELECT {_CONSUMER_COLUMNS} FROM consumers ORDER BY name")
    ]


def delete_consumer(conn: sqlite3.Connection, name: str) -> bool:
    with write_transaction(conn):
        conn.execute("DELETE FROM consumer_deliveries WHERE consumer = ?", (name,))
        return conn.execute("DELETE FROM consumers WHERE name = ?", (name,)).rowcount > 0


def fetch_leases(
    conn: sqlite3.Connection, name: str, now_ms: int, limit: int, scan: Scan
) -> FetchResult | None:
    with write_transaction(conn):
        consumer = load_consumer(conn, name)
        if consumer is None:
            return None
        config, result = consumer.config, FetchResult()
        expired = _deliveries(
            conn, "consumer = ? AND state = 'leased' AND due_at <= ?", (name, now_ms)
        )
        changed = expire(expired, config, now_ms)
        _store(conn, name, changed)
        result.died = [row for row in changed if row.state == "dead"]
        room = min(limit, config.max_ack_pending - _count(conn, name, "leased"))
        budget = scan.max_bytes
        if room > 0:
            due = _deliveries(
                conn,
                "consumer = ? AND state = 'waiting' AND due_at <= ? ORDER BY event_id LIMIT ?",
                (name, now_ms, room),
            )
            result.leased, dead, budget = redeliver(
                due, _events(conn, [r.event_id for r in due]), config, now_ms, budget
            )
            _store(conn, name, [*dead, *(lease for _, lease in result.leased)])
            result.died += dead
            if result.leased:
                conn.execute(
                    "UPDATE consumers SET redelivered = redelivered + ? WHERE name = ?",
                    (len(result.leased), name),
                )
        room -= len(result.leased)
        cursor = consumer.cursor
        rows = page_size(scan, room)
        for _ in range(scan.max_pages if room > 0 and budget > 0 else 0):
            page_query = dataclasses.replace(
                scan.query, since=cursor, limit=rows, order="asc", max_bytes=READ_PAGE_BYTES
            )
            page = collect(conn, page_query, select_events(page_query, "qmark"))
            chosen, moved, budget, full = pick(
                page, scan, room, budget, have_some=bool(result.leased)
            )
            leases = [
                Delivery(e.event_id, "leased", 1, now_ms + config.ack_wait_ms) for e in chosen
            ]
            _store(conn, name, leases)
            result.leased += zip(chosen, leases, strict=True)
            room -= len(chosen)
            cursor = moved if moved is not None else cursor
            if full or not page:
                break
        last = max((event.event_id for event, _ in result.leased), default=0)
        conn.execute(
            "UPDATE consumers SET cursor = ?, last_delivered_id = MAX(last_delivered_id, ?) WHERE name = ?",
            (cursor, last, name),
        )
        (result.next_due_ms,) = conn.execute(_NEXT_DUE, (name, name)).fetchone()
    return result


def page_size(scan: Scan, room: int) -> int:
    """How many events a fetch with `room` left reads per page of the log (page_rows)."""
    return page_rows(scan, room, exact=decided_in_sql(scan.query, "qmark"), full_page=READ_PAGE)


def reads_only_what_it_leases(scan: Scan) -> bool:
    """Whether a fetch's read of the log stops at what it leases, whatever the log holds:
    no pattern to run on each event, no TRN filter, and one exact topic (its index yields
    that topic's events in id order) or every topic (each event read is leased). A prefix
    or wildcard topic, or a TRN filter, may walk past any number of events that do not
    match (a consumer on `orders.>` over a tail of a million others: 57-76 ms a fetch)."""
    query = scan.query
    return (
        scan.accept is None
        and query.source_trn is None
        and query.target_trn is None
        and (query.topic == ">" or not ("*" in query.topic or ">" in query.topic))
    )


#: A fetch is cheap (`cheap_to_fetch`) with at most this many leases run out, which it
#: turns into their next state, and this many waiting events due, which it sorts by id.
CHEAP_EXPIRED = 32
CHEAP_DUE = 1000


def cheap_to_fetch(conn: sqlite3.Connection, name: str, now_ms: int) -> bool:
    """Whether a fetch now has little to do besides what it leases: few leases ran out,
    few waiting events are due (each an index range, read no further than its bound)."""
    (expired, due) = conn.execute(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM consumer_deliveries"
        " WHERE consumer = ? AND state = 'leased' AND due_at <= ? LIMIT ?)),"
        " (SELECT COUNT(*) FROM (SELECT 1 FROM consumer_deliveries"
        " WHERE consumer = ? AND state = 'waiting' AND due_at <= ? LIMIT ?))",
        (name, now_ms, CHEAP_EXPIRED + 1, name, now_ms, CHEAP_DUE + 1),
    ).fetchone()
    return int(expired) <= CHEAP_EXPIRED and int(due) <= CHEAP_DUE


def settle_leased(
    conn: sqlite3.Connection,
    name: str,
    event_ids: Sequence[int],
    action: Settle,
    now_ms: int,
    delay_ms: int | None,
    reason: str | None,
) -> tuple[int, list[Delivery]] | None:
    with write_transaction(conn):
        consumer = load_consumer(conn, name)
        if consumer is None:
            return None
        if not event_ids:
            return 0, []
        ids = list(dict.fromkeys(event_ids))
        marks = ", ".join("?" * len(ids))
        rows = _deliveries(
            conn, f"consumer = ? AND state = 'leased' AND event_id IN ({marks})", (name, *ids)
        )
        after = [
            settle(row, action, consumer.config, now_ms, delay_ms=delay_ms, reason=reason)
            for row in rows
        ]
        acked = [row.event_id for row, new in zip(rows, after, strict=True) if new is None]
        conn.executemany(
            "DELETE FROM consumer_deliveries WHERE consumer = ? AND event_id = ?",
            [(name, i) for i in acked],
        )
        if acked:
            conn.execute(
                "UPDATE consumers SET acked = acked + ? WHERE name = ?", (len(acked), name)
            )
        kept = [new for new in after if new is not None]
        _store(conn, name, kept)
        return len(rows), [row for row in kept if row.state == "dead"]


def dead_letters(conn: sqlite3.Connection, name: str, after_id: int, limit: int) -> list[Delivery]:
    return _deliveries(
        conn,
        "consumer = ? AND state = 'dead' AND event_id > ? ORDER BY event_id LIMIT ?",
        (name, after_id, limit),
    )


def redrive(
    conn: sqlite3.Connection, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int
) -> int:
    with write_transaction(conn):
        if event_ids is None:
            rows = _deliveries(
                conn, "consumer = ? AND state = 'dead' ORDER BY event_id LIMIT ?", (name, limit)
            )
        else:
            ids = list(dict.fromkeys(event_ids))
            marks = ", ".join("?" * len(ids))
            rows = _deliveries(
                conn, f"consumer = ? AND state = 'dead' AND event_id IN ({marks})", (name, *ids)
            )
        _store(conn, name, [Delivery(row.event_id, "waiting", 0, now_ms) for row in rows])
        return len(rows)


def delivery_counts(conn: sqlite3.Connection, name: str) -> dict[str, int]:
    counts = {"leased": 0, "waiting": 0, "dead": 0}
    for state, count in conn.execute(
        "SELECT state, COUNT(*) FROM consumer_deliveries WHERE consumer = ? GROUP BY state", (name,)
    ):
        counts[state] = count
    return counts


def count_after(conn: sqlite3.Connection, query: EventQuery, since: int, cap: int) -> int:
    select = count_events(query, since, cap, "qmark")
    rows = conn.execute(select.sql, select.params)
    return int(rows.fetchone()[0]) if select.exact else count_rows(query, rows, cap)


def _config_text(config: ConsumerConfig) -> str:
    return dumps(config.wire()).decode()


def _consumer(row: Sequence[Any]) -> StoredConsumer:
    name, config, cursor, created_at, updated_at, acked, redelivered, last_delivered_id = row
    return StoredConsumer(
        str(name),
        ConsumerConfig.from_wire(loads(str(config))),
        int(cursor),
        int(created_at),
        int(updated_at),
        int(acked),
        int(redelivered),
        int(last_delivered_id),
    )


def _deliveries(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[Delivery]:
    return [
        Delivery(*row)
        for row in conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM consumer_deliveries WHERE {where}", params
        )
    ]


def _events(conn: sqlite3.Connection, event_ids: list[int]) -> dict[int, Event]:
    if not event_ids:
        return {}
    marks = ", ".join("?" * len(event_ids))
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM event_log WHERE event_id IN ({marks})", event_ids
    )
    return {event.event_id: event for event in map(event_from_row, rows)}


def _count(conn: sqlite3.Connection, name: str, state: str) -> int:
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM consumer_deliveries WHERE consumer = ? AND state = ?", (name, state)
    ).fetchone()
    return int(count)


def _store(conn: sqlite3.Connection, name: str, rows: Sequence[Delivery]) -> None:
    conn.executemany(
        "INSERT INTO consumer_deliveries (consumer, event_id, state, deliveries, due_at, reason)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (consumer, event_id) DO UPDATE SET state = excluded.state,"
        " deliveries = excluded.deliveries, due_at = excluded.due_at, reason = excluded.reason",
        [(name, r.event_id, r.state, r.deliveries, r.due_at, r.reason) for r in rows],
    )
