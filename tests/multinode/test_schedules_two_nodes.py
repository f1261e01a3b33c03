"""Scheduled events on one bus served by two `eventbus serve` processes on one
PostgreSQL database (DESIGN.md §8, §11): each tick and each delayed event is
appended once across the nodes, also when one of them is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from eventbus_client import connect
from eventbus_core.event import now_ms

from .test_two_nodes import BUS, two_nodes

pytestmark = pytest.mark.slow


async def test_a_schedule_every_second_ticks_once_per_tick_across_two_nodes_one_killed(
    tmp_path: Path,
) -> None:
    """Wall-clock time is the subject: 5 s of a 1 s interval, node a killed after ~2.5 s."""
    async with two_nodes(tmp_path) as (a, b), await connect(b.url(BUS)) as on_b:
        async with await connect(a.url(BUS)) as on_a:
            created = await on_a.create_schedule("hb", {"topic": "heartbeat"}, every_ms=1000)
            first_tick = created["next_tick"]
            assert first_tick is not None
            started = time.monotonic()
            while time.monotonic() - started < 2.5:
                await asyncio.sleep(0.05)
        os.kill(a.proc.pid, signal.SIGKILL)
        await a.proc.wait()
        while time.monotonic() - started < 5.0:
            await asyncio.sleep(0.05)
        await on_b.set_schedule_enabled("hb", False)
        ended = now_ms()

        events = (await on_b.poll("heartbeat", limit=1000)).events
        ticks = [e.metadata["schedule"]["tick"] for e in events if e.metadata]
        assert Counter(ticks).most_common(1)[0][1] == 1, (
            ticks
        )  # no tick twice, whichever node appended it
        assert 4 <= len(ticks) <= 6, ticks
        # Every tick of the window was appended: node b took over on time.
        assert ticks == list(range(first_tick, first_tick + 1000 * len(ticks), 1000))
        assert ticks[-1] >= ended - 2000


async def test_delayed_events_due_while_both_nodes_run_are_appended_once(tmp_path: Path) -> None:
    async with (
        two_nodes(tmp_path) as (a, b),
        await connect(a.url(BUS)) as on_a,
        await connect(b.url(BUS)) as on_b,
    ):
        sub = await on_b.subscribe("later")
        deliver_at = now_ms() + 1500
        await on_a.schedule_many(
            [{"topic": "later", "payload": i, "deliver_at": deliver_at} for i in range(300)]
        )
        await on_b.schedule_many(
            [{"topic": "later", "payload": 300 + i, "deliver_at": deliver_at} for i in range(300)]
        )
        seen = [await sub.next(timeout_s=10) for _ in range(600)]
        assert sorted(e.payload for e in seen) == list(range(600))
        assert all(e.timestamp >= deliver_at for e in seen)
        with pytest.raises(TimeoutError):
            await sub.next(timeout_s=1.0)  # none twice
        assert (await on_a.list_scheduled())["scheduled"] == []
