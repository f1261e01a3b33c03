"""PostgreSQL goes away under a running bus, then comes back.

The database is a real server the test owns (tests/pg_cluster.py), stopped
with `pg_ctl -m immediate` (a crash: every connection cut) and started again
on the same port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventbus_client import StorageUnavailable, connect
from eventbus_core.event import Event
from tests.conftest import start_buses
from tests.pg_cluster import TempCluster

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster() -> AsyncIterator[TempCluster]:
    server = TempCluster()
    await server.init()
    try:
        yield server
    finally:
        await server.destroy()


async def emit_until_it_works(bus, topic: str, payload: object, timeout_s: float = 20.0) -> int:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return (await bus.emit(topic, payload)).event_id  # type: ignore[no-any-return]
        except StorageUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_emits_answer_32008_while_the_database_is_down_and_recover_by_themselves(
    tmp_path: Path, cluster: TempCluster
) -> None:
    bus_config = {"id": "pg", "persist": True, "storage_url": cluster.url, "enable_rules": True}
    async with start_buses(tmp_path, bus_config) as app, await connect(app.url("pg")) as bus:
        await bus.register_rule(
            {"id": "copy", "topic": "before", "action": {"type": "EmitEvent", "topic": "copied"}}
        )
        sub = await bus.subscribe("after")
        before = await bus.emit_many([{"topic": "before", "payload": i} for i in range(50)])

        await cluster.stop()
        with pytest.raises(
            StorageUnavailable,
            match=r"PostgreSQL 127\.0\.0\.1:\d+/postgres schema 'eventbus_pg' is unavailable",
        ):
            await bus.emit_many([{"topic": "lost", "payload": i} for i in range(20)])
        with pytest.raises(StorageUnavailable):
            await bus.poll("before")
        # The bus itself stays up and says so.
        assert (await bus.bus_info())["id"] == "pg"

        await cluster.start()
        first_after = await emit_until_it_works(bus, "after", 0)
        await bus.emit_many([{"topic": "after", "payload": i} for i in range(1, 10)])

        stored = (await bus.poll(">", limit=1000)).events
        assert [
            e.event_id for e in stored if e.topic == "before"
        ] == before  # nothing acknowledged is lost
        assert not [e for e in stored if e.topic == "lost"]  # nothing half-written
        assert all(e.event_id >= first_after for e in stored if e.topic == "after")

        # The subscription goes on: the events emitted after the outage arrive, in order.
        live: list[Event] = []
        async with asyncio.timeout(10):
            async for event in sub:
                live.append(event)
                if len(live) == 10:
                    break
        assert [e.payload for e in live] == list(range(10))

        # Rules caught up too: every "before" event was copied exactly once.
        async def copied() -> int:
            return len((await bus.poll("copied", limit=1000)).events)

        async with asyncio.timeout(15):
            while await copied() < len(before):
                await asyncio.sleep(0.2)
        assert await copied() == len(before)


async def test_a_bus_whose_database_is_down_at_start_says_so(
    tmp_path: Path, cluster: TempCluster
) -> None:
    await cluster.stop("fast")
    with pytest.raises(Exception, match="is unavailable"):
        async with start_buses(tmp_path, {"id": "pg", "persist": True, "storage_url": cluster.url}):
            pass


#: Holds the `held` tool's calls until the test lets them go (the bus runs in this process).
GATE: asyncio.Event | None = None
CALLS: list[object] = []


async def held(request: dict[str, object]) -> object:
    CALLS.append(request["input"])
    assert GATE is not None
    await GATE.wait()
    return request["input"]


async def test_a_firing_caught_by_an_outage_waits_for_it_and_ends_ok_on_its_first_attempt(
    tmp_path: Path, cluster: TempCluster
) -> None:
    """A tool answered while the database was down: its result cannot be emitted. That is
    not the tool's failure: the firing waits for storage, spends no attempt, and ends `ok`
    (not a dead letter because a database restarted)."""
    global GATE
    GATE = asyncio.Event()
    CALLS.clear()
    bus_config = {
        "id": "pg",
        "persist": True,
        "storage_url": cluster.url,
        "enable_rules": True,
        "retry": {"attempts": 2, "backoff_ms": 10},
        "tools": [
            {
                "match": "trn:user:ops:python:held:*",
                "kind": "python",
                "function": f"{__name__}:held",
            }
        ],
    }
    async with start_buses(tmp_path, bus_config) as app, await connect(app.url("pg")) as bus:
        await bus.register_rule(
            {
                "id": "hold",
                "topic": "job",
                "action": {
                    "type": "InvokeTool",
                    "tool_id": "trn:user:ops:python:held:v1",
                    "input": "{{ $.payload }}",
                    "result_topic": "done",
                },
            }
        )
        await bus.emit("job", "one")
        async with asyncio.timeout(10):
            while not CALLS:
                await asyncio.sleep(0.02)

        await cluster.stop()
        GATE.set()  # the tool answers now; its result has nowhere to go
        await asyncio.sleep(1.5)  # longer than both attempts' backoff
        await cluster.start()

        async with asyncio.timeout(20):
            while [f["status"] for f in await bus.list_firings(rule_id="hold")] != ["ok"]:
                await asyncio.sleep(0.2)
        firings = await bus.list_firings(rule_id="hold")
        assert [(f["status"], f["attempts"]) for f in firings] == [("ok", 1)]
        assert [e.payload for e in (await bus.poll("done")).events] == ["one"]
        assert CALLS == ["one"]  # the tool answered once; only its result waited


async def test_a_sibling_bus_outage_fails_only_the_firings_that_emit_there(
    tmp_path: Path, cluster: TempCluster
) -> None:
    """A rule on `local` (SQLite) emits on `remote`, whose PostgreSQL is down: those firings
    are retried within their attempts and end failed (a dead letter, redriven once it is
    back); they do not wait, so the other rules of `local` go on meanwhile."""
    local = {
        "id": "local",
        "persist": True,
        "storage_path": str(tmp_path / "local.db"),
        "enable_rules": True,
        "retry": {"attempts": 2, "backoff_ms": 10},
    }
    remote = {
        "id": "remote",
        "persist": True,
        "storage_url": cluster.url,
        "accept_from_buses": ["local"],
    }
    async with (
        start_buses(tmp_path, local, remote) as app,
        await connect(app.url("local")) as bus,
    ):
        await bus.register_rule(
            {
                "id": "to-remote",
                "topic": "order",
                "action": {"type": "EmitEvent", "bus": "remote", "topic": "order.copy"},
            }
        )
        await bus.register_rule(
            {"id": "here", "topic": "order", "action": {"type": "EmitEvent", "topic": "seen"}}
        )
        await cluster.stop()
        await bus.emit("order", 1)

        async def statuses() -> dict[str, str]:
            return {f["rule_id"]: f["status"] for f in await bus.list_firings()}

        async with asyncio.timeout(20):
            while await statuses() != {"to-remote": "failed", "here": "ok"}:
                await asyncio.sleep(0.1)
        [failed] = await bus.list_firings(status="failed")
        assert failed["attempts"] == 2 and "unavailable" in str(failed["error"])

        await cluster.start()
        async with asyncio.timeout(20):
            while True:
                try:
                    if await bus.retry_firings(rule_id="to-remote") == 1:
                        break
                except StorageUnavailable:
                    pass
                await asyncio.sleep(0.2)
            while (await statuses())["to-remote"] != "ok":
                await asyncio.sleep(0.1)
        async with await connect(app.url("remote")) as other:
            assert [e.topic for e in (await other.poll("order.copy")).events] == ["order.copy"]
