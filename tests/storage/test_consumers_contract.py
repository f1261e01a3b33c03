"""Durable consumers as every backend keeps them (DESIGN.md §10)."""

from __future__ import annotations

from collections.abc import Callable

from eventbus_server.storage import EventQuery, NewEvent, Storage
from eventbus_server.storage.consumers import DEAD_MAX_DELIVER, ConsumerConfig

T0 = 1_764_000_000_000
NOW = 2_000_000_000_000
CONFIG = ConsumerConfig(topic="work.>", ack_wait_ms=1000, max_deliver=3, backoff_ms=(100, 500), max_ack_pending=5)


async def _created(storage: Storage, config: ConsumerConfig = CONFIG, cursor: int = 0) -> None:
    assert await storage.put_consumer("w", config, cursor, NOW) is True


async def test_a_consumer_is_created_listed_changed_and_deleted(storage: Storage) -> None:
    await _created(storage, cursor=7)
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.config == CONFIG and consumer.cursor == 7 and consumer.created_at == NOW
    assert [c.name for c in await storage.list_consumers()] == ["w"]
    assert await storage.lease_new("w", 7, 9, [8, 9], NOW)
    changed = ConsumerConfig(topic="other.>", max_deliver=9)
    assert await storage.put_consumer("w", changed, 0, NOW + 5) is False  # a change keeps the cursor and leases
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.config == changed and consumer.cursor == 9 and consumer.updated_at == NOW + 5
    assert (await storage.delivery_counts("w"))["leased"] == 2
    assert await storage.delete_consumer("w") is True
    assert await storage.load_consumer("w") is None and await storage.delete_consumer("w") is False
    assert await storage.delivery_counts("w") == {"leased": 0, "waiting": 0, "dead": 0}


async def test_lease_new_moves_the_cursor_only_from_where_the_caller_read_it(storage: Storage) -> None:
    await _created(storage)
    assert await storage.lease_new("w", 0, 10, [3, 5], NOW)
    assert not await storage.lease_new("w", 0, 12, [11], NOW)  # another fetch moved it first
    assert not await storage.lease_new("w", 10, 20, [11, 12, 13, 14], NOW)  # 2 + 4 > max_ack_pending 5
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.cursor == 10 and consumer.last_delivered_id == 5
    assert await storage.lease_new("w", 10, 20, [11, 12, 13], NOW)
    assert await storage.delivery_counts("w") == {"leased": 5, "waiting": 0, "dead": 0}


async def test_expired_leases_wait_out_their_backoff_then_lease_again_then_die(storage: Storage) -> None:
    await _created(storage)
    await storage.lease_new("w", 0, 2, [1, 2], NOW)
    assert (await storage.take_due("w", NOW + 999, 10)).leased == []  # still leased
    taken = await storage.take_due("w", NOW + 1000, 10)  # expired: due after backoff_ms[0]
    assert taken.leased == [] and taken.died == [] and taken.next_due_ms == NOW + 1100
    taken = await storage.take_due("w", NOW + 1100, 1)  # oldest first, one asked for
    assert [(d.event_id, d.state, d.deliveries, d.due_at) for d in taken.leased] == [(1, "leased", 2, NOW + 2100)]
    taken = await storage.take_due("w", NOW + 1100, 10)
    assert [(d.event_id, d.deliveries) for d in taken.leased] == [(2, 2)]
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.redelivered == 2
    # Delivery 3 after backoff_ms[1] (500), and after it expires too: a dead letter.
    await storage.take_due("w", NOW + 2100, 10)
    assert [d.deliveries for d in (await storage.take_due("w", NOW + 2600, 10)).leased] == [3, 3]
    taken = await storage.take_due("w", NOW + 3600, 10)
    assert [(d.event_id, d.state, d.reason) for d in taken.died] == [(1, "dead", DEAD_MAX_DELIVER), (2, "dead", DEAD_MAX_DELIVER)]
    assert taken.next_due_ms is None
    assert await storage.delivery_counts("w") == {"leased": 0, "waiting": 0, "dead": 2}


async def test_max_ack_pending_caps_redeliveries_too(storage: Storage) -> None:
    await _created(storage, ConsumerConfig(ack_wait_ms=10, max_ack_pending=2))
    await storage.lease_new("w", 0, 2, [1, 2], NOW)
    assert (await storage.take_due("w", NOW + 10, 0)).leased == []  # both expired, waiting (no backoff)
    assert await storage.lease_new("w", 2, 3, [3], NOW + 10)
    assert [d.event_id for d in (await storage.take_due("w", NOW + 10, 10)).leased] == [1]


