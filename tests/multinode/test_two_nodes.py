"""Two `eventbus serve` processes, one bus, one PostgreSQL database (DESIGN.md §8).

Each test starts two real server subprocesses from the same config (same bus
id, same storage_url, each on its own ephemeral port) and talks to both with
the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_core.event import Event
from tests import postgres
from tests.processes import ServerProcess

pytestmark = pytest.mark.slow

BUS = "shared"
RECORD_TOOL = {
    "match": "trn:user:test:python:*",
    "kind": "python",
    "function": "tests.rules.python_tools:record",
}


@contextlib.asynccontextmanager
async def two_nodes(
    tmp_path: Path, **bus: Any
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps(
            [
                {
                    "id": BUS,
                    "listen": "127.0.0.1:0",
                    "persist": True,
                    "storage_url": postgres.storage_url(tmp_path),
                    **bus,
                }
            ]
        )
    )
    env = {
        "EVENTBUS_TOOL_LOG": str(tmp_path / "tool-calls.log"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    (tmp_path / "tool-calls.log").touch()
    nodes: list[ServerProcess] = []
    try:
        for _ in range(2):
            nodes.append(await ServerProcess.start(config, env=env))
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            if node.proc.returncode is None:
                node.proc.send_signal(signal.SIGTERM)
                await node.proc.wait()


async def collect(sub: AsyncIterator[Event], count: int, timeout_s: float = 15.0) -> list[Event]:
    events: list[Event] = []

    async def run() -> None:
        async for event in sub:
            events.append(event)
            if len(events) == count:
                return

    try:
        await asyncio.wait_for(run(), timeout_s)
    except TimeoutError:
        pass  # the assertion on the count says what is missing
    return events


async def wait_until(check: Any, timeout_s: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def emit_batches(bus: EventBusClient, node: str, batches: int, size: int = 25) -> list[int]:
    ids: list[int] = []
    for b in range(batches):
        ids += await bus.emit_many(
            [
                {"topic": f"work.{node}", "payload": {"node": node, "n": b * size + i}}
                for i in range(size)
            ]
        )
    return ids


async def test_events_from_either_node_reach_subscribers_on_both_in_order(tmp_path: Path) -> None:
    async with (
        two_nodes(tmp_path) as (a, b),
        await connect(a.url(BUS)) as on_a,
        await connect(b.url(BUS)) as on_b,
    ):
        sub_a = await on_a.subscribe("work.>")
        sub_b = await on_b.subscribe("work.>")
        # Both nodes write at once, so their batches interleave in the log.
        ids_a, ids_b = await asyncio.gather(
            emit_batches(on_a, "a", 20), emit_batches(on_b, "b", 20)
        )
        total = len(ids_a) + len(ids_b)
        seen_a, seen_b = await asyncio.gather(collect(sub_a, total), collect(sub_b, total))

        every_id = sorted(ids_a + ids_b)
        for seen in (seen_a, seen_b):
            # No gap, no duplicate, in event_id order: exactly the log, whoever wrote it.
            assert [e.event_id for e in seen] == every_id
        assert [e.payload for e in seen_a] == [e.payload for e in seen_b]
        for bus in (on_a, on_b):
            page = await bus.poll("work.>", limit=10_000)
            assert [e.event_id for e in page.events] == every_id
        # Both nodes count the other's topics too.
        topics_b = {t["topic"]: t["count"] for t in await on_b.list_topics()}
        assert topics_b == {"work.a": 500, "work.b": 500}


async def test_the_same_idempotency_key_on_both_nodes_at_once_is_stored_once(
    tmp_path: Path,
) -> None:
    async with (
        two_nodes(tmp_path) as (a, b),
        await connect(a.url(BUS)) as on_a,
        await connect(b.url(BUS)) as on_b,
    ):
        keys = [f"order-{i}" for i in range(150)]

        async def emit_all(bus: EventBusClient, node: str) -> list[Any]:
            # Pipelined, so both nodes check and append the same keys in the same moments.
            return list(
                await asyncio.gather(
                    *(
                        bus.emit("orders.placed", {"key": key, "node": node}, idempotency_key=key)
                        for key in keys
                    )
                )
            )

        answers_a, answers_b = await asyncio.gather(emit_all(on_a, "a"), emit_all(on_b, "b"))
        stored = (await on_a.poll("orders.placed", limit=10_000)).events
        assert Counter(e.payload["key"] for e in stored) == Counter(keys)  # each key once
        for answer_a, answer_b in zip(answers_a, answers_b, strict=True):
            # Both callers are told about the one stored event; one of them as a duplicate.
            assert answer_a.event_id == answer_b.event_id
            assert sorted([answer_a.duplicate, answer_b.duplicate]) == [False, True]


async def test_a_subscriber_catching_up_from_the_start_sees_both_nodes(tmp_path: Path) -> None:
    async with (
        two_nodes(tmp_path) as (a, b),
        await connect(a.url(BUS)) as on_a,
        await connect(b.url(BUS)) as on_b,
    ):
        first = await emit_batches(on_a, "a", 2)
        sub = await on_b.subscribe("work.>", since=0)  # stored events, then live
        later = await emit_batches(on_a, "a", 2) + await emit_batches(on_b, "b", 2)
        seen = await collect(sub, len(first) + len(later))
        assert [e.event_id for e in seen] == sorted(first + later)


async def test_rules_registered_on_one_node_fire_exactly_once_across_both(tmp_path: Path) -> None:
    async with (
        two_nodes(tmp_path, enable_rules=True, tools=[RECORD_TOOL], max_concurrency=4) as (a, b),
        await connect(a.url(BUS)) as on_a,
        await connect(b.url(BUS)) as on_b,
    ):
        await on_a.register_rule(
            {
                "id": "count",
                "topic": "work.>",
                "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:record:v1"},
            }
        )
        # Node b learns of the rule from the database.
        assert await wait_until(lambda: _has_rule(on_b, "count"))
        assert (await on_b.test_rule({"topic": "work.b", "payload": {}}, rule_id="count"))[
            "matched"
        ] is True
        assert await wait_until(
            lambda: _indexed(on_b, 1)
        )  # b's rule book has swapped in the reload

        ids = await asyncio.gather(emit_batches(on_a, "a", 4), emit_batches(on_b, "b", 4))
        every_id = sorted(ids[0] + ids[1])

        async def all_fired() -> bool:
            firings = await on_b.list_firings(limit=10_000)
            return len(firings) == len(every_id) and all(f["status"] == "ok" for f in firings)

        assert await wait_until(all_fired, timeout_s=30)
        firings = await on_a.list_firings(limit=10_000)
        # One firing per (rule, event), claimed by whichever node got there first.
        assert sorted(f["event_id"] for f in firings) == every_id
        calls = Counter(
            int(line.split()[1]) for line in (tmp_path / "tool-calls.log").read_text().splitlines()
        )
        assert sorted(calls) == every_id and set(calls.values()) == {1}
        assert (await on_b.get_rule("count"))["fired"] == len(every_id)

        # Disabling on b stops it on a too.
        await on_b.set_rule_enabled("count", False)
        assert await wait_until(lambda: _rule_enabled_everywhere(on_a, "count", False))


async def _has_rule(bus: EventBusClient, rule_id: str) -> bool:
    return rule_id in {r["id"] for r in await bus.list_rules()}


async def _indexed(bus: EventBusClient, rules: int) -> bool:
    """Whether the node's own rule book (not storage) holds `rules` enabled rules."""
    return (await bus.bus_info())["stats"].get("rules_enabled") == rules


