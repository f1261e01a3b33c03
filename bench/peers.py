"""Measure the peers eventbus is compared with: NATS JetStream and Redis Streams.

Both are driven from their Python clients through the helpers in `_common`, so
the figures line up with `bench/emit.py`. Know what is being compared:
JetStream uses file storage but, by default, fsyncs only every couple of
minutes; the Redis under test keeps nothing on disk.

Run alone (prints the table, records nothing):
    .venv/bin/python -m bench.peers      (or: .venv/bin/python bench/peers.py)
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.api import StorageType
from redis.asyncio import Redis

if not __package__:
    # Run as a file (`python bench/peers.py`): make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PIPELINE_DEPTH,
    PIPELINED_COUNT,
    SEQUENTIAL_COUNT,
    Payload,
    format_table,
    measure_rate,
    run,
    steady_latency,
)

NATS_URL = "nats://127.0.0.1:4222"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
CONNECT_TIMEOUT_S = 3.0
RECEIVE_CAP_S = 30.0  # far beyond any latency run; stops a reader whose producer died


def _encode(payload: Payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def measure_jetstream() -> dict[str, Any]:
    """Sequential, windowed and latency figures for NATS JetStream."""
    nc = await nats.connect(NATS_URL, connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=False)
    try:
        # The semaphore behind publish_async keeps at most this many acks in flight.
        js = nc.jetstream(publish_async_max_pending=PIPELINE_DEPTH)

        async with _jetstream_stream(js) as (stream, subject):
            sent, sequential = await measure_rate(
                lambda batch: js.publish(subject, _encode(batch[0])), count=SEQUENTIAL_COUNT
            )
            _expect_stored(sent, (await js.stream_info(stream)).state.messages)

        async with _jetstream_stream(js) as (stream, subject):

            async def publish_window(batch: list[Payload]) -> None:
                for payload in batch:
                    await js.publish_async(subject, _encode(payload))

            sent, pipelined = await measure_rate(
                publish_window,
                count=PIPELINED_COUNT,
                batch=PIPELINE_DEPTH,
                drain=js.publish_async_completed,
            )
            _expect_stored(sent, (await js.stream_info(stream)).state.messages)

        async with _jetstream_stream(js) as (stream, subject):
            sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
            try:
                messages = (json.loads(msg.data) async for msg in sub.messages)
                latency = await steady_latency(lambda p: js.publish(subject, _encode(p)), messages)
            finally:
                await sub.unsubscribe()
    finally:
        await nc.close()
    version = nc.connected_server_version
    return {
        "system": f"NATS JetStream {version.major}.{version.minor}.{version.patch}",
        "storage": "file",
        "seq_ev_s": sequential,
        "pipelined_ev_s": pipelined,
        **latency,
    }


@asynccontextmanager
async def _jetstream_stream(js: JetStreamContext) -> AsyncIterator[tuple[str, str]]:
    # A fresh stream per measurement, so no run scans or inherits another's messages.
    token = uuid.uuid4().hex
    stream = f"bench_{token}"
    await js.add_stream(name=stream, subjects=[f"bench.{token}.>"], storage=StorageType.FILE)
    try:
        yield stream, f"bench.{token}.events"
    finally:
        await js.delete_stream(stream)


async def measure_redis() -> dict[str, Any]:
    """Sequential, pipelined and latency figures for Redis Streams."""
    redis = _redis_client()
    reader = _redis_client()  # XREAD BLOCK holds its connection, so it needs its own
    try:
        async with _redis_stream(redis) as key:
            sent, sequential = await measure_rate(
                lambda batch: redis.xadd(key, {"data": _encode(batch[0])}),
                count=SEQUENTIAL_COUNT,
            )
            _expect_stored(sent, await redis.xlen(key))

        async with _redis_stream(redis) as key:

            async def publish_pipeline(batch: list[Payload]) -> None:
                # No MULTI/EXEC: we want one round trip, not atomicity.
                pipe = redis.pipeline(transaction=False)
                for payload in batch:
                    pipe.xadd(key, {"data": _encode(payload)})
                await pipe.execute()

            sent, pipelined = await measure_rate(
                publish_pipeline, count=PIPELINED_COUNT, batch=PIPELINE_DEPTH
            )
            _expect_stored(sent, await redis.xlen(key))

        async with _redis_stream(redis) as key:
            latency = await steady_latency(
                lambda p: redis.xadd(key, {"data": _encode(p)}), _xread_payloads(reader, key)
            )
        version = (await redis.info("server"))["redis_version"]
    finally:
        await reader.aclose()
        await redis.aclose()
    return {
        "system": f"Redis Streams {version}",
        "storage": "memory",
        "seq_ev_s": sequential,
        "pipelined_ev_s": pipelined,
        **latency,
    }


def _redis_client() -> Redis:
    return Redis(
        host=REDIS_HOST,
        port=REDIS_PORT,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=CONNECT_TIMEOUT_S + 2,  # must outlast the 1 s XREAD BLOCK
    )


@asynccontextmanager
async def _redis_stream(redis: Redis) -> AsyncIterator[str]:
    key = f"bench:{uuid.uuid4().hex}"
    try:
        yield key
    finally:
        await redis.delete(key)


async def _xread_payloads(reader: Redis, key: str) -> AsyncIterator[Payload]:
    # The key is fresh, so reading from the start misses nothing and replays nothing.
    last_id: bytes | str = "0-0"
    deadline = time.perf_counter() + RECEIVE_CAP_S
    while time.perf_counter() < deadline:
        # redis-py types replies loosely: [[key, [(entry_id, {field: value})]]].
        reply: Any = await reader.xread({key: last_id}, count=1000, block=1000)
        for _key, entries in reply:
            for entry_id, fields in entries:
                last_id = entry_id
                yield json.loads(fields[b"data"])


def _expect_stored(sent: int, stored: int) -> None:
    # A rate is meaningless if the system acknowledged events it did not keep.
    if stored != sent:
        raise RuntimeError(f"sent {sent} events but the stream holds {stored}")


async def measure_peers() -> list[dict[str, Any]]:
    """One row per peer, measured one after the other so they never share the CPU."""
    return [await measure_jetstream(), await measure_redis()]


async def _main() -> None:
    print(format_table(await measure_peers()))


if __name__ == "__main__":
    run(_main())
