"""Does the dashboard keep up, and does its memory stay flat, under a steady flood?

    .venv/bin/python -m bench.ui_memory [--minutes 60] [--rate 5000] [--no-record]

Starts a bus (its own process, memory storage), a producer (another process)
that emits `--rate` events/s in batches of 50, and `eventbus ui` headless
(Textual's `run_test`, 160x48) in this process, following that bus. Every
half minute it samples this process's resident memory, how many events the
dashboard received, and the worst event-loop stall since the last sample
(a redraw that blocks shows up there). Also times the start: from creating
the app to the bus shown as connected with its first rows drawn.
Prints the samples and appends them to bench/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

from ._common import format_table, record_results, run
from .emit import bus_process

SAMPLE_S = 30.0
BATCH = 50


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+)", status)
    return int(match.group(1)) / 1024 if match else float("nan")


async def produce(url: str, rate: int) -> None:
    """The producer process: `rate` events/s, paced per batch."""
    from eventbus_client import connect

    async with await connect(url) as bus:
        interval = BATCH / rate
        next_at = time.perf_counter()
        n = 0
        while True:
            await bus.emit_many(
                [{"topic": f"load.t{(n + i) % 20}", "payload": {"n": n + i}} for i in range(BATCH)]
            )
            n += BATCH
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def measure(args: argparse.Namespace) -> None:
    from eventbus_cli.ui.app import DashboardApp
    from eventbus_cli.ui.model import BusView

    async with bus_process("memory", "normal", {"memory_buffer": 10_000}) as (url, _pid):
        started = time.perf_counter()
        app = DashboardApp([BusView("load", url)])
        rows: list[dict[str, Any]] = []
        async with app.run_test(size=(160, 48)) as pilot:
            while app.bus.state != "connected":
                await pilot.pause(0.01)
            start_s = time.perf_counter() - started
            producer = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.ui_memory", "--produce", url, "--rate", str(args.rate)
            )
            stall = 0.0

            async def watch_loop() -> None:
                nonlocal stall
                while True:
                    before = time.perf_counter()
                    await asyncio.sleep(0.05)
                    stall = max(stall, time.perf_counter() - before - 0.05)

            watcher = asyncio.create_task(watch_loop())
            try:
                t0, received0 = time.perf_counter(), app.bus.received
                end = t0 + args.minutes * 60
                while time.perf_counter() < end:
                    await pilot.pause(SAMPLE_S)
                    elapsed = time.perf_counter() - t0
                    row = {
                        "t_min": round(elapsed / 60, 1),
                        "rss_mb": round(rss_mb(), 1),
                        "received": app.bus.received - received0,
                        "recv_ev_s": (app.bus.received - received0) / elapsed,
                        "worst_stall_ms": round(stall * 1000, 1),
                        "buffered_events": len(app.bus.events),
                    }
                    stall = 0.0
                    rows.append(row)
                    print(row, flush=True)
            finally:
                watcher.cancel()
                producer.terminate()
                await producer.wait()
    text = (
        f"eventbus ui following one bus at {args.rate:,} events/s for {args.minutes} min "
        f"(headless, 160x48); start until connected and drawn: {start_s * 1000:.0f} ms\n\n{format_table(rows)}"
    )
    print(text)
    if not args.no_record:
        record_results("bench.ui_memory: dashboard memory and stalls under a steady flood", text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--produce", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        run(produce(args.produce, args.rate))
    else:
        run(measure(args))


if __name__ == "__main__":
    main()
