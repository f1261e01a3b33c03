"""Emit throughput of two source trees, interleaved, in one run: an A/B for a change.

    .venv/bin/python -m bench.ab_emit --tree /path/to/old --tree /path/to/new [--storage sqlite] [--rounds 3]

Each round starts a fresh server from each tree in turn (`PYTHONPATH=<tree>
python -m eventbus_server`, one bus, run from a scratch folder so the tree
is the one imported), warms up, then measures 40,000 pipelined emits (100 in
flight) and 20 `emit_events` batches of 1,000. Rounds alternate the trees'
order so drift on a shared machine hits both alike.

Besides events/s, each phase reports the server's CPU time per event, read
from /proc (Linux): `loop_us` for its event-loop thread (the per-event
Python work), `all_us` for all its threads (storage's too). On a loaded
machine the rates swing by 2x from run to run while CPU per event moves by
a few percent, so a change is judged by the paired ratios against the first
tree (rate B/A, and CPU A/B: above 1 means less CPU an event). Records the
table in bench/RESULTS.md with `--record`.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import statistics
import time
from dataclasses import dataclass

from eventbus_client import connect

from ._common import format_table, make_payload, record_results, run
from .emit import bus_process, pipelined_rate

PIPELINED = 40_000
BATCHES, BATCH_SIZE = 20, 1000


@dataclass(frozen=True)
class Figures:
    pipelined: float
    batch: float
    pipelined_loop_us: float
    pipelined_all_us: float
    batch_loop_us: float
    batch_all_us: float


def _cpu_ns(pid: int) -> tuple[int, int]:
    """CPU time so far of the process's main (event-loop) thread and of all its threads."""

    def on_cpu(path: str) -> int:
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0  # a thread that ended meanwhile

    main = on_cpu(f"/proc/{pid}/task/{pid}/schedstat")
    return main, sum(on_cpu(path) for path in glob.glob(f"/proc/{pid}/task/*/schedstat"))


def _per_event_us(
    before: tuple[int, int], after: tuple[int, int], events: int
) -> tuple[float, float]:
    return (after[0] - before[0]) / events / 1000, (after[1] - before[1]) / events / 1000


async def one_round(tree: str, storage: str) -> Figures:
    os.environ["PYTHONPATH"] = tree  # the server subprocess imports this tree
    async with bus_process(storage, "normal") as (url, pid):
        bus = await connect(url)
        try:
            await pipelined_rate(bus, "warm", count=5000, depth=100)
            start = _cpu_ns(pid)
            pipelined = await pipelined_rate(bus, "pipe", count=PIPELINED, depth=100)
            middle = _cpu_ns(pid)
            batches = [
                [{"topic": "batch", "payload": make_payload(i)} for i in range(BATCH_SIZE)]
                for _ in range(BATCHES)
            ]
            started = time.perf_counter()
            for events in batches:
                await bus.emit_many(events)
            batch = BATCHES * BATCH_SIZE / (time.perf_counter() - started)
            end = _cpu_ns(pid)
        finally:
            await bus.close()
    return Figures(
        pipelined,
        batch,
        *_per_event_us(start, middle, PIPELINED),
        *_per_event_us(middle, end, BATCHES * BATCH_SIZE),
    )


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


async def measure(trees: list[str], storage: str, rounds: int) -> str:
    figures: dict[str, list[Figures]] = {tree: [] for tree in trees}
    for index in range(rounds):
        order = trees if index % 2 == 0 else trees[::-1]
        for tree in order:
            figures[tree].append(await one_round(tree, storage))
    rows = [
        {
            "tree": tree,
            "storage": storage,
            "pipelined_ev_s": [round(f.pipelined) for f in runs],
            "pipelined_median": statistics.median(f.pipelined for f in runs),
            "pipe_loop_us": statistics.median(f.pipelined_loop_us for f in runs),
            "pipe_all_us": statistics.median(f.pipelined_all_us for f in runs),
            "batch1000_ev_s": [round(f.batch) for f in runs],
            "batch1000_median": statistics.median(f.batch for f in runs),
            "batch_loop_us": statistics.median(f.batch_loop_us for f in runs),
            "batch_all_us": statistics.median(f.batch_all_us for f in runs),
        }
        for tree, runs in figures.items()
    ]
    base = figures[trees[0]]
    ratios = []
    for tree in trees[1:]:
        pairs = list(zip(base, figures[tree], strict=True))
        ratios.append(
            {
                "tree vs first (geomean of rounds)": tree,
                "pipelined rate B/A": _geomean([b.pipelined / a.pipelined for a, b in pairs]),
                "pipe loop cpu A/B": _geomean(
                    [a.pipelined_loop_us / b.pipelined_loop_us for a, b in pairs]
                ),
                "pipe all cpu A/B": _geomean(
                    [a.pipelined_all_us / b.pipelined_all_us for a, b in pairs]
                ),
                "batch rate B/A": _geomean([b.batch / a.batch for a, b in pairs]),
                "batch loop cpu A/B": _geomean(
                    [a.batch_loop_us / b.batch_loop_us for a, b in pairs]
                ),
                "batch all cpu A/B": _geomean([a.batch_all_us / b.batch_all_us for a, b in pairs]),
            }
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = format_table(rows)
    if ratios:
        text += "\n\n" + format_table(ratios)
    return text + f"\n\nload average at the end: {load} ({os.cpu_count()} CPUs)"


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
