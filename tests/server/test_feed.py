"""`CommitFeed` (eventbus_server/feed.py) through its own API, in process, over real storage.

The feed turns the writer's batches (`committed_here`) and other nodes'
notices (`committed_elsewhere`, read back by `run()`) into one stream in id
order. "Another node" is a second `PostgresStorage` on the same schema, as a
second `eventbus serve` is (tests/multinode runs two real processes; here
the notices come from `watch`, PostgreSQL's LISTEN, or straight from the
test). On memory the other writer is the same store written behind the
feed's back, which is all a notice says: events up to n exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventbus_core.errors import InvalidParams
from eventbus_core.event import Event
from eventbus_server import feed as feed_module
from eventbus_server.feed import CommitFeed
from eventbus_server.storage import MemoryStorage, PostgresStorage, Storage
from eventbus_server.storage.base import NewEvent
from tests import postgres
from tests.storage.backends import BACKENDS, opened

T0 = 1_795_900_000_000


class Delivered:
    """The feed's `deliver`: records each batch it hands on."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self._changed = asyncio.Event()

    def __call__(self, events: list[Event]) -> None:
        self.batches.append([event.event_id for event in events])
        self._changed.set()

    @property
    def ids(self) -> list[int]:
        return [event_id for batch in self.batches for event_id in batch]

    async def until(self, last_id: int, timeout_s: float = 10.0) -> None:
        """Return once the event `last_id` (or a later one) has been delivered."""
        async with asyncio.timeout(timeout_s):
            while not self.ids or self.ids[-1] < last_id:
                self._changed.clear()
                await self._changed.wait()


class Logged(logging.Handler):
    """Lets a test wait for a log line instead of sleeping."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.seen.set()


@contextlib.contextmanager
def watching_log(text: str) -> Iterator[Logged]:
    handler = Logged(text)
    logger = logging.getLogger("eventbus.feed")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@contextlib.asynccontextmanager
async def running(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run the feed's loop (and a watch) for the block; cancelled at its end."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def commit(storage: Storage, count: int = 1, topic: str = "t") -> list[Event]:
    return await storage.append([NewEvent(topic, i, T0 + i) for i in range(count)])


def ids(events: list[Event]) -> list[int]:
    return [event.event_id for event in events]


@pytest.fixture(params=list(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with opened(BACKENDS[request.param], tmp_path) as store:
        yield store


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """This node's storage and another node's, on one PostgreSQL schema."""
    url = postgres.storage_url(tmp_path)
    here, elsewhere = PostgresStorage(url, bus_id="feed"), PostgresStorage(url, bus_id="feed")
    await here.open()
    await elsewhere.open()
    try:
        yield here, elsewhere
    finally:
        await here.close()
        await elsewhere.close()


async def test_batches_committed_here_are_delivered_once_in_id_order(storage: Storage) -> None:
    await commit(storage, 5)  # before the bus started: not the feed's to deliver
    delivered = Delivered()
    feed = CommitFeed(storage, delivered, bus_id="b")
    feed.start(await storage.last_event_id())

    first, second = await commit(storage, 3), await commit(storage, 2)
    await feed.committed_here(first)
    await feed.committed_here(second)
    await feed.committed_here(second)  # told twice: delivered once

    assert delivered.batches == [ids(first), ids(second)]
    assert feed.cursor == second[-1].event_id


async def test_a_notice_from_elsewhere_is_read_back_by_run(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, elsewhere = nodes
    delivered = Delivered()
    feed = CommitFeed(here, delivered, bus_id="b")
    feed.start(await here.last_event_id())
    # The bus's own wiring on shared storage: PostgreSQL's notices into the feed, `run` reading them.
    async with running(feed.run(), here.watch(feed.committed_elsewhere, lambda: None)):
        theirs = await commit(elsewhere, 3)
        await delivered.until(theirs[-1].event_id)
        more = await commit(elsewhere, 2000)  # more than a page: read back page by page
        await delivered.until(more[-1].event_id)
    assert delivered.ids == ids(theirs + more)
    assert len(delivered.batches) >= 3


async def test_a_notice_is_delivered_before_a_later_local_batch(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """Without `run()` getting a turn: the local batch reads what the notice announced first."""
    here, elsewhere = nodes
    delivered = Delivered()
    feed = CommitFeed(here, delivered, bus_id="b")
    feed.start(0)
    theirs = await commit(elsewhere, 3)
    feed.committed_elsewhere(theirs[-1].event_id)
    ours = await commit(here, 2)
    await feed.committed_here(ours)
    assert delivered.batches == [ids(theirs), ids(ours)]
    # Even when the notice has not arrived yet: a batch after a hole reads the hole first.
    theirs_again = await commit(elsewhere)
    ours_again = await commit(here)
    await feed.committed_here(ours_again)
    assert delivered.ids == ids(theirs + ours + theirs_again + ours_again)


async def test_a_notice_on_one_process_storage_is_read_back_too() -> None:
    """Memory: the same store written behind the feed's back; the notice is all it needs."""
    storage = MemoryStorage(100)
    await storage.open()
    delivered = Delivered()
    feed = CommitFeed(storage, delivered, bus_id="b")
    feed.start(0)
    async with running(feed.run()):
        behind = await commit(storage, 4)
        feed.committed_elsewhere(behind[-1].event_id)
        await delivered.until(behind[-1].event_id)
    assert delivered.ids == ids(behind)
    await storage.close()


