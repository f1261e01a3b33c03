"""`poll_events` on a 1,000,000-event store, over RPC: the query table of issue 14.

The store is built here, straight into the storage's own schema (the
migrations create it, rows go in by `executemany` in one transaction), and
kept in a temporary folder between runs, keyed by its size and this file's
data version. It looks like a log a team would keep:

- 5,000 topics under 50 services, Zipf-distributed (a few hot topics, a long
  tail), plus `rare.*` topics holding 60 events spread over the whole log;
- a timestamp every ~5 ms on average (about 200 events a second, an hour and
  a half of log), with 1 % of events carrying a client timestamp up to a
  minute off;
- 30 % of events with a `source_trn` out of 20,000 distinct ones, 20 % with a
  `target_trn` out of 5,000, 40 % with a `correlation_id` shared by 1 to 8
  consecutive-ish events.

A real server process serves the file (`python -m eventbus_server`), and each
query runs once to warm up, then `--runs` times through the real client; the
table shows the median and the best, and the median of the same query made
straight through the storage layer in this process (`storage_ms`). `--postgres` also loads the same rows
into a PostgreSQL schema (`COPY`, then `ANALYZE`; kept between runs) and
serves that.

    .venv/bin/python -m bench.queries [--events 1000000] [--runs 21] [--postgres] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench._common import format_table, record_results, run
from bench._server import server_process
from eventbus_client import connect
from eventbus_server.storage import EventQuery, PostgresStorage, SqliteStorage
from eventbus_server.storage.postgres import schema as pg_schema
from eventbus_server.storage.sql import INSERT_EVENT_QMARK, INSERT_FIELDS
from eventbus_server.storage.sqlite.schema import migrate

#: Bump when the generated rows change, so a cached store is rebuilt.
DATA_VERSION = 1
SEED = 14
T0_MS = 1_764_000_000_000
STEP_MS = 5
SERVICES = 50
TOPICS = 5_000
RARE_EVENTS = 60
SOURCES = 20_000
TARGETS = 5_000
VERBS = ("created", "updated", "deleted", "pushed", "failed", "retried", "done", "seen")
KINDS = ("tool", "workflow", "agent", "service")
POSTGRES_URL = os.environ.get(
    "EVENTBUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
POSTGRES_SCHEMA = "eventbus_bench_queries"


def _topics(rng: random.Random) -> list[str]:
    names = []
    for k in range(TOPICS):
        service = f"svc{k % SERVICES}"
        names.append(f"{service}.entity{k // SERVICES}.{VERBS[k % len(VERBS)]}")
    rng.shuffle(names)
    return names


def _source(k: int) -> str:
    return f"trn:user:u{k % 4000}:{KINDS[k % len(KINDS)]}:app{k % 97}:v{k % 5}"


def _target(k: int) -> str:
    return f"trn:org:o{k % 300}:repo:r{k}:v1"


def rows(count: int) -> Any:
    """The generated events, as INSERT rows in `INSERT_FIELDS` order."""
    rng = random.Random(SEED)
    topics = _topics(rng)
    weights = [1 / (rank + 1) for rank in range(TOPICS)]  # Zipf, s = 1
    picks = rng.choices(range(TOPICS), weights, k=count)
    rare_at = set(rng.sample(range(count), RARE_EVENTS))
    correlation = None
    left_in_group = 0
    for n in range(count):
        topic = f"rare.kind{n % 3}.hit" if n in rare_at else topics[picks[n]]
        ts = T0_MS + n * STEP_MS + rng.randrange(STEP_MS)
        if rng.random() < 0.01:
            ts += rng.randrange(-60_000, 60_000)
        source = _source(rng.randrange(SOURCES)) if rng.random() < 0.3 else None
        target = _target(rng.randrange(TARGETS)) if rng.random() < 0.2 else None
        if left_in_group == 0:
            left_in_group = rng.randrange(1, 9)
            correlation = f"c-{rng.getrandbits(48):012x}" if rng.random() < 0.4 else None
        left_in_group -= 1
        payload = json.dumps({"n": n, "repo": f"acme/api{n % 50}", "branch": "main"})
        yield (topic, payload, ts, None, source, target, correlation, None, None)


def build(path: Path, count: int) -> None:
    """A fresh SQLite store of `count` generated events at `path`."""
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        migrate(conn, str(partial))
        conn.execute("BEGIN")
        conn.executemany(
            INSERT_EVENT_QMARK,
            rows(count),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    partial.rename(path)


def cached_store(count: int) -> Path:
    folder = Path(tempfile.gettempdir()) / "eventbus-bench-queries"
    folder.mkdir(exist_ok=True)
    path = folder / f"events-{count}-v{DATA_VERSION}.db"
    if not path.exists():
        started = time.perf_counter()
        print(f"building {path} ({count:,} events)…", file=sys.stderr)
        build(path, count)
        print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


async def postgres_store(count: int) -> str:
    """The same rows in a PostgreSQL schema (loaded by COPY when missing); its storage URL."""
    label = f"bench.queries v{DATA_VERSION} {count}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        found = await conn.fetchval(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            POSTGRES_SCHEMA,
        )
        if found != label:
            started = time.perf_counter()
            print(f"loading {count:,} events into PostgreSQL…", file=sys.stderr)
            await conn.execute(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")
            await pg_schema.migrate(conn, POSTGRES_SCHEMA, POSTGRES_SCHEMA)
            batch: list[tuple[Any, ...]] = []
            for row in rows(count):
                batch.append(row)
                if len(batch) == 100_000:
                    await _copy(conn, batch)
                    batch = []
            await _copy(conn, batch)
            # As autovacuum would soon: statistics, and the visibility map index-only scans need.
            await conn.execute(f"VACUUM ANALYZE {POSTGRES_SCHEMA}.event_log")
            await conn.execute(f"COMMENT ON SCHEMA {POSTGRES_SCHEMA} IS '{label}'")
            print(f"loaded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        await conn.close()
    return f"{POSTGRES_URL}?schema={POSTGRES_SCHEMA}"


async def _copy(conn: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(
        "event_log", records=batch, columns=list(INSERT_FIELDS), schema_name=POSTGRES_SCHEMA
    )


def queries(count: int) -> list[tuple[str, dict[str, Any]]]:
    """The issue's table: (what, poll params), each with `limit` 100."""
    middle = T0_MS + count // 2 * STEP_MS
    end = T0_MS + count * STEP_MS
    return [
        ("time range, 1 s in the middle", {"from_ts": middle, "to_ts": middle + 999}),
        ("time range, last 1 s", {"from_ts": end - 1000, "to_ts": end - 1}),
        ("time range, last 1 s, newest first", {"from_ts": end - 1000, "order": "desc"}),
        ("time range, 25 s in the middle", {"from_ts": middle, "to_ts": middle + 24_999}),
        ("time range, the second half of the log", {"from_ts": middle}),
        ("source_trn prefix, no match", {"source_trn": "trn:user:nobody:"}),
        ("source_trn prefix, ~75 events", {"source_trn": "trn:user:u42:"}),
        ("source_trn wildcard, narrow literal part", {"source_trn": "trn:user:u42:*:*:v2"}),
        ("source_trn wildcard, wide literal part", {"source_trn": "trn:user:*:workflow:app13:v1"}),
        ("target_trn wildcard", {"target_trn": "trn:org:o7:*:r7:v1"}),
        ("topic rare.> (60 events)", {"topic": "rare.>"}),
        ("topic svc1.> (wide prefix)", {"topic": "svc1.>"}),
        ("topic *.entity3.* (wildcard)", {"topic": "*.entity3.*"}),
        ("exact topic", {"topic": "svc7.entity0.seen"}),
        ("correlation id", {"correlation_id": "set by measure()"}),
        ("everything, deep cursor", {"since": count - 500}),
    ]


