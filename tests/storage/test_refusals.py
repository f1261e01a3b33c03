"""Data a database will not store is the client's `InvalidParams` (-32602), naming the value;
a PostgreSQL schema dropped under the bus is `StorageUnavailable` (-32008). Never -32603.

Validation (eventbus_core.envelope) keeps most of this from ever reaching storage;
these tests build `NewEvent`s directly, as a bus's writer would hand them over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventbus_core.errors import InvalidParams, StorageUnavailable
from eventbus_server.storage import EventQuery, NewEvent, PostgresStorage, Storage
from eventbus_server.storage.postgres.store import COPY_MIN_EVENTS
from tests import postgres
from tests.storage.backends import opened

from .backends import BACKENDS

T0 = 1_764_300_000_000
#: Both sizes: PostgreSQL inserts small batches with INSERT … unnest and large ones with COPY.
SIZES = pytest.mark.parametrize("size", [1, COPY_MIN_EVENTS], ids=["insert", "copy"])


def new(offset: int = 0, **fields: Any) -> NewEvent:
    fields.setdefault("payload", {"n": offset})
    fields.setdefault("timestamp", T0 + offset)
    return NewEvent(topic="orders.created", **fields)


@pytest.fixture(params=["sqlite", "postgres"])
async def sql_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with opened(BACKENDS[request.param], tmp_path) as store:
        yield store


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[PostgresStorage]:
    store = BACKENDS["postgres"](tmp_path)
    assert isinstance(store, PostgresStorage)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@SIZES
@pytest.mark.parametrize("timestamp", [2**63, 2**64, -(2**63) - 1])
async def test_a_timestamp_beyond_int64_is_invalid_params_and_stores_nothing(
    sql_storage: Storage, size: int, timestamp: int
) -> None:
    batch = [new(i) for i in range(size - 1)] + [new(timestamp=timestamp)]
    subject = "this event" if size == 1 else "an event on topic 'orders.created'"
    with pytest.raises(
        InvalidParams,
        match=rf"cannot store {subject}: timestamp {timestamp} does not fit in a 64-bit integer",
    ):
        await sql_storage.append(batch)
    assert await sql_storage.count() == 0
    # The storage is fine: the next batch goes in.
    assert [e.event_id for e in await sql_storage.append([new(1)])] == [
        await sql_storage.last_event_id()
    ]


async def test_a_payload_with_no_json_text_is_invalid_params(sql_storage: Storage) -> None:
    deep: Any = 1
    for _ in range(300):  # beyond what the JSON encoder nests
        deep = [deep]
    with pytest.raises(InvalidParams, match="cannot be encoded as JSON"):
        await sql_storage.append([new(payload=deep)])
    assert await sql_storage.count() == 0


@SIZES
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"payload": {"note": "a\x00b"}}, "payload.note"),
        ({"payload": ["ok", {"deep": ["\x00"]}]}, r"payload\[1\]\.deep\[0\]"),
        ({"payload": {"a\x00": 1}}, "a key in payload"),
        ({"payload": "\x00"}, "payload"),
        ({"metadata": {"trace": "\x00"}}, "metadata.trace"),
        ({"correlation_id": "c-\x00"}, "correlation_id"),
        ({"idempotency_key": "k-\x00"}, "idempotency_key"),
    ],
    ids=[
        "payload",
        "nested",
        "key",
        "string-payload",
        "metadata",
        "correlation_id",
        "idempotency_key",
    ],
)
async def test_postgres_refuses_nul_in_strings_as_invalid_params_naming_the_field(
    pg: PostgresStorage, size: int, fields: dict[str, Any], named: str
) -> None:
    batch = [new(i) for i in range(size - 1)] + [new(**fields)]
    subject = "this event" if size == 1 else "an event on topic 'orders.created'"
    with pytest.raises(
        InvalidParams,
        match=rf"^PostgreSQL cannot store {subject}: {named} contains \\u0000, which PostgreSQL cannot store$",
    ):
        await pg.append(batch, keys_since_ts=0)
    assert await pg.count() == 0


async def test_postgres_nul_elsewhere_is_invalid_params_too(pg: PostgresStorage) -> None:
    with pytest.raises(
        InvalidParams, match=r"PostgreSQL refused a value: .*cannot store \\u0000 in a string"
    ):
        await pg.put_rule("r", {"topic": "t", "description": "\x00"}, True, T0)
    with pytest.raises(InvalidParams, match="PostgreSQL refused a value"):
        await pg.query(EventQuery(correlation_id="\x00"))
    # No key with a NUL was ever stored, so looking one up finds nothing (and fails nothing).
    [stored] = await pg.append([new(idempotency_key="k")])
    found = await pg.find_keys(["k", "k\x00"], 0)
    assert list(found) == ["k"] and found["k"].event_id == stored.event_id


async def test_sqlite_stores_nul_in_strings(tmp_path: Path) -> None:
    store = BACKENDS["sqlite"](tmp_path)
    await store.open()
    try:
        [event] = await store.append([new(payload={"note": "a\x00b"}, correlation_id="c\x00")])
        assert await store.query(EventQuery()) == [event]
    finally:
        await store.close()


@SIZES
async def test_a_postgres_schema_dropped_under_the_bus_is_storage_unavailable(
    pg: PostgresStorage, size: int
) -> None:
    await pg.append([new()])
    conn = await asyncpg.connect(postgres.ADMIN_URL)
    try:
        await conn.execute(f'DROP SCHEMA "{pg.schema}" CASCADE')
    finally:
        await conn.close()
    gone = "the schema or its tables were dropped while the bus ran"
    with pytest.raises(StorageUnavailable, match=gone):
        await pg.append([new(i) for i in range(size)])
    with pytest.raises(StorageUnavailable, match=gone):
        await pg.query(EventQuery())
    with pytest.raises(StorageUnavailable, match=gone):
        await pg.put_rule("r", {"topic": "t"}, True, T0)
