"""What a hostile client of durable consumers gets (DESIGN.md §3, §10), against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventbus_client import connect

from .conftest import (
    assert_pings_answered,
    hostile_server,
    line,
    pinging,
    raw_connection,
    read_replies,
    victim_bus,
)
from .test_attacks import RSS_GROWTH_BOUND_MB, assert_clean_log, sample_rss

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_pipelined_fetches_that_are_never_read_stay_bounded(
    kind: str, tmp_path: Path
) -> None:
    bus = victim_bus(kind, tmp_path, memory_buffer=20_000)
    async with hostile_server(tmp_path, bus) as server:
        async with await connect(server.url("victim")) as client:
            for start in range(
                0, 6000, 50
            ):  # 60 MB of events: more than a connection's output may hold
                await client.emit_many(
                    [
                        {"topic": "fill", "payload": {"i": i, "s": "x" * 10_000}}
                        for i in range(start, start + 50)
                    ]
                )
            await client.create_consumer(
                "greedy", start="all", max_ack_pending=10_000, ack_wait_ms=600_000
            )
        before = server.rss_mb()
        _reader, writer = await raw_connection(server.address("victim"))
        writer.write(
            b"".join(
                line("fetch", {"consumer": "greedy", "max": 1000}, call_id=i) for i in range(2000)
            )
        )
        async with pinging(server) as monitors:
            worst = await sample_rss(server, 4.0)
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        async with await connect(server.url("victim")) as client:
            stats = (await client.get_consumer("greedy"))["stats"]
        # The fetches wait for the reader's room: only what could be sent was leased.
        assert stats["ack_pending"] < 6000
        writer.transport.abort()
    assert_clean_log(server)


async def test_out_of_range_consumer_params_are_refused_naming_the_field(tmp_path: Path) -> None:
    async with hostile_server(tmp_path, victim_bus("sqlite", tmp_path, max_consumers=3)) as server:
        reader, writer = await raw_connection(server.address("victim"))
        calls = [
            ("create_consumer", {"name": "x" * 129}, "name"),
            ("create_consumer", {"name": "ok", "ack_wait_ms": 2**63}, "ack_wait_ms"),
            ("create_consumer", {"name": "ok", "backoff_ms": [1] * 51}, "backoff_ms"),
            ("create_consumer", {"name": "ok", "start": {"after_id": 2**64}}, "start"),
            ("fetch", {"consumer": "ok", "max": 10**6}, "max"),
            ("fetch", {"consumer": "ok", "wait_ms": 3_600_000}, "wait_ms"),
            ("ack", {"consumer": "ok", "event_ids": list(range(1001))}, "event_ids"),
            ("nack", {"consumer": "ok", "event_ids": [1], "delay_ms": -1}, "delay_ms"),
            ("term", {"consumer": "ok", "event_ids": [1], "reason": "r" * 1001}, "reason"),
            ("redrive", {"consumer": "ok", "event_ids": list(range(10_001))}, "event_ids"),
        ]
        writer.write(
            b"".join(line(method, params, call_id=i) for i, (method, params, _) in enumerate(calls))
        )
        replies = {r["id"]: r for r in await read_replies(reader, len(calls))}
        for i, (method, _, field) in enumerate(calls):
            error = replies[i]["error"]
            assert error["code"] == -32602, (method, error)
            assert any(d["loc"].startswith(field) for d in error["data"]), (method, error)
        for name in ("a", "b", "c"):
            writer.write(line("create_consumer", {"name": name}, call_id=name))
        assert {r["result"]["created"] for r in await read_replies(reader, 3)} == {True}
        writer.write(line("create_consumer", {"name": "d"}, call_id="d"))
        [refused] = await read_replies(reader, 1)
        assert refused["error"]["code"] == -32005 and "max_consumers" in refused["error"]["message"]
        writer.close()
    assert_clean_log(server)


async def test_a_consumer_pattern_is_held_to_a_rules_caps(tmp_path: Path) -> None:
    async with hostile_server(tmp_path, victim_bus("memory", tmp_path)) as server:
        reader, writer = await raw_connection(server.address("victim"))
        huge = {"payload": {"k": [f"v{i}" for i in range(100_000)]}}
        writer.write(line("create_consumer", {"name": "p", "pattern": huge}, call_id=1))
        [reply] = await read_replies(reader, 1)
        assert reply["error"]["code"] == -32602 and json.dumps(reply["error"]).count("pattern") >= 1
        writer.close()
    assert_clean_log(server)
