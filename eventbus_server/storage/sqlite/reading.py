"""Reading events from SQLite on a connection's own thread: the log's reads and a
consumer's scan (consumers.py) share them."""

from __future__ import annotations

import sqlite3

from eventbus_core.event import Event
from eventbus_server.storage.base import EventQuery, row_bytes
from eventbus_server.storage.sql import Select, event_from_row

__all__ = ["collect"]


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