@contextlib.asynccontextmanager
async def server(storage: dict[str, Any]) -> AsyncIterator[str]:
    """`python -m eventbus_server` on the given storage; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-") as folder:
        config = Path(folder) / "event_buses.json"
        bus = {"id": "bench", "listen": "127.0.0.1:0", "persist": True, **storage}
        config.write_text(json.dumps([bus]))
        async with server_process(config, start_timeout_s=300) as (url, _pid):
            yield url


def _first_correlation_id(path: Path, count: int) -> str:
    """A correlation id from the middle of the log."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT correlation_id FROM event_log WHERE event_id > ?"
            " AND correlation_id IS NOT NULL ORDER BY event_id LIMIT 1",
            (count // 2,),
        ).fetchone()
    finally:
        conn.close()
    return str(row[0])


async def measure(
    storage: str, config: dict[str, Any], correlation_id: str, count: int, runs: int
) -> list[dict[str, Any]]:
    """Each query over RPC, then straight through the storage layer in this process
    (`storage_ms`: the plan and the read alone, without the server, the wire and the
    client, which a loaded machine makes noisy)."""
    table = []
    shapes = [
        (what, {**p, "correlation_id": correlation_id} if "correlation_id" in p else p)
        for what, p in queries(count)
    ]
    async with server(config) as url, await connect(url) as bus:
        for what, params in shapes:
            await bus.poll(limit=100, **params)  # warm: the pages it reads are cached after
            times_ms = []
            found = 0
            for _ in range(runs):
                started = time.perf_counter()
                result = await bus.poll(limit=100, **params)
                times_ms.append((time.perf_counter() - started) * 1000)
                found = len(result.events)
            table.append(
                {
                    "storage": storage,
                    "query": what,
                    "events": found,
                    "median_ms": statistics.median(times_ms),
                    "best_ms": min(times_ms),
                }
            )
            print(format_table(table[-1:]).splitlines()[-1], file=sys.stderr)
    store = (
        SqliteStorage(Path(config["storage_path"]))
        if "storage_path" in config
        else PostgresStorage(config["storage_url"], bus_id="bench")
    )
    await store.open()
    try:
        for row, (_, params) in zip(table, shapes, strict=True):
            query = EventQuery(limit=100, **params)
            await store.query(query)
            times_ms = []
            for _ in range(runs):
                started = time.perf_counter()
                await store.query(query)
                times_ms.append((time.perf_counter() - started) * 1000)
            row["storage_ms"] = statistics.median(times_ms)
    finally:
        await store.close()
    return table


async def main(args: argparse.Namespace) -> None:
    path = args.store or cached_store(args.events)
    correlation_id = _first_correlation_id(path, args.events)
    table = await measure(
        f"sqlite{args.label}", {"storage_path": str(path)}, correlation_id, args.events, args.runs
    )
    if args.postgres:
        url = await postgres_store(args.events)
        table += await measure(
            f"postgres{args.label}", {"storage_url": url}, correlation_id, args.events, args.runs
        )
    text = format_table(table)
    print(text)
    if args.record:
        command = f"python -m bench.queries {shlex.join(sys.argv[1:])}".strip()
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        record_results(
            f"bench.queries — poll_events on {args.events:,} events, limit 100",
            f"Command: `{command}`; a warm-up poll, then median and best of {args.runs} polls"
            f" over RPC (real server process, real client). Load average at the end: {load}."
            f"\n\n{text}",
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.queries", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument(
        "--store",
        type=Path,
        help="serve this SQLite store (made by this script) instead of the cached one",
    )
    parser.add_argument(
        "--label", default="", help="appended to the storage column (e.g. ' @<commit>')"
    )
    parser.add_argument("--record", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    run(main(parse_args()))
