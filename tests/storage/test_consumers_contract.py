"""Durable consumers as every backend keeps them (DESIGN.md §10)."""

from __future__ import annotations

from collections.abc import Callable

from eventbus_server.storage import EventQuery, NewEvent, Storage
from eventbus_server.storage.consumers import (
    DEAD_MAX_DELIVER,
    GONE,
    ConsumerConfig,
    Delivery,
    FetchResult,
    Scan,
)

T0 = 1_764_000_000_000
NOW = 2_000_000_000_000
CONFIG = ConsumerConfig(
    topic="work.>", ack_wait_ms=1000, max_deliver=3, backoff_ms=(100, 500), max_ack_pending=5
)
SCAN = Scan(EventQuery(topic="work.>"), None, 1 << 30)


async def _created(storage: Storage, config: ConsumerConfig = CONFIG, cursor: int = 0) -> None:
    assert await storage.put_consumer("w", config, cursor, NOW) is True


async def _emitted(storage: Storage, count: int, topic: str = "work.a", size: int = 1) -> list[int]:
    stored = await storage.append(
        [NewEvent(topic=topic, payload="x" * size, timestamp=T0) for _ in range(count)]
    )
    return [event.event_id for event in stored]


async def _fetch(storage: Storage, now: int, limit: int = 10, scan: Scan = SCAN) -> FetchResult:
    result = await storage.fetch_leases("w", now, limit, scan)
    assert result is not None
    return result


def _leased(result: FetchResult) -> list[tuple[int, int]]:
    """(event id, delivery number) of each lease, in order."""
    return [(event.event_id, lease.deliveries) for event, lease in result.leased]


async def test_a_consumer_is_created_listed_changed_and_deleted(storage: Storage) -> None:
    await _emitted(storage, 9)
    await _created(storage, cursor=7)
    consumer = await storage.load_consumer("w")
    assert (
        consumer is not None
        and consumer.config == CONFIG
        and consumer.cursor == 7
        and consumer.created_at == NOW
    )
    assert [c.name for c in await storage.list_consumers()] == ["w"]
    assert _leased(await _fetch(storage, NOW)) == [(8, 1), (9, 1)]
    changed = ConsumerConfig(topic="other.>", max_deliver=9)
    assert (
        await storage.put_consumer("w", changed, 0, NOW + 5) is False
    )  # a change keeps the cursor and leases
    consumer = await storage.load_consumer("w")
    assert (
        consumer is not None
        and consumer.config == changed
        and consumer.cursor == 9
        and consumer.updated_at == NOW + 5
    )
    assert (await storage.delivery_counts("w"))["leased"] == 2
    assert await storage.delete_consumer("w") is True
    assert await storage.load_consumer("w") is None and await storage.delete_consumer("w") is False
    assert await storage.fetch_leases("w", NOW, 10, SCAN) is None
    assert await storage.settle("w", [8], "ack", NOW) is None
    assert await storage.delivery_counts("w") == {"leased": 0, "waiting": 0, "dead": 0}


async def test_a_fetch_leases_new_events_once_in_order_up_to_max_ack_pending(
    storage: Storage,
) -> None:
    await _emitted(storage, 3, topic="other")  # not for this consumer
    ids = await _emitted(storage, 8)
    await _created(storage)
    assert _leased(await _fetch(storage, NOW, 2)) == [(ids[0], 1), (ids[1], 1)]
    assert _leased(await _fetch(storage, NOW, 10)) == [
        (i, 1) for i in ids[2:5]
    ]  # max_ack_pending 5
    assert _leased(await _fetch(storage, NOW, 10)) == []
    consumer = await storage.load_consumer("w")
    assert (
        consumer is not None and consumer.cursor == ids[4] and consumer.last_delivered_id == ids[4]
    )
    assert await storage.settle("w", ids[:2], "ack", NOW) == (2, [])
    assert _leased(await _fetch(storage, NOW, 10)) == [(ids[5], 1), (ids[6], 1)]


