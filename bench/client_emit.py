"""The Python client's own CPU per emit, for an A/B of client changes.

    .venv/bin/python -m bench.client_emit --tree /path/to/old --tree /path/to/new [--rounds 5]

bench.ab_emit judges the server; a client change hardly moves it. Here each
round runs, for each tree in turn (alternating which goes first), a child
process with that tree's `eventbus_client` on its path: it starts that tree's
server (memory storage, so the server stays cheap) and times, in CPU seconds
of the client process alone, 5,000 emits awaiting each ack (`seq`) and
40,000 with 100 in flight (`pipe`, as bench.emit), 20 `emit_many` of 1,000
(`batch`; the events are built before the clock starts). Printed: each tree's
median µs of client CPU per emit and the paired ratio (new / old) per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import asyncio, json, os, sys, tempfile, time
from pathlib import Path

import uvloop

from eventbus_client import connect


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as folder:
        config = Path(folder) / "event_buses.json"
        config.write_text(json.dumps([{"id": "bench", "listen": "127.0.0.1:0"}]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "eventbus_server", "--config", str(config),
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        port = 0
        while line := (await proc.stderr.readline()).decode():
            if "listen=127.0.0.1:" in line:
                port = int(line.split("listen=127.0.0.1:")[1].split()[0])
                break
        drain = asyncio.create_task(proc.stderr.read())
        bus = await connect(f"tcp://127.0.0.1:{port}")
        payload = {"repo": "acme/api", "branch": "main", "n": 1}
        out = {}
        try:
            for _ in range(2000):
                await bus.emit("warm", payload)
            cpu = time.process_time()
            for _ in range(5000):
                await bus.emit("bench.seq", payload)
            out["seq"] = (time.process_time() - cpu) / 5000 * 1e6

            async def worker() -> None:
                for _ in range(400):
                    await bus.emit("bench.pipe", payload)

            cpu = time.process_time()
            await asyncio.gather(*(worker() for _ in range(100)))
            out["pipe"] = (time.process_time() - cpu) / 40000 * 1e6

            events = [{"topic": "bench.batch", "payload": payload} for _ in range(1000)]
            cpu = time.process_time()
            for _ in range(20):
                await bus.emit_many(events)
            out["batch"] = (time.process_time() - cpu) / 20000 * 1e6
        finally:
            await bus.close()
            proc.terminate()
            await proc.wait()
            drain.cancel()
        print(json.dumps(out))


uvloop.run(main())
"""


def child(tree: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": tree},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = [str(Path(t).resolve()) for t in args.tree]
    figures: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for round_ in range(args.rounds):
        order = trees if round_ % 2 == 0 else trees[::-1]
        for tree in order:
            figures[tree].append(child(tree))
        print(f"round {round_ + 1}: load {os.getloadavg()[0]:.1f}", flush=True)
    base = trees[0]
    for scenario in ("seq", "pipe", "batch"):
        for tree in trees:
            median = statistics.median(r[scenario] for r in figures[tree])
            line = f"{scenario:4} {tree}: {median:6.1f} µs client CPU/emit"
            if tree != base:
                ratio = statistics.median(
                    new[scenario] / old[scenario]
                    for new, old in zip(figures[tree], figures[base], strict=True)
                )
                line += f"  (ratio {ratio:.3f} to {base})"
            print(line)


if __name__ == "__main__":
    main()
