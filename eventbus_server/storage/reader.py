"""Reading the log by cursor: the one way the server reads back events it stored.

Every reader that is not a client's poll — the commit feed, a subscription's
replay, the rule engine's catch-up, a firing that runs again — reads pages of
events after a cursor, each bounded in count (`READ_PAGE`) and in bytes
(`READ_PAGE_BYTES`), so one page of 1 MiB events is not a GiB in memory. A
page may be short because of its byte bound: read on from its last id until
a page is empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from eventbus_core.event import Event
from eventbus_server.storage.base import READ_PAGE_BYTES, EventQuery, Storage

__all__ = ["ALL_EVENTS", "READ_PAGE", "LogReader"]

#: Events per page of an internal read.
READ_PAGE = 1000

#: The filter that lets every event through.
ALL_EVENTS = EventQuery()


class LogReader:
    """Pages of stored events after a cursor, optionally up to an id and filtered."""

    __slots__ = ("storage",)

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def page(
        self,
        since: int,
        *,
        up_to: int | None = None,
        match: EventQuery = ALL_EVENTS,
        max_bytes: int = READ_PAGE_BYTES,
    ) -> list[Event]:
        """The next page of events with `since < event_id (<= up_to)` that `match` lets through;
        `max_bytes` bounds it tighter (a replay's page goes to one client's output)."""
        query = dataclasses.replace(
            match, since=since, limit=READ_PAGE, order="asc", max_bytes=max_bytes
        )
        page = await self.storage.query(query)
        if up_to is not None and page and page[-1].event_id > up_to:
            page = [event for event in page if event.event_id <= up_to]
        return page

    async def pages(
        self, since: int, *, up_to: int | None = None, match: EventQuery = ALL_EVENTS
    ) -> AsyncIterator[list[Event]]:
        """Every page after `since` until the log (or `up_to`) is reached."""
        cursor = since
        while up_to is None or cursor < up_to:
            page = await self.page(cursor, up_to=up_to, match=match)
            if not page:
                return
            cursor = page[-1].event_id
            yield page

    async def event(self, event_id: int) -> Event | None:
        """The stored event with this id, or None (never stored, or pruned since)."""
        found = await self.storage.query(EventQuery(since=event_id - 1, limit=1))
        return found[0] if found and found[0].event_id == event_id else None
