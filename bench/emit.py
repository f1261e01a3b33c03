"""Emit throughput and emit→subscriber latency of eventbus, against the peers.

    .venv/bin/python -m bench.emit [--storage sqlite|memory|postgres ...] [--durability normal|full|both]
                                   [--no-peers] [--no-record] [--rss]

`--storage` may be given several times (`--storage sqlite --storage postgres`)
to compare backends in one run. PostgreSQL is `$EVENTBUS_BENCH_POSTGRES_URL`
(default: postgresql://postgres@127.0.0.1:5432/test), in a schema of the run's
own that is dropped afterwards; `--durability` is a SQLite setting and does
not apply to it.

Our server runs as its own process (as NATS and Redis do), started with
`python -m eventbus_server` on a temporary config; the client side runs in this
process, the same way `bench.peers` drives the peers. Prints one table of
figures and one of ratios against the issue's targets, and appends both to
`bench/RESULTS.md` (dated) unless `--no-record`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from eventbus_client import EventBusClient, connect

from ._common import (
    PIPELINE_DEPTH,
    PIPELINED_COUNT,
    SEQUENTIAL_COUNT,
    Payload,
    format_table,
    make_payload,
    measure_rate,
    record_results,
    run,
    steady_latency,
)
from ._server import server_process
from .peers import measure_peers

BATCH_COUNT = 100_000
RSS_EVENTS = 1_000_000
POSTGRES_URL = os.environ.get(
    "EVENTBUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _bench_schema() -> str:
    return f"eventbus_bench_{os.getpid()}"


async def _drop_bench_schema() -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{_bench_schema()}" CASCADE')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def bus_process(
    storage: str, durability: str, extra: dict[str, Any] | None = None, *, tree: str | None = None
) -> AsyncIterator[tuple[str, int]]:
    """A fresh server process with one bus (its config plus `extra`); yields (url, pid)
    and stops it with SIGTERM. `tree`: run the server from that source tree
    (see `server_process`)."""
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as folder:
        bus: dict[str, Any] = {
            "id": "bench",
            "listen": "127.0.0.1:0",
            "durability": durability,
            **(extra or {}),
        }
        if storage == "sqlite":
            bus |= {"persist": True, "storage_path": "bench.db"}
        elif storage == "postgres":
            bus |= {"persist": True, "storage_url": f"{POSTGRES_URL}?schema={_bench_schema()}"}
        config = Path(folder) / "event_buses.json"
        config.write_text(json.dumps([bus]))
        try:
            async with server_process(config, tree=tree) as running:
                yield running
        finally:
            if storage == "postgres":
                await _drop_bench_schema()  # each scenario starts from an empty log


async def pipelined_rate(bus: EventBusClient, topic: str, *, count: int, depth: int) -> float:
    """A rolling window: `depth` emits always in flight, like JetStream's publish_async."""
    per_worker = count // depth

    async def worker(offset: int) -> None:
        for i in range(per_worker):
            await bus.emit(topic, make_payload(offset + i))

    start = time.perf_counter()
    await asyncio.gather(*(worker(w * per_worker) for w in range(depth)))
    return per_worker * depth / (time.perf_counter() - start)


async def measure_ours(storage: str, durability: str, *, latency: bool) -> dict[str, Any]:
    async with bus_process(storage, durability) as (url, _pid):
        if storage == "postgres":
            durability = "server's"
        bus = await connect(url)
        try:
            _, sequential = await measure_rate(
                lambda b: bus.emit("bench.seq", b[0]), count=SEQUENTIAL_COUNT
            )
            pipelined = await pipelined_rate(
                bus, "bench.pipe", count=PIPELINED_COUNT, depth=PIPELINE_DEPTH
            )
            batches = {}
            for size in (100, 1000):
                _, batches[size] = await measure_rate(
                    lambda b: bus.emit_many([{"topic": "bench.batch", "payload": p} for p in b]),
                    count=BATCH_COUNT,
                    batch=size,
                )
            row: dict[str, Any] = {
                "system": f"eventbus ({durability})",
                "storage": storage,
                "seq_ev_s": sequential,
                "pipelined_ev_s": pipelined,
                "batch100_ev_s": batches[100],
                "batch1000_ev_s": batches[1000],
            }
            if latency:
                row |= await _latency(url, bus)
            return row
        finally:
            await bus.close()


