"""Which batched INSERT is fastest for a group-commit path on PostgreSQL (asyncpg)?

Each batch is one transaction that takes `pg_advisory_xact_lock(42)` (so ids
are consecutive within a batch) and learns the ids it was assigned:

- executemany: `executemany` of a one-row INSERT, ids from `currval` after;
- copy: `copy_records_to_table` (binary COPY), ids from `currval` after;
- unnest: one `INSERT ... SELECT * FROM unnest($1::text[], ...) RETURNING event_id`.

One connection, sequential batches, ~3 s (and at least 3,000 events) per
method and batch size, in a throwaway schema `bench_pg_insert_<pid>`.

    .venv/bin/python -m bench.pg_insert

Set PG_DSN to measure another server (default: postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench._common import format_table, record_results, run

DSN = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = f"bench_pg_insert_{os.getpid()}"
BATCHES = (1, 10, 100, 1000)
SECONDS = 3.0
MIN_EVENTS = 3_000

DDL = """
CREATE TABLE event_log (event_id BIGSERIAL PRIMARY KEY, topic TEXT COLLATE "C" NOT NULL,
    payload JSONB, timestamp BIGINT NOT NULL, metadata JSONB, source_trn TEXT COLLATE "C",
    target_trn TEXT COLLATE "C", correlation_id TEXT, idempotency_key TEXT);
CREATE INDEX ON event_log (topic);
CREATE INDEX ON event_log (source_trn);
CREATE INDEX ON event_log (target_trn);
CREATE INDEX ON event_log (correlation_id);
CREATE INDEX ON event_log (timestamp);
CREATE INDEX ON event_log (idempotency_key) WHERE idempotency_key IS NOT NULL;
"""
COLUMNS = (
    "topic", "payload", "timestamp", "metadata",
    "source_trn", "target_trn", "correlation_id", "idempotency_key",
)  # fmt: skip
INSERT = f"INSERT INTO event_log ({', '.join(COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
UNNEST = (
    f"INSERT INTO event_log ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    "$1::text[], $2::jsonb[], $3::bigint[], $4::jsonb[], $5::text[], $6::text[], $7::text[], $8::text[]"
    ") RETURNING event_id"
)
CURRVAL = "SELECT currval('event_log_event_id_seq')"
LOCK = "SELECT pg_advisory_xact_lock(42)"

Row = tuple[Any, ...]
Insert = Callable[[asyncpg.Connection, list[Row]], Awaitable[list[int]]]


async def by_executemany(conn: asyncpg.Connection, rows: list[Row]) -> list[int]:
    await conn.executemany(INSERT, rows)
    last = await conn.fetchval(CURRVAL)
    return list(range(last - len(rows) + 1, last + 1))


async def by_copy(conn: asyncpg.Connection, rows: list[Row]) -> list[int]:
    await conn.copy_records_to_table("event_log", records=rows, columns=COLUMNS)
    last = await conn.fetchval(CURRVAL)
    return list(range(last - len(rows) + 1, last + 1))


async def by_unnest(conn: asyncpg.Connection, rows: list[Row]) -> list[int]:
    return [r[0] for r in await conn.fetch(UNNEST, *zip(*rows, strict=True))]


METHODS: dict[str, Insert] = {"executemany": by_executemany, "copy": by_copy, "unnest": by_unnest}


def make_rows(batch: int, first: int) -> list[Row]:
    ts = time.time_ns() // 1_000_000
    return [
        (
            "bench.pg_insert",
            f'{{"n": {n}, "pad": "{"x" * 100}"}}',
            ts,
            '{"trace": "t"}',
            "trn:user:bench:tool:pg_insert",
            None,
            f"c{n}",
            None,
        )
        for n in range(first, first + batch)
    ]


async def commit(conn: asyncpg.Connection, insert: Insert, rows: list[Row]) -> list[int]:
    async with conn.transaction():
        await conn.execute(LOCK)
        return await insert(conn, rows)


async def measure(conn: asyncpg.Connection, insert: Insert, batch: int) -> float:
    """Events/s of sequential one-transaction batches, on a freshly emptied table.

    Only the transactions are timed, not building each batch's rows.
    """
    await conn.execute("TRUNCATE event_log RESTART IDENTITY")
    await commit(conn, insert, make_rows(batch, 0))  # warm-up: prepares statements
    inserted = batch  # ids handed out so far, warm-up included
    elapsed = 0.0
    while inserted - batch < MIN_EVENTS or elapsed < SECONDS:
        rows = make_rows(batch, inserted)
        start = time.perf_counter()
        ids = await commit(conn, insert, rows)
        elapsed += time.perf_counter() - start
        inserted += batch
        # This batch's ids, consecutive, and the newest in the table.
        assert ids == list(range(inserted - batch + 1, inserted + 1)), (ids[:3], inserted)
    count, top = await conn.fetchrow("SELECT count(*), max(event_id) FROM event_log")
    assert count == top == inserted, (count, top, inserted)
    return (inserted - batch) / elapsed


def table(results: dict[int, dict[str, float]]) -> str:
    rows = [
        {"batch": b, **rates, "fastest": max(rates, key=rates.__getitem__)}
        for b, rates in results.items()
    ]
    return format_table(rows)


async def main() -> None:
    conn = await asyncpg.connect(DSN)
    try:
        version = await conn.fetchval("SHOW server_version")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
        await conn.execute(f"SET search_path TO {SCHEMA}")
        await conn.execute(DDL)
        results = {b: {m: await measure(conn, f, b) for m, f in METHODS.items()} for b in BATCHES}
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()
    text = (
        f"PostgreSQL {version} at {DSN.rsplit('@', 1)[-1]}, asyncpg {asyncpg.__version__}; "
        "one connection, one transaction per batch with pg_advisory_xact_lock(42), "
        f"~{SECONDS:.0f} s per cell; figures in events/s\n\n{table(results)}"
    )
    print(text)
    record_results("bench.pg_insert: executemany vs COPY vs unnest, batched inserts", text)


if __name__ == "__main__":
    run(main())
