"""`eventbus mcp` driven by the SDK's own client: the real command spawned over stdio,
and with --http on 127.0.0.1 (an ephemeral port), against a real bus."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning

from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses

EVENTBUS = str(Path(sys.executable).parent / "eventbus")
TOOLS = {
    "emit_event",
    "poll_events",
    "list_topics",
    "wait_for_event",
    "list_rules",
    "register_rule",
    "test_rule",
    "list_firings",
    "consumer_fetch",
    "consumer_ack",
    "consumer_nack",
}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, {"id": "agents", "enable_rules": True}) as running:
        yield running


@pytest.fixture
async def bus(app: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(app.url("agents")) as client:
        yield client


@contextlib.asynccontextmanager
async def http_command(bus_url: str) -> AsyncIterator[str]:
    """`eventbus mcp --http 127.0.0.1:0` in a subprocess; its /mcp URL until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        EVENTBUS, "mcp", "--url", bus_url, "--http", "127.0.0.1:0", stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert " at http://127.0.0.1:" in line, line
        yield line.rsplit(" at ", 1)[1].strip()
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


@contextlib.asynccontextmanager
async def mcp_client(transport: str, bus_url: str, **options: Any) -> AsyncIterator[Client]:
    if transport == "stdio":
        server: Any = StdioServerParameters(command=EVENTBUS, args=["mcp", "--url", bus_url])
        async with Client(server, **options) as client:
            yield client
    else:
        async with http_command(bus_url) as url, Client(url, **options) as client:
            yield client


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_tools_emit_and_a_bus_error_is_an_error_result(
    transport: str, app: EventBusApp, bus: EventBusClient
) -> None:
    async with mcp_client(transport, app.url("agents")) as client:
        tools = (await client.list_tools()).tools
        assert {tool.name for tool in tools} == TOOLS
        for tool in tools:
            assert tool.input_schema["type"] == "object" and tool.description, tool.name
        emit = next(tool for tool in tools if tool.name == "emit_event")
        assert emit.input_schema["required"] == ["topic"]

        emitted = await client.call_tool(
            "emit_event", {"topic": "repo.pushed", "payload": {"repo": "acme/api"}}
        )
        assert not emitted.is_error
        stored = (await bus.poll("repo.pushed")).events
        assert [e.payload for e in stored] == [{"repo": "acme/api"}]
        assert emitted.structured_content == {
            "event_id": stored[0].event_id,
            "timestamp": stored[0].timestamp,
            "duplicate": False,
        }
        assert emitted.content[0].text == f"stored event {stored[0].event_id} on repo.pushed"  # type: ignore[union-attr]

        refused = await client.call_tool("emit_event", {"topic": "_sys.mine"})
        assert refused.is_error
        assert "reserved" in refused.content[0].text and "-32009" in refused.content[0].text  # type: ignore[union-attr]

        # Still up: the next call works.
        polled = await client.call_tool("poll_events", {"topic": "repo.>"})
        assert [e["event_id"] for e in polled.structured_content["events"]] == [stored[0].event_id]  # type: ignore[index]

        # The agent's trace context (_meta.traceparent) goes on with the event (DESIGN §13).
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await client.call_tool(
            "emit_event",
            {"topic": "agent.traced", "metadata": {"k": 1}},
            meta={"traceparent": traceparent},
        )
        (traced,) = (await bus.poll("agent.traced")).events
        assert traced.metadata == {"traceparent": traceparent, "k": 1}


async def test_wait_for_event_gets_what_another_client_emits_or_times_out(
    app: EventBusApp, bus: EventBusClient
) -> None:
    async with mcp_client("stdio", app.url("agents")) as client:
        head = (await bus.emit("jobs.started", {"n": 0})).event_id
        waiting = asyncio.create_task(
            client.call_tool(
                "wait_for_event", {"topic": "jobs.done", "since": head, "timeout_ms": 30_000}
            )
        )
        emitted = await bus.emit("jobs.done", {"n": 1}, source_trn="trn:user:bob:cli:v1")
        result = await waiting
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["timed_out"] is False
        event = result.structured_content["event"]
        assert (event["event_id"], event["payload"], event["source_trn"]) == (
            emitted.event_id,
            {"n": 1},
            "trn:user:bob:cli:v1",
        )

        quiet = await client.call_tool("wait_for_event", {"topic": "jobs.never", "timeout_ms": 200})
        assert quiet.structured_content == {"timed_out": True}
        assert quiet.content[0].text == "no event on jobs.never within 200 ms"  # type: ignore[union-attr]

        too_long = await client.call_tool(
            "wait_for_event", {"topic": "jobs.done", "timeout_ms": 300_001}
        )
        assert too_long.is_error and "timeout_ms" in too_long.content[0].text  # type: ignore[union-attr]


async def test_resources_subscribe_sends_updated_when_the_topic_gets_an_event(
    app: EventBusApp, bus: EventBusClient
) -> None:
    """The 2025 handshake era over HTTP: resources/subscribe, updates on the session's GET stream."""
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updates.put_nowait(message.params.uri)

    uri = "eventbus://agents/topics/deploy.finished"
    async with mcp_client(
        "http", app.url("agents"), mode="legacy", message_handler=on_message
    ) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["eventbus://agents/topics/{topic}"]
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", MCPDeprecationWarning
            )  # removed in the 2026 era, served here
            await client.subscribe_resource(uri)
        await bus.emit("deploy.other", {})
        emitted = await bus.emit("deploy.finished", {"ok": True})
        assert await asyncio.wait_for(updates.get(), 30) == uri

        read = await client.read_resource(uri)
        text = read.contents[0].text  # type: ignore[union-attr]
        assert f'"event_id":{emitted.event_id}' in text and "deploy.other" not in text