async def test_a_notice_that_arrives_during_a_read_is_read_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady stream from another node: the next notice lands while the previous read
    delivers. Only a failed read may wait RETRY_S before the next (here a minute, far
    beyond the test's bound); the new notice is read at once."""
    monkeypatch.setattr(feed_module, "RETRY_S", 60.0)
    storage = MemoryStorage(100)
    await storage.open()
    delivered = Delivered()
    feed = CommitFeed(storage, delivered, bus_id="b")
    feed.start(0)
    first, second = await commit(storage, 2), await commit(storage, 3)

    def deliver_while_another_notice_arrives(events: list[Event]) -> None:
        delivered(events)
        feed.committed_elsewhere(second[-1].event_id)

    feed.deliver = deliver_while_another_notice_arrives
    async with running(feed.run()):
        feed.committed_elsewhere(first[-1].event_id)
        await delivered.until(second[-1].event_id, timeout_s=5.0)
    assert delivered.ids == ids(first) + ids(second)
    await storage.close()


async def rolled_back_batch(storage: PostgresStorage) -> None:
    """A batch that draws ids and rolls back: 64 events go in by COPY, row by row, and
    PostgreSQL refuses the last (\\u0000 in jsonb) after the others took their ids."""
    events = [NewEvent("t", i, T0) for i in range(63)] + [NewEvent("t", "nul \x00", T0)]
    with pytest.raises(InvalidParams):
        await storage.append(events)


async def test_ids_a_rolled_back_batch_drew_do_not_stall_it(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, elsewhere = nodes
    delivered = Delivered()
    feed = CommitFeed(here, delivered, bus_id="b")
    feed.start(0)
    async with running(feed.run()):
        before = await commit(elsewhere, 2)
        feed.committed_elsewhere(before[-1].event_id)
        await delivered.until(before[-1].event_id)

        await rolled_back_batch(elsewhere)
        ours = await commit(here)  # the next id after the hole
        assert ours[0].event_id > before[-1].event_id + 1, (
            "no ids were drawn: the test proves nothing"
        )
        await feed.committed_here(ours)  # reads the hole (nothing), delivers at once
        assert delivered.ids == ids(before + ours)

        await rolled_back_batch(here)
        after = await commit(elsewhere)
        feed.committed_elsewhere(after[-1].event_id)
        await delivered.until(after[-1].event_id)
    assert delivered.ids == ids(before + ours + after)
    assert feed.cursor == after[-1].event_id


async def test_events_pruned_before_they_were_read_do_not_stall_it() -> None:
    """The other kind of hole: a notice for events a memory ring no longer holds."""
    storage = MemoryStorage(3)
    await storage.open()
    delivered = Delivered()
    feed = CommitFeed(storage, delivered, bus_id="b")
    feed.start(0)
    events = await commit(storage, 5)  # 1 and 2 are gone from the ring of three
    async with running(feed.run()):
        feed.committed_elsewhere(events[-1].event_id)
        await delivered.until(events[-1].event_id)
        ours = await commit(storage)
        await feed.committed_here(ours)
    assert delivered.ids == ids(events[2:] + ours)
    await storage.close()


@contextlib.asynccontextmanager
async def tables_gone(storage: PostgresStorage) -> AsyncIterator[None]:
    """The log's table is away (dropped, say, and restored from a dump) for the block."""
    conn = await asyncpg.connect(postgres.ADMIN_URL)
    schema = f'"{storage.schema}"'
    try:
        await conn.execute(f"ALTER TABLE {schema}.event_log RENAME TO event_log_away")
        try:
            yield
        finally:
            await conn.execute(f"ALTER TABLE {schema}.event_log_away RENAME TO event_log")
    finally:
        await conn.close()


async def test_a_storage_error_is_retried_until_storage_answers(
    nodes: tuple[PostgresStorage, PostgresStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "RETRY_S", 0.01)
    here, elsewhere = nodes
    delivered = Delivered()
    feed = CommitFeed(here, delivered, bus_id="b")
    feed.start(0)
    async with running(feed.run()):
        # A notice run() cannot read back yet.
        theirs = await commit(elsewhere, 2)
        with watching_log("cannot read new events yet") as failed:
            async with tables_gone(here):
                feed.committed_elsewhere(theirs[-1].event_id)
                await asyncio.wait_for(failed.seen.wait(), 10)
            await delivered.until(theirs[-1].event_id)
        assert "is unavailable" in failed.messages[0]
        assert delivered.ids == ids(theirs)

        # A local batch after events it cannot read yet: left to run(), which retries.
        more_of_theirs = await commit(elsewhere)
        ours = await commit(here)
        with watching_log("cannot read events committed elsewhere yet") as failed:
            async with tables_gone(here):
                await feed.committed_here(ours)
                assert failed.messages and delivered.ids == ids(theirs)  # nothing out of order
            await delivered.until(ours[-1].event_id)
    assert delivered.ids == ids(theirs + more_of_theirs + ours)
