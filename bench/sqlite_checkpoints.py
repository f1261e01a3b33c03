"""One-event commits under three ways of checkpointing the SQLite WAL, interleaved, in process.

    .venv/bin/python -m bench.sqlite_checkpoints [--blocks 10] [--commits 2000]

Each way gets its own SqliteStorage (durability normal) and takes blocks of
one-event `append`s in turn, yielding to the loop between commits as a
server does, so the machine's drift hits all three alike:

- `inline`: SQLite's automatic checkpoint (every 1,000 pages), which runs
  inside the COMMIT, on the event loop (what the storage did before
  checkpoints.py);
- `beside`: checkpoints.py, on a thread of its own, beside the commits;
- `none`: no checkpoint at all, the WAL growing without end (~600 MB by the
  end, in a temporary folder): the floor.

Prints each way's commit latency percentiles (what an emitter waits, the
event loop included), its total time and its process CPU per commit (all
threads, the checkpointer's included).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from eventbus_core.event import NewEvent
from eventbus_server.storage.sqlite import SqliteStorage
from eventbus_server.storage.sqlite.checkpoints import CHECKPOINT_PAGES

from ._common import format_table, machine_info, percentiles_ms, run

#: checkpoint_pages that is never reached.
NEVER = 2**62


async def _open(folder: Path, way: str) -> SqliteStorage:
    pages = CHECKPOINT_PAGES if way == "beside" else NEVER
    storage = SqliteStorage(folder / f"{way}.db", checkpoint_pages=pages)
    await storage.open()
    if way == "inline":
        assert storage._writer is not None
        storage._writer._conn.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default
    return storage


async def measure(blocks: int, commits: int) -> list[dict[str, Any]]:
    ways = ("inline", "beside", "none")
    latencies_ns: dict[str, list[int]] = {way: [] for way in ways}
    cpu_s = dict.fromkeys(ways, 0.0)
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as folder:
        stores = {way: await _open(Path(folder), way) for way in ways}
        try:
            n = 0
            for block in range(blocks):
                for way in ways if block % 2 == 0 else ways[::-1]:
                    cpu = time.process_time()
                    for _ in range(commits):
                        event = NewEvent("bench.one", {"n": n}, 1_764_300_000_000)
                        started = time.perf_counter_ns()
                        await stores[way].append([event])
                        latencies_ns[way].append(time.perf_counter_ns() - started)
                        n += 1
                        await asyncio.sleep(0)
                    cpu_s[way] += time.process_time() - cpu
        finally:
            for storage in stores.values():
                await storage.close()
    return [
        {
            "checkpoints": way,
            **percentiles_ms(latencies_ns[way]),
            "total_s": sum(latencies_ns[way]) / 1e9,
            "cpu_us_per_commit": cpu_s[way] / len(latencies_ns[way]) * 1e6,
        }
        for way in ways
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--commits", type=int, default=2000, help="one-event commits per block")
    args = parser.parse_args()
    rows = run(measure(args.blocks, args.commits))
    print(f"SqliteStorage.append, one event per commit: {machine_info()}")
    print(format_table(rows))


if __name__ == "__main__":
    main()
