"""Durable consumers: fetch + ack throughput against JetStream pull consumers and Redis groups.

Each system first stores N events, then W workers (each its own connection)
take them all, B at a time, and ack each batch: eventbus `fetch` + `ack` (one
call for the batch, as its API allows, and also one call per message),
JetStream pull consumers (`fetch(B)` + `msg.ack()` per message, which
nats-py sends without waiting), Redis `XREADGROUP COUNT B` + `XACK` with the
batch's ids. The figure is events acked per second, from the first fetch to
the last ack, in the same run, and the ratio to JetStream.

    .venv/bin/python -m bench.consumers            # prints the table
    .venv/bin/python -m bench.consumers --record   # and appends it to bench/RESULTS.md

The eventbus bus is SQLite with durability normal (a server subprocess);
JetStream uses file storage (its default fsync policy); Redis keeps nothing
on disk. Needs the bench extra: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType
from redis.asyncio import Redis

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import format_table, record_results, run
from bench.ab_emit import cpu_ns
from bench.emit import bus_process
from eventbus_client import connect

NATS_URL = "nats://127.0.0.1:4222"
PAYLOAD = b'{"job":"resize","file":"images/2026/12/06/cat.png","size":1048576}'
WORKERS = (1, 4, 16)
BATCHES = (1, 100)


def events_for(batch: int) -> int:
    """Enough events to take a few seconds; far fewer when each fetch takes one."""
    return 20_000 if batch > 1 else 3_000


async def timed(workers: int, work: Callable[[], Awaitable[int]], total: int) -> float:
    """Run `workers` copies of `work` (each returns how many it acked) until `total` are acked."""
    started = time.perf_counter()
    done = sum(await asyncio.gather(*(work() for _ in range(workers))))
    elapsed = time.perf_counter() - started
    if done != total:
        raise RuntimeError(f"acked {done} of {total}")
    return total / elapsed


async def eventbus_rate(workers: int, batch: int, *, ack_each: bool) -> float:
    rate, _cpu_us = await eventbus_figures(workers, batch, ack_each=ack_each)
    return rate


async def eventbus_figures(
    workers: int, batch: int, *, ack_each: bool, tree: str | None = None
) -> tuple[float, float]:
    """Events acked per second, and the server's CPU µs per event meanwhile (every
    thread's). `tree`: the source tree the server runs from (bench.ab_consumers)."""
    total = events_for(batch)
    async with bus_process("sqlite", "normal", tree=tree) as (url, pid):
        async with await connect(url) as bus:
            await bus.create_consumer(
                "bench", topic="jobs", start="all", max_ack_pending=10_000, ack_wait_ms=60_000
            )
            for start in range(0, total, 1000):
                await bus.emit_many(
                    [
                        {"topic": "jobs", "payload": PAYLOAD.decode()}
                        for _ in range(min(1000, total - start))
                    ]
                )
        left = [total]

        async def work() -> int:
            acked = 0
            async with await connect(url) as bus:
                while left[0] > 0:
                    messages = await bus.fetch("bench", max=batch, wait_ms=200)
                    if not messages:
                        continue
                    left[0] -= len(messages)
                    if ack_each:
                        for message in messages:
                            await message.ack()
                    else:
                        await bus.ack("bench", [m.event_id for m in messages])
                    acked += len(messages)
            return acked

        before = cpu_ns(pid)
        rate = await timed(workers, work, total)
        return rate, (cpu_ns(pid) - before) / 1000 / total


async def jetstream_rate(workers: int, batch: int) -> float:
    total = events_for(batch)
    nc = await nats.connect(NATS_URL, allow_reconnect=False)
    stream, subject = f"BENCH_{uuid.uuid4().hex[:8]}", f"bench.jobs.{uuid.uuid4().hex[:8]}"
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject], storage=StorageType.FILE)
        for _ in range(total):
            await js.publish_async(subject, PAYLOAD)
        await js.publish_async_completed()
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="bench",
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=10_000,
                ack_wait=60,
            ),
        )
        left = [total]

        async def work() -> int:
            acked = 0
            worker = await nats.connect(NATS_URL, allow_reconnect=False)
            try:
                sub = await worker.jetstream().pull_subscribe(
                    subject, durable="bench", stream=stream
                )
                while left[0] > 0:
                    try:
                        messages = await sub.fetch(batch, timeout=0.2)
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    left[0] -= len(messages)
                    for message in messages:
                        await message.ack()
                    acked += len(messages)
                await worker.flush()
            finally:
                await worker.close()
            return acked

        return await timed(workers, work, total)
    finally:
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()


async def redis_rate(workers: int, batch: int) -> float:
    total = events_for(batch)
    key = f"bench:jobs:{uuid.uuid4().hex[:8]}"
    setup = Redis(host="127.0.0.1", port=6379)
    try:
        for start in range(0, total, 1000):
            pipe = setup.pipeline(transaction=False)
            for _ in range(min(1000, total - start)):
                pipe.xadd(key, {"payload": PAYLOAD})
            await pipe.execute()
        await setup.xgroup_create(key, "bench", id="0")
        left = [total]

        async def work() -> int:
            acked = 0
            client = Redis(host="127.0.0.1", port=6379)
            name = uuid.uuid4().hex[:8]
            try:
                while left[0] > 0:
                    answer = await client.xreadgroup(
                        "bench", name, {key: ">"}, count=batch, block=200
                    )
                    if not answer:
                        continue
                    ids = [message_id for message_id, _ in answer[0][1]]
                    left[0] -= len(ids)
                    await client.xack(key, "bench", *ids)
                    acked += len(ids)
            finally:
                await client.aclose()
            return acked

        return await timed(workers, work, total)
    finally:
        await setup.delete(key)
        await setup.aclose()


async def main(record: bool) -> None:
    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        for workers in WORKERS:
            js = await jetstream_rate(workers, batch)
            ours = await eventbus_rate(workers, batch, ack_each=False)
            ours_each = await eventbus_rate(workers, batch, ack_each=True) if batch > 1 else ours
            rd = await redis_rate(workers, batch)
            row = {
                "batch": batch,
                "workers": workers,
                "eventbus ack/batch ev/s": round(ours),
                "eventbus ack each ev/s": round(ours_each),
                "JetStream ev/s": round(js),
                "Redis ev/s": round(rd),
                "eventbus / JetStream": f"{ours / js:.2f}",
                "eventbus / Redis": f"{ours / rd:.2f}",
            }
            print(row, flush=True)
            rows.append(row)
    table = format_table(rows)
    print(table)
    if record:
        record_results(
            "bench.consumers: fetch + ack against JetStream pull consumers and Redis groups",
            "`.venv/bin/python -m bench.consumers --record`. eventbus on SQLite (durability normal), "
            "JetStream file storage, Redis in memory; each worker its own connection; events acked per second "
            "from the first fetch to the last ack (20,000 events at batch 100, 3,000 at batch 1).\n\n"
            + table,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--record", action="store_true", help="append the table to bench/RESULTS.md"
    )
    run(main(parser.parse_args().record))
