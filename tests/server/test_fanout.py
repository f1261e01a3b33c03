"""`FanOut` (eventbus_server/fanout.py) through its own API, in process.

Events and firings are stored for real (memory, and a SQLite file for the
replays) and published as the feed and the rule engine publish them; the
connection side is a `RecordingSubscriber` (tests/subscriber.py), which can
be held full and drained at will. The same behaviour end to end, over TCP,
is in test_subscribe.py; here each rule of the one buffer-and-`lagged`
policy is pinned on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.event import Event
from eventbus_server.fanout import FanOut
from eventbus_server.storage import MemoryStorage, SqliteStorage, Storage
from eventbus_server.storage.base import EventQuery, NewEvent
from tests.subscriber import RecordingSubscriber

T0 = 1_795_900_000_000

STORAGES: dict[str, Callable[[Path], Storage]] = {
    "memory": lambda tmp_path: MemoryStorage(10_000),
    "sqlite": lambda tmp_path: SqliteStorage(tmp_path / "fanout.db"),
}


@pytest.fixture
async def memory() -> AsyncIterator[Storage]:
    storage = MemoryStorage(10_000)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture(params=list(STORAGES))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store = STORAGES[request.param](tmp_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def fanouts() -> AsyncIterator[list[FanOut]]:
    """Every FanOut a test makes is closed at its end (a replay may still run)."""
    made: list[FanOut] = []
    yield made
    for fanout in made:
        await fanout.close()


@pytest.fixture
def make_fanout(fanouts: list[FanOut]) -> Callable[..., FanOut]:
    def make(storage: Storage, *, buffer: int = 1000, max_subscriptions: int = 100, **limits: Any) -> FanOut:
        fanout = FanOut(storage, subscriber_buffer=buffer, max_subscriptions=max_subscriptions, **limits)
        fanouts.append(fanout)
        return fanout

    return make


async def commit(storage: Storage, topic: str = "t", count: int = 1, **fields: Any) -> list[Event]:
    """Store `count` events as the writer would, and return them as the feed hands them on."""
    payload = fields.pop("payload", None)
    return await storage.append(
        [NewEvent(topic, i if payload is None else payload, T0 + i, **fields) for i in range(count)]
    )


async def go_live(
    fanout: FanOut, storage: Storage, peer: RecordingSubscriber, received: Callable[[], int], committed: list[Event], topic: str
) -> None:
    """Publish one live event at a time until one is written by `publish()` itself: then the
    replaying subscription is live. Before each, wait until `received()` events arrived."""
    for _ in range(20):
        await peer.wait_until(lambda p: len(p.event_ids()) >= received())
        live = await commit(storage, topic)
        committed.extend(live)
        written = len(peer.lines)
        fanout.publish(live)
        if len(peer.lines) > written:
            return
    raise AssertionError("the replay never went live")


def ids(events: list[Event]) -> list[int]:
    return [event.event_id for event in events]


async def test_a_replay_goes_live_once_it_reaches_what_it_holds_instead_of_chasing_the_writer(
    storage: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    """A writer commits between every two pages (a busy bus): the replay must still go live.

    Before, it read on until a page came back empty, which a busy writer never
    lets happen: one emitter on SQLite kept a replay reading ~1,000 pages a
    second, never live. Here the writer stops after 50 pages so the old code ends.
    """
    fanout = make_fanout(storage)
    peer = RecordingSubscriber()
    committed = await commit(storage, count=10)
    sub = fanout.subscribe(EventQuery(topic="t"), peer, replay=True)
    reads = 0

    async def a_commit_before_every_read() -> None:
        nonlocal reads
        reads += 1
        if reads <= 50:
            committed.extend(await commit(storage))
            fanout.publish(committed[-1:])

    peer.before_read = a_commit_before_every_read
    sub.start()
    await go_live(fanout, storage, peer, lambda: len(committed), committed, "t")

    assert peer.event_ids() == ids(committed)
    assert reads == 1  # the first page reached the event held live
