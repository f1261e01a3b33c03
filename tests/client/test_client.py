"""The client on its own terms: errors, connection failures, the sync wrapper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import eventbus_client
from eventbus_client import (
    ConnectionLost,
    EventBusClient,
    InvalidParams,
    MethodNotFound,
    Unauthorized,
    connect,
    connect_sync,
)
from eventbus_client.connection import parse_url
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.ports import closed_port


async def test_unreachable_bus_raises_connection_lost_with_the_reason() -> None:
    port = closed_port()
    with pytest.raises(ConnectionLost, match=f"cannot connect to tcp://127.0.0.1:{port}"):
        await connect(f"tcp://127.0.0.1:{port}", timeout_s=2)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:4010", ("127.0.0.1", 4010, False)),
        ("127.0.0.1:4010", ("127.0.0.1", 4010, False)),
        ("tls://bus.example:443", ("bus.example", 443, True)),
        ("tcp://[::1]:4010", ("::1", 4010, False)),
    ],
)
def test_parse_url(url: str, expected: tuple) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://x:1", "tcp://nohost", "tcp://h:notaport"])
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


async def test_server_errors_raise_the_same_classes(client: EventBusClient) -> None:
    with pytest.raises(MethodNotFound):
        await client.call("no_such_method")
    with pytest.raises(InvalidParams) as info:
        await client.poll("a..b")
    assert info.value.code == -32602 and info.value.data[0]["loc"] == "topic"


async def test_pipelined_calls_on_one_connection(client: EventBusClient, unique_topic: str) -> None:
    results = await asyncio.gather(*(client.emit(unique_topic, i) for i in range(500)))
    assert len({r.event_id for r in results}) == 500


async def test_pending_calls_fail_when_the_server_goes_away(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "gone"}) as app:
        client = await connect(app.url("gone"))
        assert await client.ping() == "pong"
    with pytest.raises(ConnectionLost):
        await client.ping()
    await client.close()


async def test_auth_token(tmp_path: Path) -> None:
    env = {"BUS_TOKEN": "s3cret"}
    async with start_buses(
        tmp_path, {"id": "locked", "auth_token_env": "BUS_TOKEN"}, env=env
    ) as app:
        anonymous = await connect(app.url("locked"))
        assert await anonymous.ping() == "pong"  # health checks need no token
        with pytest.raises(Unauthorized, match="authenticate"):
            await anonymous.emit("a", 1)
        await anonymous.close()
        with pytest.raises(Unauthorized, match="wrong token"):
            await connect(app.url("locked"), token="nope")
        async with await connect(app.url("locked"), token="s3cret") as bus:
            assert (await bus.emit("a", 1)).event_id == 1


async def test_sync_client_from_a_thread(app: EventBusApp, unique_topic: str) -> None:
    url = app.url("test")

    def script() -> list:
        with connect_sync(url) as bus:
            sub = bus.subscribe(unique_topic)
            first = bus.emit(unique_topic, {"n": 1})
            bus.emit_many([{"topic": unique_topic, "payload": {"n": 2}}])
            got = [sub.next(timeout_s=5).payload, sub.next(timeout_s=5).payload]
            polled = [e.event_id for e in bus.poll(unique_topic).events]
            assert polled[0] == first.event_id
            return got

    assert await asyncio.to_thread(script) == [{"n": 1}, {"n": 2}]


def test_public_api_is_sorted_and_complete() -> None:
    assert eventbus_client.__all__ == sorted(eventbus_client.__all__)
    for name in eventbus_client.__all__:
        assert hasattr(eventbus_client, name), name


async def test_get_event_by_id(client: EventBusClient, unique_topic: str) -> None:
    _, second = await client.emit_many([{"topic": unique_topic, "payload": i} for i in range(2)])
    event = await client.get_event(second)
    assert event is not None and event.event_id == second and event.payload == 1
    assert await client.get_event(second + 10_000) is None