async def test_a_scan_skips_what_its_filter_refuses_and_stops_at_its_byte_budget(
    storage: Storage,
) -> None:
    ids = await _emitted(storage, 6, size=1000)
    await _created(storage, ConsumerConfig(topic="work.>", max_ack_pending=100))
    odd = Scan(EventQuery(topic="work.>"), lambda event: event.event_id % 2 == 1, 2500)
    result = await _fetch(storage, NOW, 10, odd)
    assert [e for e, _ in _leased(result)] == [i for i in ids if i % 2 == 1][
        :2
    ]  # two of ~1 KB fit 2,500 bytes
    consumer = await storage.load_consumer("w")
    # Past what it read, not past the odd event it left for the next fetch.
    assert consumer is not None and ids[2] <= consumer.cursor < [i for i in ids if i % 2 == 1][2]
    assert (
        len((await _fetch(storage, NOW, 10, Scan(EventQuery(topic="work.>"), None, 1))).leased) == 1
    )  # at least one


async def test_expired_leases_wait_out_their_backoff_then_lease_again_then_die(
    storage: Storage,
) -> None:
    first, second = await _emitted(storage, 2)
    await _created(storage)
    await _fetch(storage, NOW)
    assert _leased(await _fetch(storage, NOW + 999)) == []  # still leased
    result = await _fetch(storage, NOW + 1000)  # expired: due after backoff_ms[0]
    assert result.leased == [] and result.died == [] and result.next_due_ms == NOW + 1100
    assert _leased(await _fetch(storage, NOW + 1100, 1)) == [
        (first, 2)
    ]  # oldest first, one asked for
    assert _leased(await _fetch(storage, NOW + 1100)) == [(second, 2)]
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.redelivered == 2
    # Delivery 3 after backoff_ms[1] (500); when it runs out too, a dead letter.
    assert _leased(await _fetch(storage, NOW + 2100)) == []
    assert _leased(await _fetch(storage, NOW + 2600)) == [(first, 3), (second, 3)]
    result = await _fetch(storage, NOW + 3600)
    assert [(d.event_id, d.state, d.reason) for d in result.died] == [
        (first, "dead", DEAD_MAX_DELIVER),
        (second, "dead", DEAD_MAX_DELIVER),
    ]
    assert result.next_due_ms is None
    assert await storage.delivery_counts("w") == {"leased": 0, "waiting": 0, "dead": 2}


async def test_max_ack_pending_caps_redeliveries_too(storage: Storage) -> None:
    ids = await _emitted(storage, 3)
    await _created(storage, ConsumerConfig(ack_wait_ms=10, max_ack_pending=2))
    assert len((await _fetch(storage, NOW, 2)).leased) == 2
    assert _leased(await _fetch(storage, NOW + 10, 1)) == [
        (ids[0], 2)
    ]  # both expired; one asked for
    assert _leased(await _fetch(storage, NOW + 10, 10)) == [
        (ids[1], 2)
    ]  # room for one: 2 leased at most


async def test_settling_changes_only_leased_rows(storage: Storage) -> None:
    ids = await _emitted(storage, 5)
    await _created(storage)
    await _fetch(storage, NOW)
    one, two, three, four, five = ids
    assert await storage.settle("w", [one, one, 99_999], "ack", NOW) == (1, [])
    assert await storage.settle("w", [one], "ack", NOW) == (0, [])  # acked already
    assert (await storage.settle("w", [two], "nack", NOW, delay_ms=5000))[0] == 1  # type: ignore[index]
    assert await storage.settle("w", [four], "term", NOW, reason="bad input") == (
        1,
        [Delivery(four, "dead", 1, NOW, "bad input")],
    )
    assert await storage.settle("w", [five], "nack", NOW) == (
        1,
        [],
    )  # no delay: backoff_ms[0], due at NOW + 100
    assert (await storage.settle("w", [three], "extend", NOW + 900))[0] == 1  # type: ignore[index]  # leased to NOW + 1900
    consumer = await storage.load_consumer("w")
    assert consumer is not None and consumer.acked == 1
    assert await storage.delivery_counts("w") == {"leased": 1, "waiting": 2, "dead": 1}
    result = await _fetch(storage, NOW + 1000)
    assert _leased(result) == [(five, 2)] and result.next_due_ms == NOW + 1900
    # 3's and 5's leases ran out meanwhile (and their backoffs); 2 waits for its nack's delay.
    assert _leased(await _fetch(storage, NOW + 4999)) == [(three, 2), (five, 3)]
    assert _leased(await _fetch(storage, NOW + 5000)) == [(two, 2)]


