"""Scheduled events survive kill -9 of a real server process (DESIGN.md §11): a
delayed event pending at the kill is appended once when due (at the next
start if that is later), and a schedule's missed ticks are not caught up
except the latest one, emitted at start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from eventbus_client import connect
from eventbus_core.event import now_ms
from tests.processes import ServerProcess

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "event_buses.json"
    path.write_text(
        json.dumps(
            [{"id": "sched", "listen": "127.0.0.1:0", "persist": True, "storage_path": "s.db"}]
        )
    )
    return path


async def _kill_9(server: ServerProcess) -> None:
    os.kill(server.proc.pid, signal.SIGKILL)
    await server.proc.wait()


async def _stop(server: ServerProcess) -> None:
    server.proc.send_signal(signal.SIGTERM)
    assert await server.proc.wait() == 0


async def test_a_delayed_event_pending_at_kill_9_is_appended_once_after_the_restart(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    server = await ServerProcess.start(config)
    async with await connect(server.url("sched")) as bus:
        soon = await bus.emit("later", "soon", delay_ms=300)
        late = await bus.emit("later", "late", delay_ms=60_000)
    await _kill_9(server)  # before `soon` is due
    while now_ms() <= soon.deliver_at:
        await asyncio.sleep(0.05)  # the time is the subject: let it fall due while the bus is down

    restarted = await ServerProcess.start(config)
    try:
        async with await connect(restarted.url("sched")) as bus:
            sub = await bus.subscribe("later", since=0)
            first = await sub.next(timeout_s=10)  # overdue: appended at start
            assert first.payload == "soon" and first.timestamp >= soon.deliver_at
            with pytest.raises(TimeoutError):
                await sub.next(timeout_s=0.5)  # once, and `late` is not due
            [pending] = (await bus.list_scheduled())["scheduled"]
            assert pending["schedule_id"] == late.schedule_id
    finally:
        await _stop(restarted)


async def test_a_schedule_killed_mid_run_emits_its_latest_missed_tick_at_start_and_no_tick_twice(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    server = await ServerProcess.start(config)
    async with await connect(server.url("sched")) as bus:
        sub = await bus.subscribe("beat")
        await bus.create_schedule("beat", {"topic": "beat"}, every_ms=1000)
        before = [await sub.next(timeout_s=5) for _ in range(2)]
    await _kill_9(server)
    down_since = now_ms()
    while now_ms() < down_since + 2500:
        await asyncio.sleep(0.05)  # at least two ticks fall due while no node runs

    restarted = await ServerProcess.start(config)
    try:
        async with await connect(restarted.url("sched")) as bus:
            sub = await bus.subscribe("beat", since=0)
            seen = [await sub.next(timeout_s=5) for _ in range(4)]
            ticks = [e.metadata["schedule"]["tick"] for e in seen if e.metadata]
            assert ticks[:2] == [e.metadata["schedule"]["tick"] for e in before if e.metadata]
            assert len(set(ticks)) == len(ticks)  # no tick twice
            # The first after the restart is the latest missed one (the ones before it are
            # not caught up), and the ticks go on from there.
            assert ticks[2] - ticks[1] >= 2000
            assert ticks[2] >= down_since + 1000 and ticks[3] == ticks[2] + 1000
    finally:
        await _stop(restarted)