async def _latency(url: str, producer: EventBusClient) -> dict[str, Any]:
    consumer = await connect(url)
    try:
        sub = await consumer.subscribe("bench.lat.>")

        async def payloads() -> AsyncIterator[Payload]:
            async for event in sub:
                yield event.payload

        return await steady_latency(lambda p: producer.emit("bench.lat.x", p), payloads())
    finally:
        await consumer.close()


async def measure_rss() -> dict[str, Any]:
    """Peak RSS of a SQLite bus after storing 1,000,000 events (issue target < 150 MB)."""
    async with bus_process("sqlite", "normal") as (url, pid):
        bus = await connect(url)
        start = time.perf_counter()
        batch = [{"topic": "bench.rss", "payload": make_payload(i)} for i in range(1000)]
        for _ in range(RSS_EVENTS // 1000):
            await bus.emit_many(batch)
        elapsed = time.perf_counter() - start
        info = await bus.bus_info()
        await bus.close()
        status = Path(f"/proc/{pid}/status").read_text()
        peak_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        db = Path(info["storage"].removeprefix("sqlite:"))
        return {
            "events": RSS_EVENTS,
            "seconds": round(elapsed, 1),
            "ev_s": RSS_EVENTS / elapsed,
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "db_mb": round(db.stat().st_size / 2**20, 1) if db.exists() else float("nan"),
        }


def ratios(ours: dict[str, Any], peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    jetstream = next(p for p in peers if p["system"].startswith("NATS"))
    redis = next(p for p in peers if p["system"].startswith("Redis"))
    rows = [
        (
            "sequential / JetStream publish (await each ack)",
            ours["seq_ev_s"] / jetstream["seq_ev_s"],
            ">= 1.0",
        ),
        (
            "pipelined 100 / JetStream publish_async",
            ours["pipelined_ev_s"] / jetstream["pipelined_ev_s"],
            ">= 1.0",
        ),
        (
            "emit_events 1000 / (2 x redis pipelined XADD)",
            ours["batch1000_ev_s"] / (2 * redis["pipelined_ev_s"]),
            ">= 1.0",
        ),
    ]
    if "p99_ms" in ours:
        rows.append(
            ("emit->subscriber p99 / JetStream p99", ours["p99_ms"] / jetstream["p99_ms"], "<= 1.0")
        )
    return [
        {
            "ratio": name,
            "value": round(value, 2),
            "target": target,
            "met": "yes" if (value >= 1.0 if target.startswith(">") else value <= 1.0) else "no",
        }
        for name, value, target in rows
    ]


async def main(args: argparse.Namespace) -> None:
    durabilities = ["normal", "full"] if args.durability == "both" else [args.durability]
    storages = args.storage or ["sqlite"]
    rows = []
    for storage in storages:
        # Durability is SQLite's setting; PostgreSQL commits as its server is configured.
        for d in durabilities if storage == "sqlite" else durabilities[:1]:
            rows.append(await measure_ours(storage, d, latency=(d == durabilities[0])))
    peers = [] if args.no_peers else await measure_peers()
    figures = format_table(rows + peers)
    print(figures)
    sections = [f"Command: `python -m bench.emit {' '.join(sys.argv[1:])}`", "", figures]
    if peers:
        ratio_table = format_table(ratios(rows[0], peers))
        print()
        print(ratio_table)
        sections += ["", f"Ratios ({rows[0]['system']}, {rows[0]['storage']}):", "", ratio_table]
    if args.rss:
        rss_table = format_table([await measure_rss()])
        print()
        print(rss_table)
        sections += ["", "Server peak RSS after 1,000,000 stored events (SQLite):", "", rss_table]
    if not args.no_record:
        record_results(
            "bench.emit — eventbus vs NATS JetStream and Redis Streams", "\n".join(sections)
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.emit", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--storage", choices=["sqlite", "memory", "postgres"], action="append")
    parser.add_argument("--durability", choices=["normal", "full", "both"], default="both")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--rss", action="store_true", help="also measure peak RSS after 1,000,000 events"
    )
    return parser.parse_args()


if __name__ == "__main__":
    run(main(parse_args()))
