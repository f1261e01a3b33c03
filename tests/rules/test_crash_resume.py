"""kill -9 a server while rules fire: after a restart every (rule, event) pair
fires to completion exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import pytest

from eventbus_client import connect
from tests import postgres
from tests.processes import ServerProcess

pytestmark = pytest.mark.slow

EVENTS = 400
MAX_CONCURRENCY = 4


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
async def test_kill_9_mid_firing_then_restart_fires_each_pair_exactly_once(
    storage: str, tmp_path: Path
) -> None:
    tool_log = tmp_path / "tool-calls.log"
    tool_log.touch()
    config = tmp_path / "event_buses.json"
    where = (
        {"storage_path": "crash.db"}
        if storage == "sqlite"
        else {"storage_url": postgres.storage_url(tmp_path)}
    )
    config.write_text(
        json.dumps(
            [
                {
                    "id": "crash",
                    "listen": "127.0.0.1:0",
                    "persist": True,
                    **where,
                    "enable_rules": True,
                    "max_concurrency": MAX_CONCURRENCY,
                    "retry": {"attempts": 3, "backoff_ms": 1},
                    "tools": [
                        {
                            "match": "trn:user:test:python:*",
                            "kind": "python",
                            "function": "tests.rules.python_tools:record",
                        }
                    ],
                }
            ]
        )
    )
    env = {
        "EVENTBUS_TOOL_LOG": str(tool_log),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }

    server = await ServerProcess.start(config, env=env)
    async with await connect(server.url("crash")) as bus:
        await bus.register_rule(
            {
                "id": "count",
                "topic": "work",
                "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:record:v1"},
            }
        )
        for start in range(0, EVENTS, 100):
            await bus.emit_many(
                [{"topic": "work", "payload": i} for i in range(start, start + 100)]
            )
    # Let some firings finish (20 ms each, 4 at a time), then kill in the middle of the rest.
    while len(tool_log.read_text().splitlines()) < 40:
        await asyncio.sleep(0.01)
    os.kill(server.proc.pid, signal.SIGKILL)
    await server.proc.wait()
    reached_before = len(tool_log.read_text().splitlines())
    assert reached_before < EVENTS, "the kill came too late to test anything"
    finished_before = await ok_firings_in_storage(storage, tmp_path)

    server = await ServerProcess.start(config, env=env)
    try:
        async with await connect(server.url("crash")) as bus:
            ok: list[dict] = []
            for _ in range(600):
                firings = await bus.list_firings(limit=10_000)
                ok = [f for f in firings if f["status"] == "ok"]
                if len(ok) == EVENTS and len(firings) == EVENTS:
                    break
                await asyncio.sleep(0.05)
            assert len(ok) == EVENTS, f"{len(ok)} ok firings of {EVENTS}"
            # Exactly one firing per event: the unique claim never let a pair in twice.
            assert sorted(f["event_id"] for f in ok) == sorted({f["event_id"] for f in ok})
            assert (await bus.get_rule("count"))["fired"] == EVENTS
    finally:
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()

    calls_by_event: dict[int, set[int]] = defaultdict(set)
    lines = tool_log.read_text().splitlines()
    for line in lines:
        firing_id, event_id = map(int, line.split())
        calls_by_event[event_id].add(firing_id)
    # Every event reached the tool, always under one firing_id.
    assert len(calls_by_event) == EVENTS
    assert all(len(ids) == 1 for ids in calls_by_event.values())
    # Only calls the crash cut off were repeated, once each: never one whose firing was recorded ok.
    repeated = Counter(int(line.split()[1]) for line in lines) - Counter(range(EVENTS + 1))
    assert set(repeated.values()) <= {1}
    assert not set(repeated) & finished_before
    assert len(repeated) <= reached_before - len(finished_before)


async def ok_firings_in_storage(storage: str, tmp_path: Path) -> set[int]:
    """The events whose firing was recorded `ok`, read straight from the stopped server's storage."""
    sql = "SELECT event_id FROM rule_firings WHERE status = 'ok'"
    if storage == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp_path / "crash.db")) as db:
            return {row[0] for row in db.execute(sql)}
    conn = await asyncpg.connect(postgres.ADMIN_URL)
    try:
        await conn.execute(f'SET search_path TO "{postgres.schema_for(tmp_path)}"')
        return {row[0] for row in await conn.fetch(sql)}
    finally:
        await conn.close()
