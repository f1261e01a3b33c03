"""Hostile scheduling (DESIGN.md §3, §11) against a real server process: integers
beyond int64 and delays beyond the bus's bound are -32602 naming the field;
floods of schedules and of delayed events stop at `max_schedules` and
`max_scheduled` with -32005, while the bus and its neighbour keep answering."""

from __future__ import annotations

import asyncio
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

pytestmark = pytest.mark.slow


def _error(reply: dict[str, object]) -> dict[str, object]:
    error = reply.get("error")
    assert isinstance(error, dict), reply
    return error


async def test_delivery_times_beyond_int64_or_the_bound_are_refused_naming_the_field(
    storage_kind: str, tmp_path: Path
) -> None:
    async with hostile_server(tmp_path, victim_bus(storage_kind, tmp_path)) as server:
        reader, writer = await raw_connection(server.address("victim"))
        attacks = [
            ("emit_event", {"topic": "t", "deliver_at": 2**63}, "deliver_at"),
            ("emit_event", {"topic": "t", "deliver_at": 2**64 - 1}, "deliver_at"),
            ("emit_event", {"topic": "t", "delay_ms": 2**63 - 1}, "delay_ms"),
            ("emit_event", {"topic": "t", "delay_ms": 10**30}, "delay_ms"),
            (
                "emit_events",
                {"events": [{"topic": "t", "delay_ms": 1}, {"topic": "t", "deliver_at": -1}]},
                "deliver_at",
            ),
            ("list_scheduled", {"after": {"deliver_at": 2**63, "schedule_id": "x"}}, "deliver_at"),
            (
                "create_schedule",
                {"id": "s", "every_ms": 2**63, "event": {"topic": "t"}},
                "every_ms",
            ),
        ]
        writer.write(
            b"".join(
                line(method, params, call_id=i) for i, (method, params, _) in enumerate(attacks)
            )
        )
        replies = {r["id"]: r for r in await read_replies(reader, len(attacks))}
        for i, (_, _, field) in enumerate(attacks):
            error = _error(replies[i])
            assert error["code"] == -32602 and field in json.dumps(error), error
        writer.close()
        async with await connect(server.url("victim")) as bus:
            assert (await bus.list_scheduled())["scheduled"] == []  # nothing half-stored
            assert await bus.list_schedules() == []
        assert server.internal_errors() == []


@pytest.mark.parametrize("storage_kind", ["memory", "sqlite"])
async def test_a_flood_of_schedules_stops_at_max_schedules(
    storage_kind: str, tmp_path: Path
) -> None:
    """20,000 create_schedule calls in batches of 1,000 (10^6 would take the suite's
    minutes; past the cap each is the same refusal): 100 are stored, the rest -32005."""
    limits = {"max_schedules": 100}
    async with hostile_server(tmp_path, victim_bus(storage_kind, tmp_path, **limits)) as server:
        reader, writer = await asyncio.open_connection(*server.address("victim"), limit=16 << 20)
        codes: dict[int, int] = {}
        async with pinging(server) as monitors:
            for batch in range(20):
                calls = [
                    {
                        "jsonrpc": "2.0",
                        "id": batch * 1000 + i,
                        "method": "create_schedule",
                        "params": {
                            "id": f"s{batch}-{i}",
                            "every_ms": 60_000,
                            "event": {"topic": "flood"},
                        },
                    }
                    for i in range(1000)
                ]
                writer.write(json.dumps(calls).encode() + b"\n")
                raw = await reader.readline()
                for reply in json.loads(raw):
                    codes[reply["id"]] = reply["error"]["code"] if "error" in reply else 0
        assert_pings_answered(monitors)
        assert sum(1 for code in codes.values() if code == 0) == 100
        assert sum(1 for code in codes.values() if code == -32005) == 19_900
        writer.close()
        async with await connect(server.url("victim")) as bus:
            assert len(await bus.list_schedules()) == 100
        assert server.internal_errors() == []


@pytest.mark.parametrize("storage_kind", ["memory", "sqlite"])
async def test_delayed_events_stop_at_max_scheduled_all_or_nothing(
    storage_kind: str, tmp_path: Path
) -> None:
    async with hostile_server(
        tmp_path, victim_bus(storage_kind, tmp_path, max_scheduled=5000)
    ) as server:
        async with await connect(server.url("victim")) as bus:
            events = [
                {"topic": "later", "payload": i, "delay_ms": 3_600_000} for i in range(10_000)
            ]
            reply = await bus.call("emit_events", {"events": []})
            assert reply == {"event_ids": []}
            with pytest.raises(Exception) as info:
                await bus.schedule_many(events)
            assert getattr(info.value, "code", None) == -32005 and "max_scheduled" in str(
                info.value
            )
            assert (await bus.list_scheduled())["scheduled"] == []  # all or nothing
            assert len(await bus.schedule_many(events[:5000])) == 5000
            with pytest.raises(Exception) as again:
                await bus.emit("later", "one more", delay_ms=1000)
            assert getattr(again.value, "code", None) == -32005
            page = await bus.list_scheduled(limit=1000)
            assert len(page["scheduled"]) == 1000 and page["next"] is not None
        assert server.internal_errors() == []
