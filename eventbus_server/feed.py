"""Committed events, in event_id order, to whatever follows the log (fan-out, topic
counters, the rule engine), whichever process committed them.

On a bus only this process writes (memory, SQLite) every commit arrives
here first hand, in order, and goes straight through. When several nodes
share a PostgreSQL log, another node's commit is only a notice ("events up
to id n exist"); the feed reads what it has not delivered by cursor, so
its own next batch never overtakes an earlier one from elsewhere. Storage
assigns ids in commit order (see storage/postgres.py), so reading
`event_id > cursor` after a notice misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from eventbus_core.errors import EventBusError
from eventbus_core.event import Event
from eventbus_server.storage.base import Storage
from eventbus_server.storage.reader import LogReader

__all__ = ["CommitFeed"]

log = logging.getLogger("eventbus.feed")

RETRY_S = 0.5


class CommitFeed:
    def __init__(
        self, storage: Storage, deliver: Callable[[list[Event]], None], *, bus_id: str
    ) -> None:
        self.reader = LogReader(storage)
        self.deliver = deliver
        self.bus_id = bus_id
        #: Every event up to here has been delivered.
        self.cursor = 0
        self._known = 0  # the newest id some commit is known to have reached
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def start(self, last_event_id: int) -> None:
        self.cursor = self._known = last_event_id

    async def committed_here(self, events: list[Event]) -> None:
        """A batch this process has just committed (ids ascending)."""
        async with self._lock:
            try:
                if events[0].event_id > self.cursor + 1:
                    await self._read_up_to(events[0].event_id - 1)
            except EventBusError as exc:
                # Leave the batch to the catch-up loop, which retries until storage answers.
                log.warning(
                    "bus=%s cannot read events committed elsewhere yet: %s", self.bus_id, exc
                )
                self.committed_elsewhere(events[-1].event_id)
                return
            self._deliver_fresh(events)

    def committed_now(self, events: list[Event]) -> bool:
        """`committed_here` without waiting, for a commit made in a read (writer.py); False,
        with nothing delivered, when it would wait: another delivery holds the feed, or
        events committed elsewhere must be read before these."""
        if self._lock.locked() or events[0].event_id > self.cursor + 1:
            return False
        self._deliver_fresh(events)
        return True

    def _deliver_fresh(self, events: list[Event]) -> None:
        fresh = [event for event in events if event.event_id > self.cursor]
        if fresh:
            self.cursor = fresh[-1].event_id
            self.deliver(fresh)

    def committed_elsewhere(self, last_event_id: int) -> None:
        """A notice that events up to `last_event_id` are committed; `run` reads them."""
        if last_event_id > self._known:
            self._known = last_event_id
        if self._known > self.cursor:
            self._wake.set()

    async def run(self) -> None:
        """Deliver what notices announce, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                try:
                    await self._read_up_to(self._known)
                except EventBusError as exc:
                    log.warning("bus=%s cannot read new events yet: %s", self.bus_id, exc)
                    failed = True
                else:
                    failed = False
            if failed:
                # Only a failed read waits before the next; a notice that came in while
                # the read ran is read at once (it set the wake-up again).
                self._wake.set()
                await asyncio.sleep(RETRY_S)

    async def _read_up_to(self, last_event_id: int) -> None:
        async for page in self.reader.pages(self.cursor, up_to=last_event_id):
            self.cursor = page[-1].event_id
            self.deliver(page)
        # What is left are ids a rolled-back batch drew, or events already pruned.
        self.cursor = max(self.cursor, last_event_id)
