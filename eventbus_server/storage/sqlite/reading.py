"""Reading events from SQLite on a connection's own thread: the log's reads and a
consumer's scan (consumers.py) share them."""

from __future__ import annotations

import sqlite3

from eventbus_core.event import Event
from eventbus_server.storage.base import EventQuery, row_bytes
from eventbus_server.storage.sql import (
    PROBE_CAPS,
    Select,
    event_from_row,
    pick_driver,
    range_probe,
    select_events,
)

__all__ = ["collect", "plan_events", "read_events"]


def read_events(conn: sqlite3.Connection, query: EventQuery) -> list[Event]:
    """A page of `query`, read by the plan `plan_events` picks."""
    return collect(conn, query, plan_events(conn, query))


def plan_events(conn: sqlite3.Connection, query: EventQuery) -> Select:
    """`query`'s SQL, pinned to the index that reads the fewest rows.

    SQLite's planner sees `ORDER BY event_id LIMIT n` and walks the log by id
    whatever the range (a second of timestamps, a rare topic prefix), so the
    ranges are counted first, each from its index alone and at most its
    `PROBE_CAPS` entries far: a fraction of a millisecond.
    """
    drivers, probe = range_probe(query, "qmark", PROBE_CAPS)
    if not drivers:
        return select_events(query, "qmark")
    counts = list(zip(drivers, conn.execute(probe.sql, probe.params).fetchone(), strict=True))
    return select_events(query, "qmark", driver=pick_driver(counts, PROBE_CAPS))


def collect(conn: sqlite3.Connection, query: EventQuery, select: Select) -> list[Event]:
    """Walk the narrowed rows until `query.limit` of them pass the exact match.

    SQLite steps the cursor lazily, so a filter that skips many rows reads on
    without further round trips, and stops as soon as the page is full.
    """
    hits: list[Event] = []
    budget = query.max_bytes
    cursor = conn.execute(select.sql, select.params)
    try:
        for event_id, topic, payload, timestamp, metadata, source, target, correlation in cursor:
            if not select.exact:
                # Match on the plain columns first; decode JSON only for the hits.
                probe = Event(event_id, topic, None, timestamp, None, source, target, correlation)
                if not query.matches(probe):
                    continue
            if budget is not None:
                budget -= row_bytes(payload, metadata)
                if budget < 0 and hits:
                    break
            hits.append(
                event_from_row(
                    (event_id, topic, payload, timestamp, metadata, source, target, correlation)
                )
            )
            if len(hits) == query.limit:
                break
    finally:
        cursor.close()
    return hits
