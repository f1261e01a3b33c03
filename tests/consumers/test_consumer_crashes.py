"""Consumers when processes die: a worker, the server, one of two nodes (DESIGN.md §10).

Real processes: a worker is a Python subprocess using the client, killed with
SIGKILL holding a lease; the server is `python -m eventbus_server`, killed
with SIGKILL while workers hold leases and acks are on the way; two server
processes serve one PostgreSQL bus with workers on both.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_core.errors import ConnectionLost
from tests import postgres
from tests.consumers.conftest import bus_on
from tests.multinode.test_two_nodes import BUS, two_nodes
from tests.processes import ServerProcess

pytestmark = pytest.mark.slow

WORKER = """
import asyncio, sys
from eventbus_client import connect

async def main():
    async with await connect(sys.argv[1]) as bus:
        [message] = await bus.fetch("w", max=1, wait_ms=10_000)
        print(message.event_id, message.deliveries, flush=True)
        await asyncio.sleep(3600)  # holds the lease until it is killed

asyncio.run(main())
"""


async def test_a_worker_killed_holding_a_lease_leaves_the_event_to_another(tmp_path: Path) -> None:
    config = tmp_path / "event_buses.json"
    config.write_text(json.dumps([{**bus_on("sqlite", tmp_path), "listen": "127.0.0.1:0"}]))
    server = await ServerProcess.start(config)
    try:
        async with await connect(server.url("work")) as bus:
            await bus.create_consumer("w", topic="jobs", ack_wait_ms=500)
            event_id = (await bus.emit("jobs", {"n": 1})).event_id
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, server.url("work"), stdout=asyncio.subprocess.PIPE
            )
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 15)
            assert line.split() == [str(event_id).encode(), b"1"]
            worker.kill()
            await worker.wait()
            [message] = await bus.fetch("w", wait_ms=10_000)
            assert (message.event_id, message.deliveries) == (event_id, 2)
            assert await message.ack()
    finally:
        server.proc.kill()
        await server.proc.wait()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_kill_9_of_the_server_loses_no_ack_and_no_lease(tmp_path: Path, kind: str) -> None:
    if kind == "postgres":
        postgres.require()
    config = tmp_path / "event_buses.json"
    config.write_text(json.dumps([{**bus_on(kind, tmp_path), "listen": "127.0.0.1:0"}]))
    server = await ServerProcess.start(config)
    acked: set[int] = set()
    unknown: set[int] = set()  # acks the kill cut off: committed or not, nobody heard
    try:
        async with await connect(server.url("work")) as bus:
            await bus.create_consumer("w", topic="jobs", ack_wait_ms=1000, start="all")
            for start in range(0, 2000, 500):
                await bus.emit_many(
                    [{"topic": "jobs", "payload": i} for i in range(start, start + 500)]
                )
            leased = await bus.fetch("w", max=1000)
            assert len(leased) == 1000
            # Acks on the way when the server dies: those answered count as acked.
            pending = [asyncio.ensure_future(bus.ack("w", [m.event_id])) for m in leased[:600]]
            await asyncio.sleep(0.01)
            os.kill(server.proc.pid, signal.SIGKILL)
            for message, ack in zip(leased, pending, strict=False):
                try:
                    if await ack == 1:
                        acked.add(message.event_id)
                except ConnectionLost:
                    unknown.add(message.event_id)
        await server.proc.wait()
        server = await ServerProcess.start(config)
        delivered: Counter[int] = Counter()
        async with await connect(server.url("work")) as bus:
            # The dead server's leases run out in 1 s: then every event not acked comes back.
            while batch := await bus.fetch("w", max=500, wait_ms=3000):
                for message in batch:
                    delivered[message.event_id] += 1
                await bus.ack("w", [m.event_id for m in batch])
        assert not acked & set(delivered), "an acked event was delivered again"
        assert set(delivered.values()) == {1}, "an event was delivered twice after the restart"
        missing = set(range(1, 2001)) - acked - set(delivered)
        assert missing <= unknown, f"{len(missing - unknown)} events never came back"
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()


async def test_workers_on_two_nodes_lease_each_event_once(tmp_path: Path) -> None:
    async with two_nodes(tmp_path) as (a, b):
        async with await connect(a.url(BUS)) as on_a, await connect(b.url(BUS)) as on_b:
            await on_a.create_consumer(
                "shared-pool", topic="jobs.>", start="all", max_ack_pending=500
            )
            for start in range(0, 3000, 500):
                await on_b.emit_many(
                    [{"topic": "jobs.x", "payload": i} for i in range(start, start + 500)]
                )
            got: Counter[int] = Counter()

            async def worker(bus: EventBusClient) -> None:
                while sum(got.values()) < 3000:
                    batch = await bus.fetch("shared-pool", max=50, wait_ms=500)
                    for message in batch:
                        got[message.event_id] += 1
                    if batch:
                        await bus.ack("shared-pool", [m.event_id for m in batch])

            await asyncio.wait_for(
                asyncio.gather(worker(on_a), worker(on_a), worker(on_b), worker(on_b)), 120
            )
            assert len(got) == 3000 and set(got.values()) == {1}
            stats = (await on_b.get_consumer("shared-pool"))["stats"]
            assert (stats["acked"], stats["ack_pending"]) == (3000, 0)