async def _rule_enabled_everywhere(bus: EventBusClient, rule_id: str, enabled: bool) -> bool:
    return any(r["id"] == rule_id and r["enabled"] is enabled for r in await bus.list_rules())


async def test_killing_one_node_loses_nothing_and_the_other_keeps_serving(tmp_path: Path) -> None:
    async with two_nodes(tmp_path) as (a, b), await connect(b.url(BUS)) as on_b:
        sub = await on_b.subscribe("work.>")
        async with await connect(a.url(BUS)) as on_a:
            acknowledged = await emit_batches(on_a, "a", 10)
            os.kill(a.proc.pid, signal.SIGKILL)
            await a.proc.wait()
        more = await emit_batches(on_b, "b", 4)
        seen = await collect(sub, len(acknowledged) + len(more))
        assert [e.event_id for e in seen] == sorted(acknowledged + more)
        page = await on_b.poll("work.>", limit=10_000)
        assert [e.event_id for e in page.events] == sorted(acknowledged + more)


async def test_firings_a_killed_node_left_unfinished_are_run_by_the_other(tmp_path: Path) -> None:
    events = 200
    async with (
        two_nodes(tmp_path, enable_rules=True, tools=[RECORD_TOOL], max_concurrency=2) as (a, b),
        await connect(b.url(BUS)) as on_b,
    ):
        await on_b.register_rule(
            {
                "id": "count",
                "topic": "work.>",
                "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:record:v1"},
            }
        )
        async with await connect(a.url(BUS)) as on_a:
            assert await wait_until(lambda: _has_rule(on_a, "count"))
            assert await wait_until(lambda: _indexed(on_a, 1))
            ids = await emit_batches(on_a, "a", events // 25)
        log = tmp_path / "tool-calls.log"
        while len(log.read_text().splitlines()) < 20:
            await asyncio.sleep(0.01)
        os.kill(a.proc.pid, signal.SIGKILL)
        await a.proc.wait()

        async def all_ok() -> bool:
            firings = await on_b.list_firings(limit=10_000)
            return len(firings) == events and all(f["status"] == "ok" for f in firings)

        assert await wait_until(all_ok, timeout_s=30), Counter(
            f["status"] for f in await on_b.list_firings(limit=10_000)
        )
        calls = Counter(int(line.split()[1]) for line in log.read_text().splitlines())
        assert sorted(calls) == ids  # every event reached the tool
        assert set(calls.values()) <= {1, 2}  # at most once more, for a call the kill cut off
