"""Durability of a real server process: SIGTERM drains, kill -9 loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from eventbus_client import ConnectionLost, EventBusError, connect
from tests.processes import ServerProcess

pytestmark = pytest.mark.slow


def _write_config(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "event_buses.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": "crash",
                    "listen": "127.0.0.1:0",
                    "persist": True,
                    "storage_path": "crash.db",
                    **extra,
                }
            ]
        )
    )
    return path


async def _emit_until_killed(url: str, acked: list[int], stop: asyncio.Event) -> None:
    """One client pipelining emits as fast as it can, recording every acknowledged id."""
    client = await connect(url)

    async def one(i: int) -> None:
        try:
            acked.append((await client.emit("load", i)).event_id)
        except (ConnectionLost, EventBusError):
            pass

    i = 0
    try:
        while not stop.is_set() and not client._conn.is_closed:  # type: ignore[union-attr]
            await asyncio.gather(*(one(i + k) for k in range(50)))
            i += 50
    finally:
        await client.close()


async def test_kill_9_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    server = await ServerProcess.start(config)
    acked: list[int] = []
    stop = asyncio.Event()
    producers = [
        asyncio.create_task(_emit_until_killed(server.url("crash"), acked, stop)) for _ in range(3)
    ]
    while len(acked) < 3000:
        await asyncio.sleep(0.01)
    server.proc.send_signal(signal.SIGKILL)
    await server.proc.wait()
    stop.set()
    await asyncio.gather(*producers)

    restarted = await ServerProcess.start(config)
    try:
        async with await connect(restarted.url("crash")) as client:
            stored: set[int] = set()
            since = 0
            while True:
                page = await client.poll("load", since=since, limit=10_000)
                if not page.events:
                    break
                stored.update(e.event_id for e in page.events)
                since = page.next_since
            missing = set(acked) - stored
            assert not missing, (
                f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
            )
            assert len(acked) >= 3000
            # The log goes on after the crash: new ids are above everything stored.
            assert (await client.emit("load", "after")).event_id > max(stored)
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        assert await restarted.proc.wait() == 0


async def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    server = await ServerProcess.start(config)
    acked: list[int] = []
    stop = asyncio.Event()
    producer = asyncio.create_task(_emit_until_killed(server.url("crash"), acked, stop))
    while len(acked) < 1000:
        await asyncio.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 20) == 0
    stop.set()
    await producer
    log = await server.stderr_rest()
    assert "SIGTERM received" in log and "stopped buses=crash" in log

    restarted = await ServerProcess.start(config)
    try:
        async with await connect(restarted.url("crash")) as client:
            page = await client.poll("load", limit=10_000)
            assert set(acked) <= {e.event_id for e in page.events}
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        assert await restarted.proc.wait() == 0


async def test_startup_log_line_per_bus(tmp_path: Path) -> None:
    path = tmp_path / "event_buses.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": "a",
                    "listen": "127.0.0.1:0",
                    "persist": True,
                    "storage_path": "a.db",
                    "enable_rules": True,
                    "allowed_sources": ["trn:user:"],
                },
                {"id": "b", "listen": "127.0.0.1:0"},
            ]
        )
    )
    server = await ServerProcess.start(path)
    server.proc.send_signal(signal.SIGINT)
    assert await server.proc.wait() == 0
    assert set(server.ports) == {"a", "b"}
    line_a = next(line for line in server.startup_log if "bus=a " in line)
    assert f"storage=sqlite:{tmp_path / 'a.db'}" in line_a and "rules=on" in line_a
    assert "allowed_sources=trn:user:" in line_a
    line_b = next(line for line in server.startup_log if "bus=b " in line)
    assert "storage=memory" in line_b and "rules=off" in line_b
    assert os.path.exists(tmp_path / "a.db")
