"""What an index for TRN wildcards with a leading `*` would cost the writes (issue 14).

    .venv/bin/python -m bench.trn_suffix_index [--events 200000] [--rounds 2] [--record]

A pattern such as `trn:user:*:workflow:app13:v1` narrows only to its literal
prefix (`trn:user:`), which may hold most TRNs of the log: bench.queries'
"wide literal part" query reads that whole range (~90 ms on 1M events). An
index on the reversed TRN would serve the literal suffix instead
(`1v:31ppa:wolfkrow:` as a range). This bench measures what such an index
(partial, `WHERE source_trn IS NOT NULL`; SQLite has no `reverse()`, so it
is an application function, as it would have to be) costs on inserts into
the real schema (`migrate`): batches of 1,000 and one-event commits,
durability normal, with 30 % and 100 % of events carrying a `source_trn`,
without and with the index, interleaved.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from eventbus_core.codec import dumps
from eventbus_server.storage.sql import INSERT_EVENT_QMARK
from eventbus_server.storage.sqlite.schema import migrate

from ._common import format_table, record_results

SINGLE_COMMITS = 5_000
REVERSED_INDEX = (
    "CREATE INDEX idx_event_log_source_trn_reversed ON event_log (reverse(source_trn))"
    " WHERE source_trn IS NOT NULL"
)


def _rows(count: int, with_trn: float) -> list[tuple[object, ...]]:
    rng = random.Random(7)
    rows = []
    for n in range(count):
        source = (
            f"trn:user:u{rng.randrange(1000)}:workflow:app{rng.randrange(40)}:v{rng.randrange(3)}"
            if rng.random() < with_trn
            else None
        )
        payload = dumps({"n": n, "repo": f"acme/api{n % 50}"}).decode()
        topic = f"svc{rng.randrange(8)}.entity{rng.randrange(40)}.changed"
        rows.append((topic, payload, 1_765_000_000_000 + n, None, source, None, None, None, None))
    return rows


def _one(folder: Path, rows: list[tuple[object, ...]], indexed: bool) -> tuple[float, float]:
    """Events/s in batches of 1,000, and one-event commits/s, into a fresh file."""
    path = folder / f"bench-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.create_function("reverse", 1, lambda s: None if s is None else s[::-1], deterministic=True)
    migrate(conn, str(path))
    if indexed:
        conn.execute(REVERSED_INDEX)
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        conn.executemany(INSERT_EVENT_QMARK, rows[start : start + 1000])
        conn.execute("COMMIT")
    batch_rate = len(rows) / (time.perf_counter() - started)
    started = time.perf_counter()
    for row in rows[:SINGLE_COMMITS]:
        conn.execute("BEGIN")
        conn.execute(INSERT_EVENT_QMARK, row)
        conn.execute("COMMIT")
    single_rate = SINGLE_COMMITS / (time.perf_counter() - started)
    conn.close()
    return batch_rate, single_rate


def measure(events: int, rounds: int) -> str:
    table = []
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as folder:
        for with_trn in (0.3, 1.0):
            rows = _rows(events, with_trn)
            got: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for round_number in range(rounds):
                for indexed in (False, True) if round_number % 2 == 0 else (True, False):
                    got[indexed].append(_one(Path(folder), rows, indexed))
            for what, position in (("batches of 1,000", 0), ("one-event commits", 1)):
                without = statistics.median(r[position] for r in got[False])
                with_index = statistics.median(r[position] for r in got[True])
                table.append(
                    {
                        "events with a source_trn": f"{with_trn:.0%}",
                        "inserts": what,
                        "without ev/s": round(without),
                        "with reversed index ev/s": round(with_index),
                        "with / without": round(with_index / without, 2),
                    }
                )
    return (
        f"`python -m bench.trn_suffix_index --events {events} --rounds {rounds}`: raw sqlite3 on the"
        " real schema, durability normal, medians over rounds (interleaved).\n\n"
        + format_table(table)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    text = measure(args.events, args.rounds)
    print(text)
    if args.record:
        record_results(
            "bench.trn_suffix_index: the write cost of an index for leading-wildcard TRN patterns",
            text,
        )


if __name__ == "__main__":
    main()