async def test_settling_changes_only_leased_rows(storage: Storage) -> None:
    await _created(storage)
    await storage.lease_new("w", 0, 5, [1, 2, 3, 4, 5], NOW)
    assert await storage.settle("w", [1, 1, 99], "ack", NOW) == (1, [])
    assert await storage.settle("w", [1], "ack", NOW) == (0, [])  # acked already
    assert (await storage.settle("w", [2], "nack", NOW, delay_ms=5000))[0] == 1
    assert await storage.settle("w", [4], "term", NOW, reason="bad input") == (1, [_dead(4, 1, NOW, "bad input")])
    count, died = await storage.settle("w", [5], "nack", NOW)  # no delay: backoff_ms[0], due at NOW + 100
    assert (count, died) == (1, [])
    assert (await storage.settle("w", [3], "extend", NOW + 900))[0] == 1  # leased to NOW + 1900
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.acked == 1
    assert await storage.delivery_counts("w") == {"leased": 1, "waiting": 2, "dead": 1}
    taken = await storage.take_due("w", NOW + 1000, 10)
    assert [d.event_id for d in taken.leased] == [5] and taken.next_due_ms == NOW + 1900
    # 3's and 5's leases ran out meanwhile (and their backoffs); 2 waits for its nack's delay.
    assert [(d.event_id, d.deliveries) for d in (await storage.take_due("w", NOW + 4999, 10)).leased] == [(3, 2), (5, 3)]
    assert [(d.event_id, d.deliveries) for d in (await storage.take_due("w", NOW + 5000, 10)).leased] == [(2, 2)]


async def test_a_nack_after_the_last_delivery_is_a_dead_letter(storage: Storage) -> None:
    await _created(storage, ConsumerConfig(max_deliver=1))
    await storage.lease_new("w", 0, 1, [1], NOW)
    count, died = await storage.settle("w", [1], "nack", NOW + 3)
    assert count == 1 and [(d.event_id, d.reason) for d in died] == [(1, DEAD_MAX_DELIVER)]


async def test_dead_letters_are_listed_in_pages_and_redriven(storage: Storage) -> None:
    await _created(storage)
    await storage.lease_new("w", 0, 4, [1, 2, 3, 4], NOW)
    await storage.settle("w", [1, 2, 3, 4], "term", NOW)
    assert [d.event_id for d in await storage.dead_letters("w", 0, 2)] == [1, 2]
    assert [d.event_id for d in await storage.dead_letters("w", 2, 10)] == [3, 4]
    assert await storage.redrive("w", [2, 77], NOW + 1, 10_000) == 1
    assert await storage.redrive("w", None, NOW + 1, 2) == 2  # the oldest two left: 1 and 3
    assert [d.event_id for d in await storage.dead_letters("w", 0, 10)] == [4]
    taken = await storage.take_due("w", NOW + 1, 10)
    assert [(d.event_id, d.deliveries) for d in taken.leased] == [(1, 1), (2, 1), (3, 1)]  # deliveries start over


async def test_count_after_counts_matching_events_up_to_a_cap(storage: Storage) -> None:
    await storage.append([NewEvent(topic=t, payload=i, timestamp=T0) for i, t in enumerate(["work.a", "x", "work.b", "work.c"])])
    assert await storage.count_after(EventQuery(topic="work.>"), 0, 100) == 3
    assert await storage.count_after(EventQuery(topic="work.>"), 1, 100) == 2
    assert await storage.count_after(EventQuery(topic="work.>"), 0, 2) == 2
    assert await storage.count_after(EventQuery(topic="*.b"), 0, 100) == 1  # a pattern SQL cannot decide alone


async def test_consumers_survive_a_restart(reopen: Callable[[], Storage]) -> None:
    storage = reopen()
    await storage.open()
    try:
        await _created(storage)
        await storage.lease_new("w", 0, 3, [1, 2, 3], NOW)
        await storage.settle("w", [1], "ack", NOW)
        await storage.settle("w", [2], "term", NOW, reason="poison")
    finally:
        await storage.close()
    again = reopen()
    await again.open()
    try:
        consumer = await again.load_consumer("w")
        assert consumer is not None and (consumer.cursor, consumer.acked) == (3, 1)
        assert await again.delivery_counts("w") == {"leased": 1, "waiting": 0, "dead": 1}
        assert [(d.event_id, d.reason) for d in await again.dead_letters("w", 0, 10)] == [(2, "poison")]
    finally:
        await again.close()


def _dead(event_id: int, deliveries: int, at: int, reason: str):  # type: ignore[no-untyped-def]
    from eventbus_server.storage.consumers import Delivery

    return Delivery(event_id, "dead", deliveries, at, reason)
