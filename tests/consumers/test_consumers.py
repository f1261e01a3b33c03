"""Durable consumers over TCP with the real client, on every storage (DESIGN.md §10)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_core.errors import AlreadyExists, InvalidParams, NotFound
from eventbus_server.app import EventBusApp
from tests.wire import RawPeer


async def test_three_workers_share_ten_thousand_events_each_acked_once(
    work_app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.create_consumer("pool", topic="jobs.>", start="all", max_ack_pending=1000)
    for start in range(0, 10_000, 1000):
        await bus.emit_many(
            [{"topic": "jobs.resize", "payload": i} for i in range(start, start + 1000)]
        )
    await bus.emit("other.topic", "not for the pool")
    held: set[int] = set()  # leased and not yet acked, across the three workers
    acked: Counter[int] = Counter()
    overlaps: list[int] = []

    async def worker() -> None:
        async with await connect(work_app.url("work")) as client:
            while sum(acked.values()) < 10_000:
                batch = await client.fetch("pool", max=100, wait_ms=200)
                for message in batch:
                    if message.event_id in held:
                        overlaps.append(message.event_id)
                    held.add(message.event_id)
                await asyncio.sleep(0)  # the others fetch meanwhile
                for message in batch:
                    held.discard(message.event_id)
                    acked[message.event_id] += 1
                if batch:  # one ack for the batch (message.ack() acks one)
                    assert await client.ack("pool", [m.event_id for m in batch]) == len(batch)

    await asyncio.wait_for(asyncio.gather(worker(), worker(), worker()), 120)
    assert overlaps == []
    assert len(acked) == 10_000 and set(acked.values()) == {1}
    stats = (await bus.get_consumer("pool"))["stats"]
    assert (
        stats["acked"],
        stats["ack_pending"],
        stats["pending"],
        stats["redelivered"],
        stats["dead"],
    ) == (10_000, 0, 0, 0, 0)
    assert await bus.fetch("pool") == []


async def test_a_lease_that_runs_out_goes_to_another_worker_with_deliveries_2(
    bus: EventBusClient,
) -> None:
    await bus.create_consumer("w", topic="t", ack_wait_ms=300)
    await bus.emit("t", "job")
    [first] = await bus.fetch("w", max=5)
    assert first.deliveries == 1
    started = time.monotonic()
    [again] = await bus.fetch("w", max=5, wait_ms=5000)  # the first worker never acks
    assert time.monotonic() - started >= 0.2
    assert (again.event_id, again.deliveries) == (first.event_id, 2)
    assert await again.ack()
    assert not await first.ack()  # acked already: nothing of it is leased
    stats = (await bus.get_consumer("w"))["stats"]
    assert (stats["redelivered"], stats["acked"], stats["ack_pending"]) == (1, 1, 0)


async def test_nack_with_a_delay_and_the_backoff_list(bus: EventBusClient) -> None:
    await bus.create_consumer("w", topic="t", ack_wait_ms=200, backoff_ms=[300, 600])
    await bus.emit("t", 1)
    [message] = await bus.fetch("w")
    assert await message.nack(delay_ms=400)
    started = time.monotonic()
    [again] = await bus.fetch("w", wait_ms=5000)
    assert time.monotonic() - started >= 0.35 and again.deliveries == 2
    started = time.monotonic()
    [third] = await bus.fetch("w", wait_ms=5000)  # not acked: 200 ms lease, then backoff_ms[1]
    assert time.monotonic() - started >= 0.75 and third.deliveries == 3


async def test_max_deliver_makes_a_dead_letter_and_redrive_delivers_it_again(
    bus: EventBusClient,
) -> None:
    await bus.create_consumer("w", topic="t", max_deliver=2)
    event_id = (await bus.emit("t", {"bad": True})).event_id
    for deliveries in (1, 2):
        [message] = await bus.fetch("w")
        assert message.deliveries == deliveries
        await message.nack(delay_ms=0)
    assert await bus.fetch("w") == []
    [dead] = await bus.list_dead_letters("w")
    assert (dead["event_id"], dead["deliveries"], dead["reason"]) == (event_id, 2, "max_deliver")
    assert dead["event"] is not None and dead["event"]["payload"] == {"bad": True}
    assert (await bus.get_consumer("w"))["stats"]["dead"] == 1
    assert await bus.redrive("w") == 1
    [back] = await bus.fetch("w")
    assert (back.event_id, back.deliveries) == (event_id, 1)
    assert await back.term(reason="still bad")
    assert [(d["event_id"], d["reason"]) for d in await bus.list_dead_letters("w")] == [
        (event_id, "still bad")
    ]


async def test_max_ack_pending_caps_leases_across_workers(
    work_app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.create_consumer("w", topic="t", max_ack_pending=3)
    await bus.emit_many([{"topic": "t", "payload": i} for i in range(10)])
    async with await connect(work_app.url("work")) as other:
        assert len(await bus.fetch("w", max=2)) == 2
        assert len(await other.fetch("w", max=5)) == 1
        assert await other.fetch("w", max=5) == []
    assert (await bus.get_consumer("w"))["stats"]["ack_pending"] == 3


async def test_extend_keeps_the_lease(bus: EventBusClient) -> None:
    await bus.create_consumer("w", topic="t", ack_wait_ms=300)
    await bus.emit("t", 1)
    [message] = await bus.fetch("w")
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await message.extend()
    assert await bus.fetch("w") == []  # 450 ms later, still ours
    assert await message.ack()


async def test_a_waiting_fetch_wakes_for_a_new_matching_event(
    bus: EventBusClient, work_app: EventBusApp
) -> None:
    await bus.create_consumer(
        "w", topic="jobs.>", pattern={"payload": {"size": [{"numeric": [">", 10]}]}}
    )
    waiting = asyncio.ensure_future(bus.fetch("w", wait_ms=10_000))
    async with await connect(work_app.url("work")) as emitter:
        await emitter.emit("jobs.x", {"size": 1})  # the pattern lets it pass by
        await emitter.emit("other", {"size": 99})
        started = time.monotonic()
        event_id = (await emitter.emit("jobs.x", {"size": 99})).event_id
        [message] = await asyncio.wait_for(waiting, 5)
    assert message.event_id == event_id and time.monotonic() - started < 5
    assert await bus.fetch("w", wait_ms=50) == []


async def test_start_positions(bus: EventBusClient) -> None:
    ids = await bus.emit_many([{"topic": "t", "payload": i} for i in range(4)])
    await bus.create_consumer("all", topic="t", start="all")
    await bus.create_consumer("new", topic="t", start="new")
    await bus.create_consumer("after", topic="t", start={"after_id": ids[1]})
    assert [m.event.payload for m in await bus.fetch("all", max=10)] == [0, 1, 2, 3]
    assert await bus.fetch("new") == []
    assert [m.event.payload for m in await bus.fetch("after", max=10)] == [2, 3]


async def test_managing_consumers_and_their_errors(bus: EventBusClient) -> None:
    assert await bus.create_consumer("w", topic="a.>") is True
    with pytest.raises(AlreadyExists, match="replace"):
        await bus.create_consumer("w", topic="b.>")
    assert await bus.create_consumer("w", topic="b.>", replace=True) is False
    [info] = await bus.list_consumers()
    assert info["name"] == "w" and info["topic"] == "b.>" and info["max_deliver"] == 5
    with pytest.raises(NotFound, match="no consumer 'nope'"):
        await bus.fetch("nope")
    with pytest.raises(InvalidParams) as bad:
        await bus.call(
            "create_consumer", {"name": "bad name", "max_ack_pending": 0, "start": {"after_id": -1}}
        )
    assert {d["loc"] for d in bad.value.data or []} >= {"name", "max_ack_pending"}
    with pytest.raises(InvalidParams) as bad:
        await bus.create_consumer("p", pattern={"payload": {"x": [{"wrong": 1}]}})
    assert (bad.value.data or [{}])[0]["loc"].startswith("pattern.payload.x")
    with pytest.raises(InvalidParams):
        await bus.call("fetch", {"consumer": "w", "max": 1001})
    await bus.delete_consumer("w")
    with pytest.raises(NotFound):
        await bus.delete_consumer("w")


async def test_async_for_consume(bus: EventBusClient) -> None:
    await bus.create_consumer("w", topic="t")
    await bus.emit_many([{"topic": "t", "payload": i} for i in range(25)])
    seen = []
    async for message in bus.consume("w", batch=10, wait_ms=100):
        seen.append(message.event.payload)
        await message.ack()
        if len(seen) == 25:
            break
    assert seen == list(range(25))


async def test_a_fetch_stops_waiting_once_its_client_half_closes(
    work_app: EventBusApp, bus: EventBusClient
) -> None:
    """A worker that went away must not lease what comes next: it would wait out its lease for nobody."""
    await bus.create_consumer("w", topic="t")
    peer = await RawPeer.open(work_app.address("work"))
    await peer.send(
        {
            "jsonrpc": "2.0",
            "method": "fetch",
            "params": {"consumer": "w", "wait_ms": 30_000},
            "id": 1,
        }
    )
    await bus.ping()  # the fetch is waiting by now
    peer.writer.write_eof()
    started = time.monotonic()
    assert await peer.recv(10) == {"jsonrpc": "2.0", "id": 1, "result": {"messages": []}}
    assert time.monotonic() - started < 10
    await bus.emit("t", "after the worker left")
    [message] = await bus.fetch("w")
    assert message.deliveries == 1
    await peer.close()
