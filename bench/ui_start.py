"""How fast `eventbus ui` is up: the real command on a terminal, against an empty bus.

    .venv/bin/python -m bench.ui_start [--runs 5] [--no-record]

Starts a bus (its own process, in memory, no events), then `--runs` times
runs `eventbus ui --url …` as a fresh process on a pseudo-terminal (140x40)
and times it from spawn until the screen shows the bus as `connected`, then
presses `q`. Prints the median and the slowest and appends them to
bench/RESULTS.md unless `--no-record`. Target: under one second.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from ._common import format_table, record_results, run
from .emit import bus_process

EVENTBUS = str(Path(sys.executable).with_name("eventbus"))


def seconds_to_connected(url: str) -> float:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [EVENTBUS, "ui", "--url", url],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(terminal)
    try:
        screen = b""
        deadline = start + 20
        while b"connected" not in screen:
            ready, _, _ = select.select(
                [controller], [], [], max(0.0, deadline - time.perf_counter())
            )
            if not ready:
                raise RuntimeError(
                    f"eventbus ui never showed the bus as connected:\n{screen[-2000:]!r}"
                )
            screen += os.read(controller, 65536)
        elapsed = time.perf_counter() - start
        os.write(controller, b"q")
        proc.wait(10)
        return elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)


async def measure(args: argparse.Namespace) -> None:
    async with bus_process("memory", "normal") as (url, _pid):
        times = [seconds_to_connected(url) * 1000 for _ in range(args.runs)]
    row = {"runs": args.runs, "median_ms": statistics.median(times), "max_ms": max(times)}
    text = (
        "`eventbus ui --url` as a fresh process on a 140x40 pty, from spawn until the empty bus "
        f"shows as connected\n\n{format_table([row])}\n\nTarget: under 1 s."
    )
    print(text)
    if not args.no_record:
        record_results("bench.ui_start: eventbus ui start-up", text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-record", action="store_true")
    run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
