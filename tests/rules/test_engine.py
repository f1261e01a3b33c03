"""`RuleEngine` (eventbus_server/rules/engine.py) in process, through a `Bus` with rules on.

The bus is built and called directly (no server, no client), over real
storage, with `python` tool routes to tests/rules/python_tools.py: the
engine's claims, cursor, retries, dead letters and redrive are read back
from storage and from the engine's stats. `wait_idle()` is the only wait (`settle`).
The same behaviour over the wire is in test_firings.py; a real kill -9 is in
test_crash_resume.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.config import parse_config
from eventbus_core.envelope import EmitParams
from eventbus_server.bus import Bus
from eventbus_server.storage import SqliteStorage
from eventbus_server.storage.base import Firing, FiringQuery, NewEvent

from .conftest import rules_bus

T0 = 1_795_900_000_000
ECHO = "trn:user:test:python:echo:v1"
FLAKY = "trn:user:test:python:flaky:v1"


@contextlib.asynccontextmanager
async def rules_on(tmp_path: Path, kind: str = "memory", **overrides: Any) -> AsyncIterator[Bus]:
    raw = {"listen": "127.0.0.1:0", **rules_bus(kind, tmp_path, **overrides)}
    bus = Bus(parse_config([raw], base_dir=tmp_path).buses[0])
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rule(rule_id: str, topic: str, tool: str = ECHO, **fields: Any) -> dict[str, Any]:
    return {"id": rule_id, "topic": topic, **fields, "action": {"type": "InvokeTool", "tool_id": tool, "input": "{{ $.payload }}"}}


async def settle(bus: Bus) -> None:
    """Every event so far matched and every firing finished (a hang fails in 10 s, not 60)."""
    async with asyncio.timeout(10):
        await bus.wait_idle()


async def firings(bus: Bus) -> list[Firing]:
    return await bus.list_firings(FiringQuery(limit=1000))


def engine_stats(bus: Bus) -> dict[str, int]:
    return bus.info()["stats"]["firings"]  # type: ignore[typeddict-item]


async def test_events_after_the_saved_cursor_are_matched_at_start(tmp_path: Path) -> None:
    """A crash after events committed but before the engine claimed them (or saved its cursor)."""
    async with rules_on(tmp_path, "sqlite") as bus:
        await bus.register_rule(rule("echo", "t"), replace=False)
        await bus.emit(EmitParams(topic="other", payload=0))
        await settle(bus)
    storage = SqliteStorage(tmp_path / "rules.db")
    await storage.open()
    unmatched = await storage.append([NewEvent("t", i, T0) for i in range(3)])
    assert await storage.load_cursor() < unmatched[0].event_id
    await storage.close()

    async with rules_on(tmp_path, "sqlite") as bus:
        await settle(bus)  # nothing else commits to wake the engine
        assert sorted(f.event_id for f in await firings(bus)) == [e.event_id for e in unmatched]
