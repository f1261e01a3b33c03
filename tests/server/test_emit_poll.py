"""The emit path and queries, through the real client against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventbus_client import (
    EventBusClient,
    InvalidParams,
    Overloaded,
    ReservedTopic,
    SourceNotAllowed,
    connect,
)
from tests import postgres
from tests.conftest import start_buses


async def test_emit_then_poll_round_trips_every_field(
    client: EventBusClient, unique_topic: str
) -> None:
    result = await client.emit(
        unique_topic,
        {"repo": "acme/api", "n": [1, 2.5, None, "ü"]},
        source_trn="trn:user:alice:cli:v1",
        target_trn="trn:org:acme:repo:api:v1",
        correlation_id="c-1",
        metadata={"trace": "x"},
        timestamp=1_764_300_000_123,
    )
    assert result.event_id > 0 and not result.duplicate
    polled = await client.poll(unique_topic)
    (event,) = polled.events
    assert event.model_dump() == {
        "event_id": result.event_id,
        "topic": unique_topic,
        "payload": {"repo": "acme/api", "n": [1, 2.5, None, "ü"]},
        "timestamp": 1_764_300_000_123,
        "metadata": {"trace": "x"},
        "source_trn": "trn:user:alice:cli:v1",
        "target_trn": "trn:org:acme:repo:api:v1",
        "correlation_id": "c-1",
    }
    assert polled.next_since == result.event_id


async def test_event_ids_strictly_increase_and_timestamp_is_filled(
    client: EventBusClient, unique_topic: str
) -> None:
    results = [await client.emit(unique_topic, i) for i in range(5)]
    ids = [r.event_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert all(r.timestamp > 1_700_000_000_000 for r in results)


async def test_poll_pages_with_next_since(client: EventBusClient, unique_topic: str) -> None:
    await client.emit_many([{"topic": unique_topic, "payload": i} for i in range(25)])
    seen, since = [], 0
    while True:
        page = await client.poll(unique_topic, since=since, limit=10)
        if not page.events:
            break
        seen += [e.payload for e in page.events]
        since = page.next_since
    assert seen == list(range(25))


async def test_poll_desc_and_filters(client: EventBusClient, unique_topic: str) -> None:
    await client.emit(
        f"{unique_topic}.a", 1, source_trn="trn:user:alice:x", correlation_id="c1", timestamp=1000
    )
    await client.emit(
        f"{unique_topic}.b",
        2,
        source_trn="trn:org:acme:x",
        target_trn="trn:user:bob:y",
        timestamp=2000,
    )
    await client.emit(
        f"{unique_topic}.b.c", 3, source_trn="trn:user:carol:x", correlation_id="c1", timestamp=3000
    )

    async def payloads(**filters) -> list:
        return [e.payload for e in (await client.poll(**filters)).events]

    assert await payloads(topic=f"{unique_topic}.>", order="desc") == [3, 2, 1]
    assert await payloads(topic=f"{unique_topic}.*") == [1, 2]
    assert await payloads(topic=f"{unique_topic}.>", source_trn="trn:user:") == [1, 3]
    assert await payloads(topic=f"{unique_topic}.>", source_trn="trn:user:*:x") == [1, 3]
    assert await payloads(topic=f"{unique_topic}.>", target_trn="trn:user:bob:*") == [2]
    assert await payloads(topic=f"{unique_topic}.>", correlation_id="c1") == [1, 3]
    assert await payloads(topic=f"{unique_topic}.>", from_ts=1500, to_ts=3000) == [2, 3]


async def test_emit_events_is_all_or_nothing(client: EventBusClient, unique_topic: str) -> None:
    with pytest.raises(InvalidParams) as info:
        await client.emit_many([{"topic": unique_topic, "payload": 1}, {"topic": "bad..topic"}])
    assert info.value.data[0]["loc"] == "events[1].topic"
    assert (await client.poll(unique_topic)).events == []
    ids = await client.emit_many([{"topic": unique_topic, "payload": i} for i in range(3)])
    assert len(ids) == 3 and ids == sorted(ids)


async def test_reserved_topics_are_refused(client: EventBusClient) -> None:
    with pytest.raises(ReservedTopic):
        await client.emit("_sys.anything", 1)


async def test_idempotency_key_dedups_and_stores_nothing(
    client: EventBusClient, unique_topic: str
) -> None:
    first = await client.emit(unique_topic, 1, idempotency_key="k-1")
    again = await client.emit(unique_topic, 2, idempotency_key="k-1")
    assert (
        again.duplicate and again.event_id == first.event_id and again.timestamp == first.timestamp
    )
    other = await client.emit(unique_topic, 3, idempotency_key="k-2")
    assert not other.duplicate
    assert [e.payload for e in (await client.poll(unique_topic)).events] == [1, 3]


async def test_idempotency_within_one_batch(client: EventBusClient, unique_topic: str) -> None:
    ids = await client.emit_many(
        [
            {"topic": unique_topic, "payload": 1, "idempotency_key": "same"},
            {"topic": unique_topic, "payload": 2, "idempotency_key": "same"},
        ]
    )
    assert ids[0] == ids[1]
    assert [e.payload for e in (await client.poll(unique_topic)).events] == [1]


async def test_concurrent_duplicate_emits_store_one_event(
    client: EventBusClient, unique_topic: str
) -> None:
    results = await asyncio.gather(
        *(client.emit(unique_topic, i, idempotency_key="race") for i in range(20))
    )
    assert len({r.event_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert len((await client.poll(unique_topic)).events) == 1


async def test_list_topics_counts(client: EventBusClient, unique_topic: str) -> None:
    await client.emit_many([{"topic": f"{unique_topic}.x", "payload": i} for i in range(3)])
    last = await client.emit(f"{unique_topic}.y", 0, timestamp=42)
    topics = {t["topic"]: t for t in await client.list_topics()}
    assert topics[f"{unique_topic}.x"]["count"] == 3
    assert topics[f"{unique_topic}.y"] == {
        "topic": f"{unique_topic}.y",
        "count": 1,
        "last_event_id": last.event_id,
        "last_timestamp": 42,
    }


async def test_bus_info(client: EventBusClient, bus_config: dict) -> None:
    info = await client.bus_info()
    assert info["id"] == "test"
    assert info["persist"] is bus_config["persist"]
    assert info["storage"].startswith("memory" if not bus_config["persist"] else "sqlite:")
    assert info["enable_rules"] is False and info["allowed_sources"] is None
    assert info["stats"]["connections"] == 1


async def test_allowed_sources(tmp_path: Path) -> None:
    async with start_buses(
        tmp_path, {"id": "guarded", "allowed_sources": ["trn:user:", "trn:org:acme:*"]}
    ) as app:
        async with await connect(app.url("guarded")) as bus:
            assert (await bus.emit("a", 1, source_trn="trn:user:alice:cli:v1")).event_id
            assert (await bus.emit("a", 1, source_trn="trn:org:acme:tool:x")).event_id
            with pytest.raises(SourceNotAllowed, match="source_trn is required"):
                await bus.emit("a", 1)
            with pytest.raises(SourceNotAllowed, match="trn:org:other:x"):
                await bus.emit("a", 1, source_trn="trn:org:other:x")
            with pytest.raises(SourceNotAllowed, match=r"events\[1\]"):
                await bus.emit_many([{"topic": "a", "source_trn": "trn:user:a:b"}, {"topic": "a"}])
            assert len((await bus.poll("a")).events) == 2


async def test_invalid_trn_is_a_validation_error(client: EventBusClient) -> None:
    with pytest.raises(InvalidParams) as info:
        await client.emit("a", 1, source_trn="trn:user")
    assert info.value.data[0]["loc"] == "source_trn"


async def test_queue_full_is_overloaded(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "q", "queue_size": 1}) as app:
        async with await connect(app.url("q")) as bus:
            results = await asyncio.gather(
                *(bus.emit("a", i) for i in range(300)), return_exceptions=True
            )
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert overloaded, "a queue of 1 must overflow under 300 concurrent emits"
    assert stored and len(stored) + len(overloaded) == 300
    assert "back off" in overloaded[0].message


async def test_two_buses_in_one_process_are_independent(tmp_path: Path) -> None:
    async with start_buses(
        tmp_path, {"id": "one"}, {"id": "two", "persist": True, "storage_path": "two.db"}
    ) as app:
        assert app.address("one")[1] != app.address("two")[1]
        async with await connect(app.url("one")) as one, await connect(app.url("two")) as two:
            await one.emit("x", "on one")
            assert (await two.poll("x")).events == []
            assert (await two.bus_info())["storage"] == f"sqlite:{tmp_path / 'two.db'}"
        assert (tmp_path / "two.db").exists()


async def test_persistence_across_clean_restart(tmp_path: Path) -> None:
    bus = {"id": "durable", "persist": True, "storage_path": "data/durable.db"}
    async with start_buses(tmp_path, bus) as app, await connect(app.url("durable")) as client:
        ids = await client.emit_many([{"topic": "keep", "payload": i} for i in range(100)])
    async with start_buses(tmp_path, bus) as app, await connect(app.url("durable")) as client:
        events = (await client.poll("keep", limit=1000)).events
        assert [e.event_id for e in events] == ids
        assert (await client.emit("keep", "after")).event_id > ids[-1]
        topics = await client.list_topics()
        assert topics[0]["count"] == 101


async def test_shutdown_commits_every_queued_emit(tmp_path: Path) -> None:
    bus = {"id": "drain", "persist": True, "storage_path": "drain.db"}
    async with start_buses(tmp_path, bus) as app:
        client = await connect(app.url("drain"))
        pending = [asyncio.ensure_future(client.emit("d", i)) for i in range(500)]
        await asyncio.sleep(0)  # let the writes reach the socket before shutdown starts
        acked_ids = []
    # The app shut down at the end of the block; every emit that got an ack must be stored.
    for future in pending:
        try:
            acked_ids.append((await future).event_id)
        except Exception:
            pass
    await client.close()
    async with start_buses(tmp_path, bus) as app, await connect(app.url("drain")) as client:
        stored = {e.event_id for e in (await client.poll("d", limit=1000)).events}
    assert set(acked_ids) <= stored


async def test_memory_bus_counts_only_what_its_ring_holds(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "ring", "memory_buffer": 10}) as app:
        async with await connect(app.url("ring")) as bus:
            await bus.emit_many([{"topic": "old", "payload": i} for i in range(5)])
            await bus.emit_many([{"topic": "new", "payload": i} for i in range(10)])
            assert [t["topic"] for t in await bus.list_topics()] == ["new"]
            assert [e.payload for e in (await bus.poll(">")).events] == list(range(10))


@pytest.mark.parametrize("storage", ["memory", "sqlite", "postgres"])
async def test_a_nul_in_an_event_is_refused_on_every_backend_and_fails_no_one_else(
    tmp_path: Path, storage: str
) -> None:
    """PostgreSQL cannot store U+0000: one such event failed the whole group commit (-32603).
    Found by tests/hostile/test_fuzz.py."""
    where: dict[str, object] = {}
    if storage == "sqlite":
        where = {"persist": True, "storage_path": str(tmp_path / "nul.db")}
    elif storage == "postgres":
        where = {"persist": True, "storage_url": postgres.storage_url(tmp_path)}
    async with (
        start_buses(tmp_path, {"id": "nul", **where}) as app,
        await connect(app.url("nul")) as bus,
    ):
        outcomes = await asyncio.gather(
            bus.emit("t.nul", {"s": "a\x00b"}),
            bus.emit("t.ok", 1),
            bus.emit("t.nul", 2, correlation_id="c\x00"),
            return_exceptions=True,
        )
        bad, good, bad_too = outcomes
        assert isinstance(bad, InvalidParams) and bad.data[0]["loc"] == "payload.s"
        assert isinstance(bad_too, InvalidParams) and bad_too.data[0]["loc"] == "correlation_id"
        assert not isinstance(good, BaseException)
        assert [e.topic for e in (await bus.poll(">")).events] == ["t.ok"]
