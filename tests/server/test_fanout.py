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

from eventbus_core.errors import Overloaded
from eventbus_core.event import Event
from eventbus_server.fanout import FanOut
from eventbus_server.storage import MemoryStorage, SqliteStorage, Storage
from eventbus_server.storage.base import EventQuery, Firing, FiringQuery, NewEvent
from tests.storage.backends import opened
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
    async with opened(STORAGES[request.param], tmp_path) as store:
        yield store


@pytest.fixture
async def fanouts() -> AsyncIterator[list[FanOut]]:
    """Every FanOut a test makes is closed at its end (a replay may still run)."""
    made: list[FanOut] = []
    yield made
    for fanout in made:
        await fanout.close()


@pytest.fixture
def make_fanout(fanouts: list[FanOut]) -> Callable[..., FanOut]:
    def make(
        storage: Storage, *, buffer: int = 1000, max_subscriptions: int = 100, **limits: Any
    ) -> FanOut:
        fanout = FanOut(
            storage, subscriber_buffer=buffer, max_subscriptions=max_subscriptions, **limits
        )
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
    fanout: FanOut,
    storage: Storage,
    peer: RecordingSubscriber,
    received: Callable[[], int],
    committed: list[Event],
    topic: str,
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


async def test_a_subscription_gets_the_events_it_matches_and_no_others(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory)
    peer = RecordingSubscriber()
    orders = fanout.subscribe(EventQuery(topic="orders.*"), peer, replay=False)
    from_eu = fanout.subscribe(
        EventQuery(topic=">", source_trn="trn:shop:eu:*"), peer, replay=False
    )
    to_bob = fanout.subscribe(
        EventQuery(topic="orders.>", target_trn="trn:user:bob"), peer, replay=False
    )
    for sub in (orders, from_eu, to_bob):
        sub.start()

    new_eu = await commit(memory, "orders.new", source_trn="trn:shop:eu:paris")
    deep_bob = await commit(memory, "orders.new.gift", target_trn="trn:user:bob")
    user_us = await commit(memory, "users.new", source_trn="trn:shop:us:nyc")
    user_eu = await commit(
        memory, "users.new", source_trn="trn:shop:eu:rome", target_trn="trn:user:bob"
    )
    fanout.publish(new_eu + deep_bob + user_us + user_eu)

    assert peer.event_ids(orders.id) == ids(new_eu)
    assert peer.event_ids(from_eu.id) == ids(new_eu + user_eu)
    assert peer.event_ids(to_bob.id) == ids(deep_bob)
    assert peer.lagged() == []
    # The line is the notification a client reads, carrying the stored event.
    first = peer.lines[0]
    assert first["method"] == "event" and first["params"]["event"] == new_eu[0].as_dict()


async def test_nothing_is_pushed_before_start_then_what_was_published_meanwhile_in_order(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory)
    peer = RecordingSubscriber()
    events_sub = fanout.subscribe(EventQuery(topic="t"), peer, replay=False)
    firings_sub = fanout.subscribe_firings(None, peer)
    earlier = await commit(memory, count=3)
    fanout.publish(earlier)
    later = await commit(memory, count=2)
    fanout.publish(later)
    fanout.publish_firing(Firing(7, "r", earlier[0].event_id, status="ok"))
    assert peer.lines == []  # the subscribe reply is not written yet: nothing may precede it

    events_sub.start()
    firings_sub.start()
    assert peer.event_ids(events_sub.id) == ids(earlier + later)
    assert peer.firing_ids(firings_sub.id) == [7]
    live = await commit(memory)
    fanout.publish(live)
    assert peer.event_ids() == ids(earlier + later + live)


