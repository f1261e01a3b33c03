"""How fast `eventbus` starts: `eventbus --help` and a client command's parse step.

    .venv/bin/python -m bench.cli_start [--runs 20] [--no-record]

Each command runs as a fresh process (as a user's shell runs it), `--runs`
times; prints the median and the slowest, next to a bare `python -c pass`
on the same interpreter, and appends the table to bench/RESULTS.md unless
`--no-record`. Target: `eventbus --help` under 300 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ._common import format_table, record_results

EVENTBUS = str(Path(sys.executable).with_name("eventbus"))
COMMANDS = {
    "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
    "eventbus --help": [EVENTBUS, "--help"],
    "eventbus history --help": [EVENTBUS, "history", "--help"],
}


def timed_ms(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env={"COLUMNS": "100", "PATH": ""})
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, argv in COMMANDS.items():
        times = timed_ms(argv, args.runs)
        rows.append({"command": name, "median_ms": statistics.median(times), "max_ms": max(times)})
    text = f"{args.runs} runs each, a fresh process per run\n\n{format_table(rows)}\n\nTarget: eventbus --help < 300 ms."
    print(text)
    if not args.no_record:
        record_results("bench.cli_start: eventbus start-up time", text)


if __name__ == "__main__":
    main()