async def test_a_nack_after_the_last_delivery_is_a_dead_letter(storage: Storage) -> None:
    [event_id] = await _emitted(storage, 1)
    await _created(storage, ConsumerConfig(max_deliver=1))
    await _fetch(storage, NOW)
    count, died = await storage.settle("w", [event_id], "nack", NOW + 3) or (0, [])
    assert count == 1 and [(d.event_id, d.reason) for d in died] == [(event_id, DEAD_MAX_DELIVER)]


async def test_dead_letters_are_listed_in_pages_and_redriven(storage: Storage) -> None:
    ids = await _emitted(storage, 4)
    await _created(storage)
    await _fetch(storage, NOW)
    await storage.settle("w", ids, "term", NOW)
    assert [d.event_id for d in await storage.dead_letters("w", 0, 2)] == ids[:2]
    assert [d.event_id for d in await storage.dead_letters("w", ids[1], 10)] == ids[2:]
    assert await storage.redrive("w", [ids[1], 99_999], NOW + 1, 10_000) == 1
    assert await storage.redrive("w", None, NOW + 1, 2) == 2  # the oldest two left
    assert [d.event_id for d in await storage.dead_letters("w", 0, 10)] == [ids[3]]
    assert _leased(await _fetch(storage, NOW + 1)) == [
        (ids[0], 1),
        (ids[1], 1),
        (ids[2], 1),
    ]  # deliveries start over


async def test_a_redelivery_whose_event_is_gone_becomes_a_dead_letter(storage: Storage) -> None:
    first, second = await _emitted(storage, 2)
    await _created(storage)
    await _fetch(storage, NOW)
    await storage.settle("w", [first, second], "nack", NOW, delay_ms=0)
    await storage.prune(max_events=1, min_timestamp=None)  # the first is gone
    result = await _fetch(storage, NOW)
    assert _leased(result) == [(second, 2)]
    assert [(d.event_id, d.reason) for d in result.died] == [(first, GONE)]


async def test_count_after_counts_matching_events_up_to_a_cap(storage: Storage) -> None:
    await storage.append(
        [
            NewEvent(topic=t, payload=i, timestamp=T0)
            for i, t in enumerate(["work.a", "x", "work.b", "work.c"])
        ]
    )
    assert await storage.count_after(EventQuery(topic="work.>"), 0, 100) == 3
    assert await storage.count_after(EventQuery(topic="work.>"), 1, 100) == 2
    assert await storage.count_after(EventQuery(topic="work.>"), 0, 2) == 2
    assert (
        await storage.count_after(EventQuery(topic="*.b"), 0, 100) == 1
    )  # a pattern SQL cannot decide alone


async def test_consumers_survive_a_restart(reopen: Callable[[], Storage]) -> None:
    storage = reopen()
    await storage.open()
    try:
        ids = await _emitted(storage, 3)
        await _created(storage)
        await _fetch(storage, NOW)
        await storage.settle("w", [ids[0]], "ack", NOW)
        await storage.settle("w", [ids[1]], "term", NOW, reason="poison")
    finally:
        await storage.close()
    again = reopen()
    await again.open()
    try:
        consumer = await again.load_consumer("w")
        assert consumer is not None and (consumer.cursor, consumer.acked) == (ids[2], 1)
        assert await again.delivery_counts("w") == {"leased": 1, "waiting": 0, "dead": 1}
        assert [(d.event_id, d.reason) for d in await again.dead_letters("w", 0, 10)] == [
            (ids[1], "poison")
        ]
    finally:
        await again.close()
