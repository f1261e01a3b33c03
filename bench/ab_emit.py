"""Emit throughput of two source trees, interleaved, in one run: an A/B for a change.

    .venv/bin/python -m bench.ab_emit --tree /path/to/old --tree /path/to/new [--storage sqlite] [--rounds 3]

Each round starts a fresh server from each tree in turn (`PYTHONPATH=<tree>
python -m eventbus_server`, one bus), warms up, then measures 40,000
pipelined emits (100 in flight) and 20 `emit_events` batches of 1,000.
Rounds alternate the trees so drift on a shared machine hits both alike.
Prints each round's figures; records them in bench/RESULTS.md with `--record`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from eventbus_client import connect

from ._common import format_table, make_payload, record_results, run
from .emit import bus_process, pipelined_rate


async def one_round(tree: str, storage: str) -> tuple[float, float]:
    os.environ["PYTHONPATH"] = tree  # the server subprocess imports this tree
    async with bus_process(storage, "normal") as (url, _pid):
        bus = await connect(url)
        try:
            await pipelined_rate(bus, "warm", count=5000, depth=100)
            pipelined = await pipelined_rate(bus, "pipe", count=40_000, depth=100)
            started = time.perf_counter()
            for _ in range(20):
                await bus.emit_many(
                    [{"topic": "batch", "payload": make_payload(i)} for i in range(1000)]
                )
            batch = 20_000 / (time.perf_counter() - started)
        finally:
            await bus.close()
    return pipelined, batch


async def measure(trees: list[str], storage: str, rounds: int) -> str:
    figures: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree in trees:
            figures[tree].append(await one_round(tree, storage))
    rows = [
        {
            "tree": tree,
            "storage": storage,
            "pipelined_ev_s": [round(p) for p, _ in runs],
            "pipelined_median": statistics.median(p for p, _ in runs),
            "batch1000_ev_s": [round(b) for _, b in runs],
            "batch1000_median": statistics.median(b for _, b in runs),
        }
        for tree, runs in figures.items()
    ]
    return format_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True)
    parser.add_argument("--storage", choices=["memory", "sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    text = run(measure(args.tree, args.storage, args.rounds))
    print(text)
    if args.record:
        record_results("bench.ab_emit: emit throughput, two trees interleaved", text)


if __name__ == "__main__":
    main()
