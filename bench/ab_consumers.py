"""Durable-consumer figures of two or more source trees, interleaved: an A/B for a change.

    .venv/bin/python -m bench.ab_consumers --tree /path/to/old --tree /path/to/new
        [--rounds 4] [--record]

Each round runs, from each tree in turn (a fresh server, SQLite durability
normal), what bench.consumers runs for eventbus: W workers fetching B events
at a time and acking each batch in one call, for (B, W) = (1, 1), (1, 4) and
(100, 1). It prints, per tree, the median rate and the median server CPU µs
per event (every thread's, from /proc), and per later tree the median of its
paired ratios to the first tree in the same round.
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench._common import format_table, record_results, run
from bench.consumers import eventbus_figures

SHAPES = ((1, 1), (1, 4), (100, 1))  # (batch, workers)


async def measure(trees: list[str], rounds: int) -> str:
    figures: dict[tuple[int, int, str], list[tuple[float, float]]] = {}
    for round_number in range(rounds):
        # Alternate which tree goes first, so drift hits both alike.
        order = trees if round_number % 2 == 0 else trees[::-1]
        for tree in order:
            for batch, workers in SHAPES:
                figures.setdefault((batch, workers, tree), []).append(
                    await eventbus_figures(workers, batch, ack_each=False, tree=tree)
                )
    rows = []
    for batch, workers in SHAPES:
        first = figures[(batch, workers, trees[0])]
        for tree in trees:
            mine = figures[(batch, workers, tree)]
            rows.append(
                {
                    "batch": batch,
                    "workers": workers,
                    "tree": tree,
                    "ev/s": round(statistics.median(rate for rate, _ in mine)),
                    "server CPU µs/ev": round(statistics.median(cpu for _, cpu in mine)),
                    "rate / first tree": round(
                        statistics.median(m[0] / f[0] for m, f in zip(mine, first, strict=True)),
                        2,
                    ),
                    "CPU / first tree": round(
                        statistics.median(m[1] / f[1] for m, f in zip(mine, first, strict=True)),
                        2,
                    ),
                }
            )
    return (
        f"`python -m bench.ab_consumers {' '.join(f'--tree {t}' for t in trees)} --rounds {rounds}`;"
        " SQLite durability normal, fetch B + one ack call per batch; medians over rounds,"
        " ratios paired within a round.\n\n" + format_table(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    text = run(measure(args.tree, args.rounds))
    print(text)
    if args.record:
        record_results(
            "bench.ab_consumers: fetch + ack, trees interleaved "
            f"(load avg {os.getloadavg()[0]:.2f})",
            text,
        )


if __name__ == "__main__":
    main()