@pytest.mark.parametrize("buffer", [1000, 2], ids=["holds-live", "live-overflows-during-replay"])
async def test_a_replay_then_live_has_no_gap_and_no_duplicate_at_the_seam(
    storage: Storage, make_fanout: Callable[..., FanOut], buffer: int
) -> None:
    """Events commit before `start`, between replay pages and after: each arrives once, in order.

    With a small buffer the live events held during the replay overflow it; the
    replay then forgets them and reads further instead of lagging (they are stored).
    """
    # Pages of a few events each (a page is a quarter of max_held_bytes), so the replay takes several.
    fanout = make_fanout(storage, buffer=buffer, max_held_bytes=8192)
    peer = RecordingSubscriber()
    payload = "x" * 300
    stored = await commit(storage, "t.a", 20, payload=payload)
    await commit(storage, "other", 3)  # not matched, in storage or live
    since = stored[4].event_id

    sub = fanout.subscribe(EventQuery(topic="t.>", since=since), peer, replay=True)
    committed: list[Event] = []

    async def commit_and_publish() -> None:
        batch = await commit(storage, "t.b", 3, payload=payload) + await commit(storage, "other")
        committed.extend(event for event in batch if event.topic != "other")
        fanout.publish(batch)

    await commit_and_publish()  # after subscribe, before start: stored and held live
    reads = 0

    async def between_pages() -> None:
        nonlocal reads
        reads += 1
        if reads <= 3:
            await commit_and_publish()

    peer.before_read = between_pages
    sub.start()

    def expected() -> list[int]:
        return ids(stored[5:]) + ids(committed)

    await go_live(fanout, storage, peer, lambda: len(expected()), committed, "t.b")
    assert peer.event_ids() == expected()
    assert peer.lagged() == []


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


async def test_a_subscriber_that_cannot_write_holds_its_buffer_then_lags_once_with_what_it_missed(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory, buffer=3)
    peer = RecordingSubscriber()
    sub = fanout.subscribe(EventQuery(topic="t"), peer, replay=False)
    sub.start()
    sent = await commit(memory)
    fanout.publish(sent)

    peer.pause()
    held: list[Event] = []
    for _ in range(3):  # up to the buffer: held
        held += await commit(memory)
        fanout.publish(held[-1:])
    assert peer.lagged() == [] and len(fanout) == 1
    over = await commit(memory, count=2)
    fanout.publish(over)  # one more than it may hold

    assert peer.lagged() == [{"subscription": sub.id, "resume_since": sent[0].event_id}]
    missed = await memory.query(EventQuery(topic="t", since=peer.lagged()[0]["resume_since"]))
    assert ids(missed) == ids(held + over)  # everything it did not get, from storage
    assert (len(fanout), fanout.lagged_total) == (0, 1)
    # Dropped: nothing more, not what it held, not what comes next.
    fanout.publish(await commit(memory))
    peer.drain()
    fanout.resume(peer)
    assert peer.event_ids() == ids(sent) and len(peer.lagged()) == 1


