"""How fast SqliteStorage.append commits, by batch size and durability.

The bus's writer hands `append` one group-commit batch at a time, so this is
the ceiling of the emit path with SQLite under it: batch=1 is a lone emitter,
bigger batches are what many concurrent emitters turn into.

    .venv/bin/python bench/storage_append.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

if not __package__:
    # Run as a file (`python bench/storage_append.py`): make the packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import format_table, machine_info, measure_rate
from eventbus_core.event import now_ms
from eventbus_server.storage import NewEvent, SqliteStorage

BATCHES = (1, 10, 100, 1000)
EVENTS_PER_RUN = {1: 5_000, 10: 20_000, 100: 100_000, 1000: 200_000}
SOURCE = "trn:user:bench:tool:append"


async def measure(durability: str, batch: int, folder: Path) -> dict[str, object]:
    store = SqliteStorage(folder / f"{durability}-{batch}.db", durability=durability)  # type: ignore[arg-type]
    await store.open()

    async def publish(payloads: list[dict[str, object]]) -> None:
        ts = now_ms()
        await store.append(
            [
                NewEvent("bench.append", p, ts, source_trn=SOURCE, correlation_id="c")
                for p in payloads
            ]
        )

    try:
        sent, rate = await measure_rate(publish, count=EVENTS_PER_RUN[batch], batch=batch)
    finally:
        await store.close()
    return {
        "durability": durability,
        "batch": batch,
        "events": sent,
        "events/s": rate,
        "commits/s": rate / batch,
        "µs/commit": 1e6 * batch / rate,
    }


async def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as tmp:
        for durability in ("normal", "full"):
            for batch in BATCHES:
                rows.append(await measure(durability, batch, Path(tmp)))
    print(f"SqliteStorage.append — {machine_info()}")
    print(format_table(rows))


if __name__ == "__main__":
    asyncio.run(main())
