"""Emit figures of two or more source trees, interleaved, in one run: an A/B for a change.

    .venv/bin/python -m bench.ab_emit --tree /path/to/old --tree /path/to/new
        [--storage sqlite] [--durability normal] [--rounds 3] [--only seq,p99] [--record]

Each round starts a fresh server from each tree in turn (`python -m
eventbus_server` in that tree, one bus), warms up, then measures what `--only`
names (default: all): `seq` 5,000 emits awaiting each ack, `pipe` 40,000
emits with 100 in flight, `batch` 20 `emit_events` of 1,000, and `p99` the
emit → subscriber latency at a steady 5,000 ev/s for 3 s (as bench.emit).
For the three rates it also gives the server's CPU time per event
(`*_cpu_us`, every thread's, from /proc): on a busy machine that moves far
less with the neighbours' load than the rates do.
Rounds alternate the trees (and which goes first) so drift on a shared
machine hits both alike; the second table gives, for each later tree, the
median over rounds of its figure divided by the first tree's in the same
round (paired ratios), which drift cancels out of better than medians do.
The 1-minute load average is printed per round: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from eventbus_client import EventBusClient, connect

from ._common import (
    SEQUENTIAL_COUNT,
    Payload,
    format_table,
    make_payload,
    measure_rate,
    record_results,
    run,
    steady_latency,
)
from .emit import bus_process, pipelined_rate

SCENARIOS = ("seq", "pipe", "batch", "p99")
#: For these, lower is better; for the rest (rates), higher.
LOWER_IS_BETTER = {"p99", "p50", "seq_cpu_us", "pipe_cpu_us", "batch_cpu_us"}


def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of `pid` so far, in ns (the first schedstat field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


async def _with_cpu(
    figures: dict[str, float], name: str, pid: int, scenario: Awaitable[tuple[int, float]]
) -> None:
    """Record `scenario`'s rate under `name`, and the server's CPU µs per event beside it."""
    before = cpu_ns(pid)
    events, figures[name] = await scenario
    figures[f"{name}_cpu_us"] = (cpu_ns(pid) - before) / 1000 / events


async def _sequential(bus: EventBusClient) -> tuple[int, float]:
    return await measure_rate(lambda b: bus.emit("seq", b[0]), count=SEQUENTIAL_COUNT)


async def _pipelined(bus: EventBusClient) -> tuple[int, float]:
    return 40_000, await pipelined_rate(bus, "pipe", count=40_000, depth=100)


async def _batch(bus: EventBusClient) -> tuple[int, float]:
    started = time.perf_counter()
    for _ in range(20):
        await bus.emit_many([{"topic": "batch", "payload": make_payload(i)} for i in range(1000)])
    return 20_000, 20_000 / (time.perf_counter() - started)


async def _latency(url: str, producer: EventBusClient) -> dict[str, float]:
    consumer = await connect(url)
    try:
        sub = await consumer.subscribe("lat.>")

        async def payloads() -> AsyncIterator[Payload]:
            async for event in sub:
                yield event.payload

        figures = await steady_latency(lambda p: producer.emit("lat.x", p), payloads())
    finally:
        await consumer.close()
    return {"p50": figures["p50_ms"], "p99": figures["p99_ms"]}


async def one_round(
    tree: str, storage: str, durability: str, only: tuple[str, ...]
) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with bus_process(storage, durability, tree=tree) as (url, pid):
        bus = await connect(url)
        try:
            await pipelined_rate(bus, "warm", count=5000, depth=100)
            if "seq" in only:
                await _with_cpu(figures, "seq", pid, _sequential(bus))
            if "pipe" in only:
                await _with_cpu(figures, "pipe", pid, _pipelined(bus))
            if "batch" in only:
                await _with_cpu(figures, "batch", pid, _batch(bus))
            if "p99" in only:
                figures |= await _latency(url, bus)
        finally:
            await bus.close()
    return figures


async def measure(
    trees: list[str], storage: str, durability: str, rounds: int, only: tuple[str, ...]
) -> str:
    runs: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for n in range(rounds):
        order = trees if n % 2 == 0 else trees[::-1]
        for tree in order:
            runs[tree].append(await one_round(tree, storage, durability, only))
        load = os.getloadavg()[0]
        line = "  ".join(
            f"{os.path.basename(t.rstrip('/')) or t}: "
            + " ".join(f"{k}={v:,.2f}" for k, v in runs[t][-1].items())
            for t in trees
        )
        print(f"round {n + 1} load={load:.2f}  {line}", flush=True)
    metrics = list(runs[trees[0]][0])
    figures: list[dict[str, Any]] = []
    for tree, results in runs.items():
        row: dict[str, Any] = {"tree": tree, "storage": storage}
        for metric in metrics:
            values = [r[metric] for r in results]
            row[f"{metric}_median"] = statistics.median(values)
            row[f"{metric}_runs"] = " ".join(f"{v:,.2f}" for v in values)
        figures.append(row)
    paired: list[dict[str, Any]] = []
    base = runs[trees[0]]
    for tree in trees[1:]:
        row = {"tree / first tree": tree}
        for metric in metrics:
            ratios = [r[metric] / b[metric] for r, b in zip(runs[tree], base, strict=True)]
            better = "lower" if metric in LOWER_IS_BETTER else "higher"
            row[f"{metric} ({better} better)"] = (
                f"x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
        paired.append(row)
    tables = [format_table(figures)]
    if paired:
        tables.append("Paired ratios, median (min-max) over rounds:\n\n" + format_table(paired))
    return "\n\n".join(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True)
    parser.add_argument("--storage", choices=["memory", "sqlite", "postgres"], default="sqlite")
    parser.add_argument("--durability", choices=["normal", "full"], default="normal")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    only = tuple(s for s in args.only.split(",") if s)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    text = run(measure(args.tree, args.storage, args.durability, args.rounds, only))
    print(text)
    if args.record:
        record_results(
            f"bench.ab_emit: emit figures, trees interleaved (load avg {os.getloadavg()[0]:.2f})",
            text,
        )


if __name__ == "__main__":
    main()