async def test_held_bytes_count_for_the_whole_connection_and_the_one_that_overflows_lags(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    """Two subscriptions of one connection, far below the count bound, pass the byte bound together."""
    fanout = make_fanout(memory, buffer=1000, max_held_bytes=3000)
    peer = RecordingSubscriber()
    subs = [fanout.subscribe(EventQuery(topic="t"), peer, replay=False) for _ in range(2)]
    for sub in subs:
        sub.start()
    peer.pause()
    big = [
        await commit(memory, payload="x" * 1000) for _ in range(2)
    ]  # each line ~1.1 KB, held twice
    fanout.publish(big[0])
    assert peer.lagged() == []  # 2 lines of ~1.1 KB held
    fanout.publish(big[1])  # the next line of either passes 3,000 bytes

    (lagged,) = peer.lagged()
    assert lagged["resume_since"] == 0
    (survivor,) = [sub for sub in subs if sub.id != lagged["subscription"]]
    assert fanout.owned_by(peer) == [survivor.id]
    # What the lagged one held was released: the survivor keeps its two lines and gets them.
    peer.drain()
    fanout.resume(peer)
    assert peer.event_ids(survivor.id) == ids(big[0] + big[1])


async def test_held_events_keep_their_order_through_partial_drains(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory)
    peer = RecordingSubscriber()
    sub = fanout.subscribe(EventQuery(topic="t"), peer, replay=False)
    sub.start()
    peer.pause()
    held = await commit(memory, count=3)
    fanout.publish(held)
    peer.drain()  # the socket has room, but the fan-out has not been told yet
    later = await commit(memory)
    fanout.publish(later)  # must wait behind what is held, not overtake it
    assert peer.event_ids() == []
    fanout.resume(peer)
    assert peer.event_ids() == ids(held + later)


async def test_event_and_firing_subscriptions_share_max_subscriptions(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory, max_subscriptions=2)
    peer, other = RecordingSubscriber(), RecordingSubscriber()
    first = fanout.subscribe(EventQuery(), peer, replay=False)
    fanout.subscribe_firings(None, peer)

    with pytest.raises(
        Overloaded, match="holds 2 subscriptions, the limit \\(max_subscriptions\\)"
    ) as refused:
        fanout.subscribe(EventQuery(), peer, replay=False)
    assert refused.value.code == -32005
    with pytest.raises(Overloaded):
        fanout.subscribe_firings("r", peer)
    assert len(fanout) == 2

    fanout.subscribe(EventQuery(), other, replay=False)  # the cap is per connection
    assert fanout.unsubscribe_own(peer, first.id)
    fanout.subscribe_firings("r", peer)  # room again
    assert len(fanout) == 3


async def test_unsubscribe_own_drops_only_a_subscription_of_that_subscriber(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory)
    owner, stranger = RecordingSubscriber(), RecordingSubscriber()
    sub = fanout.subscribe(EventQuery(topic="t"), owner, replay=False)
    sub.start()

    assert not fanout.unsubscribe_own(stranger, sub.id)
    assert not fanout.unsubscribe_own(owner, "sub-999")
    first = await commit(memory)
    fanout.publish(first)
    assert owner.event_ids() == ids(first)  # still subscribed

    assert fanout.unsubscribe_own(owner, sub.id)
    assert not fanout.unsubscribe_own(owner, sub.id)  # once
    fanout.publish(await commit(memory))
    assert owner.event_ids() == ids(first) and len(fanout) == 0


async def test_drop_all_frees_every_subscription_slot_and_held_byte_of_a_subscriber(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory, max_subscriptions=2, max_held_bytes=3000)
    gone, staying = RecordingSubscriber(), RecordingSubscriber()
    for sub in (
        fanout.subscribe(EventQuery(topic="t"), gone, replay=False),
        fanout.subscribe_firings(None, gone),
    ):
        sub.start()
    kept = fanout.subscribe(EventQuery(topic="t"), staying, replay=False)
    kept.start()
    gone.pause()
    first = await commit(memory, payload="x" * 1000)
    fanout.publish(first)  # gone holds ~1.1 KB of its 3,000
    fanout.publish_firing(Firing(1, "r", first[0].event_id, status="ok"))

    fanout.drop_all(gone)
    assert fanout.owned_by(gone) == [] and len(fanout) == 1
    second = await commit(memory, payload="x" * 1000)
    fanout.publish(second)
    gone.drain()
    fanout.resume(gone)
    assert gone.lines == []
    assert staying.event_ids() == ids(first + second)

    # Nothing of it is still counted: two slots, and the whole byte budget (two more
    # held lines of ~1.1 KB would pass 3,000 with the ~1.1 KB it held before).
    again = fanout.subscribe(EventQuery(topic="t"), gone, replay=False)
    again.start()
    fanout.subscribe_firings(None, gone)
    gone.pause()
    fanout.publish(await commit(memory, payload="x" * 1000))
    fanout.publish(await commit(memory, payload="x" * 1000))
    assert gone.lagged() == []


async def test_a_firing_subscription_gets_its_rules_firings_and_lags_below_every_one_it_missed(
    memory: Storage, make_fanout: Callable[..., FanOut]
) -> None:
    fanout = make_fanout(memory, buffer=2)
    peer = RecordingSubscriber()
    for rule_id in ("r", "s"):
        await memory.put_rule(rule_id, {"id": rule_id}, True, T0)
    events = await commit(memory, count=5)
    claimed = await memory.claim_firings(
        [("r", e.event_id) for e in events] + [("s", events[0].event_id)], ids(events)[-1]
    )
    by_id = {firing.firing_id: firing for firing in claimed}
    of_r = fanout.subscribe_firings("r", peer)
    of_r.start()

    async def finish(firing_id: int) -> None:
        firing = by_id[firing_id]
        firing.status, firing.attempts, firing.result = "ok", 1, {"n": firing_id}
        await memory.finish_firing(firing)
        fanout.publish_firing(firing)

    r_ids = [f.firing_id for f in claimed if f.rule_id == "r"]
    await finish(r_ids[0])
    await finish(claimed[-1].firing_id)  # rule s: not this subscription's
    assert peer.firing_ids(of_r.id) == r_ids[:1]
    assert peer.lines[0]["params"]["result"] == {"n": r_ids[0]}

    # Firings finish out of id order; the buffer holds two, the third lags it.
    peer.pause()
    for firing_id in (r_ids[4], r_ids[2], r_ids[3]):
        await finish(firing_id)
    (lagged,) = peer.lagged()
    assert lagged == {"subscription": of_r.id, "resume_since": r_ids[2] - 1}
    missed = await memory.list_firings(FiringQuery(rule_id="r", since=lagged["resume_since"]))
    assert {f.firing_id for f in missed} >= {r_ids[2], r_ids[3], r_ids[4]}
    assert len(fanout) == 0