async def test_a_listen_stream_gets_updated_when_the_topic_gets_an_event(
    app: EventBusApp, bus: EventBusClient
) -> None:
    """The 2026-07-28 era over stdio: subscriptions/listen."""
    uri = "eventbus://agents/topics/deploy.finished"
    async with (
        mcp_client("stdio", app.url("agents")) as client,
        client.listen(resource_subscriptions=[uri]) as updates,
    ):
        await bus.emit("deploy.finished", {"ok": True})
        async with asyncio.timeout(30):
            event = await anext(aiter(updates))
        assert event.uri == uri  # type: ignore[union-attr]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_consumer_tools_fetch_leases_ack_makes_it_gone_nack_brings_it_back(
    transport: str, app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.create_consumer("agents-work", topic="tasks.>")
    first = (await bus.emit("tasks.review", {"pr": 1})).event_id
    second = (await bus.emit("tasks.review", {"pr": 2})).event_id
    async with mcp_client(transport, app.url("agents")) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        fetch_schema = tools["consumer_fetch"].input_schema
        assert (
            fetch_schema["required"] == ["consumer"]
            and fetch_schema["properties"]["wait_ms"]["maximum"] == 60_000
        )
        assert tools["consumer_nack"].input_schema["required"] == ["consumer", "event_ids"]

        fetched = await client.call_tool("consumer_fetch", {"consumer": "agents-work", "max": 1})
        assert not fetched.is_error and fetched.structured_content is not None
        [message] = fetched.structured_content["messages"]
        assert (
            message["event"]["event_id"],
            message["event"]["payload"],
            message["deliveries"],
        ) == (first, {"pr": 1}, 1)
        assert fetched.content[0].text.startswith(
            f"leased 1 message of consumer agents-work (event id {first}) until "
        )  # type: ignore[union-attr]
        assert (await bus.get_consumer("agents-work"))["stats"][
            "ack_pending"
        ] == 1  # leased, to this agent alone

        acked = await client.call_tool(
            "consumer_ack", {"consumer": "agents-work", "event_ids": [first]}
        )
        assert acked.structured_content == {"count": 1}
        assert (
            acked.content[0].text
            == "acked 1 of 1 event of consumer agents-work: never delivered again"
        )  # type: ignore[union-attr]
        again = await client.call_tool(
            "consumer_ack", {"consumer": "agents-work", "event_ids": [first]}
        )
        assert again.structured_content == {"count": 0} and "not leased" in again.content[0].text  # type: ignore[union-attr]

        # Gone: the next fetch is the second event, never the first again.
        fetched = await client.call_tool("consumer_fetch", {"consumer": "agents-work", "max": 10})
        assert [m["event"]["event_id"] for m in fetched.structured_content["messages"]] == [second]  # type: ignore[index]

        nacked = await client.call_tool(
            "consumer_nack", {"consumer": "agents-work", "event_ids": [second], "delay_ms": 0}
        )
        assert (
            nacked.structured_content == {"count": 1}
            and "due again in 0 ms" in nacked.content[0].text
        )  # type: ignore[union-attr]
        back = await client.call_tool(
            "consumer_fetch", {"consumer": "agents-work", "max": 10, "wait_ms": 5_000}
        )
        [message] = back.structured_content["messages"]  # type: ignore[index]
        assert (message["event"]["event_id"], message["deliveries"]) == (
            second,
            2,
        )  # brought back, a second delivery
        await client.call_tool("consumer_ack", {"consumer": "agents-work", "event_ids": [second]})

        quiet = await client.call_tool(
            "consumer_fetch", {"consumer": "agents-work", "wait_ms": 100}
        )
        assert quiet.structured_content == {"messages": []}
        assert quiet.content[0].text == "no message for consumer agents-work within 100 ms"  # type: ignore[union-attr]
        stats = (await bus.get_consumer("agents-work"))["stats"]
        assert (stats["acked"], stats["ack_pending"], stats["redelivered"]) == (2, 0, 1)

        unknown = await client.call_tool("consumer_fetch", {"consumer": "nobody"})
        assert unknown.is_error and "-32002" in unknown.content[0].text  # type: ignore[union-attr]
        too_long = await client.call_tool(
            "consumer_fetch", {"consumer": "agents-work", "wait_ms": 60_001}
        )
        assert too_long.is_error and "wait_ms" in too_long.content[0].text  # type: ignore[union-attr]


async def test_consumer_fetch_waits_for_an_event_another_client_emits(
    app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.create_consumer("agents-work", topic="tasks.>")
    async with mcp_client("stdio", app.url("agents")) as client:
        waiting = asyncio.create_task(
            client.call_tool("consumer_fetch", {"consumer": "agents-work", "wait_ms": 30_000})
        )
        emitted = await bus.emit("tasks.deploy", {"env": "prod"})
        fetched = await waiting
        assert [m["event"]["event_id"] for m in fetched.structured_content["messages"]] == [
            emitted.event_id
        ]  # type: ignore[index]
