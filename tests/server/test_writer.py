"""The writer's lone-request path (writer.py): a request that is alone in its turn
of the loop, on an idle writer over storage that commits without waiting, is
committed, answered and delivered before `enqueue` returns; everything else
keeps the queue, and ids, answers and deliveries stay in commit order.

The writer runs alone here, over real storage and a real feed (no bus, so no
scheduler or rule engine queues work of its own in between).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventbus_core.event import Event, NewEvent
from eventbus_server.feed import CommitFeed
from eventbus_server.storage import SqliteStorage, Storage
from eventbus_server.writer import Committed, GroupCommitWriter, Outcome
from tests.storage.backends import BACKENDS, opened

T0 = 1_764_300_000_000


class Harness:
    def __init__(self, storage: Storage, *, feed_waits: bool = False) -> None:
        self.delivered: list[int] = []
        self.feed = CommitFeed(storage, self._deliver, bus_id="w")
        deliver_now: Callable[[list[Event]], bool] = (
            (lambda events: False) if feed_waits else self.feed.committed_now
        )
        self.writer = GroupCommitWriter(
            storage,
            self.feed.committed_here,
            deliver_now=deliver_now,
            bus_id="w",
            queue_size=100,
            dedup_window_s=60.0,
            stats=dict.fromkeys(
                ["emitted", "duplicates", "batches", "batches_split", "rejected_overloaded"], 0
            )
            | {"storage_errors": 0},
        )
        self.answers: list[list[Outcome]] = []

    def _deliver(self, events: list[Event]) -> None:
        self.delivered += [event.event_id for event in events]

    def emit(
        self, count: int = 1, *, at_once: bool = True, key: str | None = None
    ) -> list[Outcome]:
        mine: list[Outcome] = []
        self.answers.append(mine)
        rows = [NewEvent("t", i, T0, idempotency_key=key) for i in range(count)]
        self.writer.enqueue(rows, 10, mine.append, at_once=at_once)
        return mine

    def ids(self) -> list[list[int]]:
        return [a[0].event_ids() for a in self.answers if isinstance(a[0], Committed)]


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with opened(BACKENDS[request.param], tmp_path) as store:
        yield store


@pytest.fixture
async def harness(storage: Storage) -> AsyncIterator[Harness]:
    harness = Harness(storage)
    harness.writer.start()
    try:
        yield harness
    finally:
        await harness.writer.stop()


async def test_a_lone_request_is_committed_answered_and_delivered_before_enqueue_returns(
    harness: Harness,
) -> None:
    answer = harness.emit()
    assert len(answer) == 1 and harness.delivered == harness.ids()[0]
    # The rest of this turn queues up and commits as one group, after it.
    later = [harness.emit(), harness.emit(2)]
    assert later == [[], []]
    await harness.writer.join()
    first = harness.ids()[0][0]
    assert harness.ids() == [[first], [first + 1], [first + 2, first + 3]]
    assert harness.delivered == list(range(first, first + 4))
    assert harness.writer.stats["batches"] == 2
    # Lone requests came several at a time: the next one queues too, and once the
    # writer has taken a batch of one, a lone request is committed at once again.
    assert harness.emit() == []
    await harness.writer.join()
    assert len(harness.emit()) == 1
    assert harness.delivered == list(range(first, first + 6))


async def test_keys_or_a_caller_with_more_to_come_go_through_the_queue(harness: Harness) -> None:
    keyed = harness.emit(key="k")  # its key is looked up first, by the write loop
    assert keyed == []
    await harness.writer.join()
    more = harness.emit(at_once=False)
    assert more == []
    await harness.writer.join()
    first = harness.ids()[0][0]
    assert harness.ids() == [[first], [first + 1]]
    assert harness.delivered == [first, first + 1]


async def test_a_request_behind_a_commit_in_flight_waits_its_turn(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "w.db")
    await storage.open()
    harness = Harness(storage)
    harness.writer.start()
    try:
        big = harness.emit(100, at_once=False)  # committed on SQLite's writer thread
        await asyncio.sleep(0)  # the write loop takes it
        lone = harness.emit()
        assert big == [] and lone == []
        await harness.writer.join()
        first = harness.ids()[0][0]
        assert harness.ids() == [list(range(first, first + 100)), [first + 100]]
        assert harness.delivered == list(range(first, first + 101))
    finally:
        await harness.writer.stop()
        await storage.close()


async def test_a_delivery_that_must_wait_is_finished_before_the_next_batch(
    storage: Storage,
) -> None:
    harness = Harness(storage, feed_waits=True)
    harness.writer.start()
    try:
        answer = harness.emit()
        assert len(answer) == 1 and harness.delivered == []
        assert harness.writer.busy
        harness.emit(at_once=False)
        await harness.writer.join()
        first = harness.ids()[0][0]
        assert harness.delivered == [first, first + 1]
        assert not harness.writer.busy
    finally:
        await harness.writer.stop()
