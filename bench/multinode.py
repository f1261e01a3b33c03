"""One PostgreSQL bus served by one `eventbus serve` node, then by two.

    .venv/bin/python -m bench.multinode [--rounds 3] [--rate 200] [--no-record]

DESIGN.md §8: several server processes may serve one bus id against one
PostgreSQL database. This measures what a second node buys on the machine at
hand, each scenario on a fresh schema (`$EVENTBUS_BENCH_POSTGRES_URL`, default
postgresql://postgres@127.0.0.1:5432/test), rounds interleaved:

- write rate: two producer clients, each with 50 emits in flight (pipelined)
  or sending `emit_events` batches of 100; with one node both talk to it, with
  two nodes each talks to its own;
- subscriber latency at a steady `--rate`: emit on the first node, subscribed
  on the first node (one node) or on the second (two nodes: the event crosses
  PostgreSQL's NOTIFY and is read back by cursor). Each send awaits its ack,
  one PostgreSQL commit, so the rate stays at what one sequential producer
  holds on PostgreSQL (a few hundred per second).

Prints the medians and appends them to bench/RESULTS.md unless `--no-record`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from eventbus_client import EventBusClient, connect

from ._common import format_table, make_payload, record_results, run, steady_latency
from ._server import server_process

POSTGRES_URL = os.environ.get(
    "EVENTBUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PIPELINED_PER_PRODUCER = 10_000
DEPTH_PER_PRODUCER = 50
BATCHES_PER_PRODUCER = 100
BATCH = 100


@contextlib.asynccontextmanager
async def nodes(count: int) -> AsyncIterator[list[str]]:
    """`count` server processes on one bus and one fresh schema; yields their urls."""
    schema = f"eventbus_bench_nodes_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as folder:
        config = Path(folder) / "event_buses.json"
        bus = {
            "id": "bench",
            "listen": "127.0.0.1:0",
            "persist": True,
            "storage_url": f"{POSTGRES_URL}?schema={schema}",
        }
        config.write_text(json.dumps([bus]))
        try:
            async with contextlib.AsyncExitStack() as stack:
                urls = []
                for _ in range(count):  # one at a time: the first creates the schema
                    url, _pid = await stack.enter_async_context(server_process(config))
                    urls.append(url)
                yield urls
        finally:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


async def _pipelined(bus: EventBusClient, offset: int) -> None:
    per_worker = PIPELINED_PER_PRODUCER // DEPTH_PER_PRODUCER

    async def worker(start: int) -> None:
        for i in range(per_worker):
            await bus.emit("bench.nodes.pipe", make_payload(start + i))

    await asyncio.gather(*(worker(offset + w * per_worker) for w in range(DEPTH_PER_PRODUCER)))


async def _batches(bus: EventBusClient, offset: int) -> None:
    for b in range(BATCHES_PER_PRODUCER):
        first = offset + b * BATCH
        await bus.emit_many(
            [
                {"topic": "bench.nodes.batch", "payload": make_payload(first + k)}
                for k in range(BATCH)
            ]
        )


async def measure(count: int, rate: float) -> dict[str, Any]:
    async with nodes(count) as urls:
        producers = [await connect(urls[i % count]) for i in range(2)]
        publisher, reader = await connect(urls[0]), await connect(urls[-1])
        try:
            row: dict[str, Any] = {"nodes": count}
            for name, work, events in (
                ("pipelined_ev_s", _pipelined, PIPELINED_PER_PRODUCER),
                ("batch100_ev_s", _batches, BATCHES_PER_PRODUCER * BATCH),
            ):
                start = time.perf_counter()
                await asyncio.gather(*(work(p, i * events) for i, p in enumerate(producers)))
                row[name] = 2 * events / (time.perf_counter() - start)
            sub = await reader.subscribe("bench.nodes.lat.>")
            figures = await steady_latency(
                lambda p: publisher.emit("bench.nodes.lat.x", p),
                (event.payload async for event in sub),
                rate=rate,
            )
            row |= {k: figures[k] for k in ("p50_ms", "p99_ms", "lat_sent", "lat_received")}
            return row
        finally:
            for client in (*producers, publisher, reader):
                await client.close()


def _median_rows(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for count in (1, 2):
        mine = [r for r in rounds if r["nodes"] == count]
        row: dict[str, Any] = {"nodes": count, "rounds": len(mine)}
        for key in ("pipelined_ev_s", "batch100_ev_s", "p50_ms", "p99_ms"):
            row[key] = statistics.median(r[key] for r in mine)
        row["lat_received"] = min(r["lat_received"] for r in mine)
        row["lat_sent"] = max(r["lat_sent"] for r in mine)
        rows.append(row)
    return rows


async def main(args: argparse.Namespace) -> None:
    rounds = []
    for i in range(args.rounds):
        for count in (1, 2) if i % 2 == 0 else (2, 1):  # interleaved against drift
            row = await measure(count, args.rate)
            print(row, flush=True)
            rounds.append(row)
    table = format_table(_median_rows(rounds))
    load = os.getloadavg()[0]
    text = (
        f"`python -m bench.multinode --rounds {args.rounds} --rate {args.rate:g}`: "
        "one PostgreSQL bus, two producers (50 emits in flight each, or batches of 100), "
        f"latency emit on node 1 → subscriber on the last node at {args.rate:g} ev/s; "
        f"medians of the rounds. Load average at the end: {load:.1f}.\n\n{table}\n"
    )
    print(text)
    if not args.no_record:
        record_results("bench.multinode: one PostgreSQL bus, one node vs two", text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--no-record", action="store_true")
    run(main(parser.parse_args()))
