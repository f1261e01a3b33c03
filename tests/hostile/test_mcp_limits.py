"""What an agent that overdoes it gets from `eventbus mcp`: documented limits and
errors, never an unbounded wait, watch list or reply (docs/mcp.md#limits). The
adapter is served in-process to the SDK's client, against a real bus."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from eventbus_cli.mcp_server import McpAdapter, McpLimits
from eventbus_client import EventBusClient, connect
from tests.conftest import start_buses


@contextlib.asynccontextmanager
async def adapter_client(
    tmp_path: Path, limits: McpLimits, *, mode: str = "auto"
) -> AsyncIterator[tuple[Client, EventBusClient]]:
    async with (
        start_buses(tmp_path, {"id": "agents"}) as app,
        await connect(app.url("agents")) as bus,
    ):
        adapter = McpAdapter(bus, "agents", limits=limits)
        try:
            async with Client(adapter.server, mode=mode) as client:
                yield client, bus
        finally:
            await adapter.aclose()


async def test_concurrent_waits_past_the_limit_are_refused(tmp_path: Path) -> None:
    async with adapter_client(tmp_path, McpLimits(max_waits=1)) as (client, bus):
        first = asyncio.create_task(
            client.call_tool("wait_for_event", {"topic": "never", "timeout_ms": 300_000})
        )
        # The first wait holds the session's only place once its subscription is open.
        while not (await bus.bus_info())["stats"]["subscriptions"]:
            await asyncio.sleep(0.01)
        second = await client.call_tool("wait_for_event", {"topic": "never", "timeout_ms": 10})
        assert second.is_error and "the limit" in second.content[0].text  # type: ignore[union-attr]
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first


async def test_watches_past_the_limit_are_refused(tmp_path: Path) -> None:
    async with adapter_client(tmp_path, McpLimits(max_subscriptions=1), mode="legacy") as (
        client,
        _,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource("eventbus://agents/topics/a")
            await client.subscribe_resource(
                "eventbus://agents/topics/a"
            )  # the same one again: no new place
            with pytest.raises(MCPError) as refused:
                await client.subscribe_resource("eventbus://agents/topics/b")
            with pytest.raises(MCPError) as unknown:
                await client.subscribe_resource("eventbus://other-bus/topics/a")
    assert refused.value.code == -32005 and "at most 1" in str(refused.value)
    assert unknown.value.code == -32602 and "unknown resource" in str(unknown.value)


async def test_a_listen_stream_over_the_limit_is_refused(tmp_path: Path) -> None:
    async with adapter_client(tmp_path, McpLimits(max_subscriptions=1)) as (client, _):
        uris = ["eventbus://agents/topics/a", "eventbus://agents/topics/b"]
        with pytest.raises(MCPError) as refused:
            async with client.listen(resource_subscriptions=uris):
                pass
    assert refused.value.code == -32005


async def test_a_reply_past_max_reply_bytes_is_cut_and_its_cursor_moved(tmp_path: Path) -> None:
    async with adapter_client(tmp_path, McpLimits(max_reply_bytes=2_000)) as (client, bus):
        ids = await bus.emit_many([{"topic": "big", "payload": "x" * 300} for _ in range(20)])
        polled = await client.call_tool("poll_events", {"topic": "big", "limit": 20})
        result = polled.structured_content
        assert result is not None and result["truncated"] is True
        kept = [e["event_id"] for e in result["events"]]
        assert 1 <= len(kept) < 20 and kept == ids[: len(kept)]
        assert result["next_since"] == kept[-1]  # the next poll continues where this one stopped
        assert "cut to fit" in polled.content[0].text  # type: ignore[union-attr]


async def test_a_fetch_past_max_reply_bytes_hands_back_what_it_cannot_pass_on(
    tmp_path: Path,
) -> None:
    async with adapter_client(tmp_path, McpLimits(max_reply_bytes=2_000)) as (client, bus):
        await bus.create_consumer("work", topic="big")
        ids = await bus.emit_many([{"topic": "big", "payload": "x" * 300} for _ in range(20)])
        fetched = await client.call_tool("consumer_fetch", {"consumer": "work", "max": 20})
        result = fetched.structured_content
        assert result is not None and result["truncated"] is True
        kept = [m["event"]["event_id"] for m in result["messages"]]
        assert 1 <= len(kept) < 20 and kept == ids[: len(kept)]
        assert f"{20 - len(kept)} more handed back" in fetched.content[0].text  # type: ignore[union-attr]
        # The rest is due again at once, not after its lease: another worker gets it now.
        rest = await bus.fetch("work", max=20)
        assert [m.event_id for m in rest] == ids[len(kept) :]
        assert (await bus.get_consumer("work"))["stats"]["ack_pending"] == 20


async def test_a_waiting_fetch_counts_among_the_concurrent_waits(tmp_path: Path) -> None:
    async with (
        start_buses(tmp_path, {"id": "agents"}) as app,
        await connect(app.url("agents")) as bus,
    ):
        await bus.create_consumer("idle", topic="quiet")
        adapter = McpAdapter(bus, "agents", limits=McpLimits(max_waits=1))
        try:
            async with Client(adapter.server) as client:
                first = asyncio.create_task(
                    client.call_tool("consumer_fetch", {"consumer": "idle", "wait_ms": 60_000})
                )
                while not adapter.sessionless.waits:  # the first fetch holds the only place
                    await asyncio.sleep(0.01)
                second = await client.call_tool(
                    "wait_for_event", {"topic": "quiet", "timeout_ms": 10}
                )
                assert second.is_error and "the limit" in second.content[0].text  # type: ignore[union-attr]
                third = await client.call_tool(
                    "consumer_ack", {"consumer": "idle", "event_ids": [1]}
                )
                assert not third.is_error  # what does not wait is not counted
                emitted = await bus.emit("quiet", 1)  # the waiting fetch gets it and ends
                fetched = (await first).structured_content
                assert fetched is not None and [
                    m["event"]["event_id"] for m in fetched["messages"]
                ] == [emitted.event_id]
        finally:
            await adapter.aclose()


async def test_a_fetch_the_agent_gives_up_on_hands_back_what_it_leases_after_all(
    tmp_path: Path,
) -> None:
    async with (
        start_buses(tmp_path, {"id": "agents"}) as app,
        await connect(app.url("agents")) as bus,
    ):
        await bus.create_consumer("idle", topic="quiet")  # leases of 30 s
        adapter = McpAdapter(bus, "agents")
        try:
            async with Client(adapter.server) as client:
                first = asyncio.create_task(
                    client.call_tool("consumer_fetch", {"consumer": "idle", "wait_ms": 60_000})
                )
                while not adapter.sessionless.waits:
                    await asyncio.sleep(0.01)
                first.cancel()  # the client cancels the call; the bus's fetch still waits
                with contextlib.suppress(asyncio.CancelledError):
                    await first
                emitted = await bus.emit("quiet", 1)
                # Leased by the abandoned fetch, and handed back at once: not 30 s later.
                [message] = await bus.fetch("idle", wait_ms=10_000)
                assert (message.event_id, message.deliveries) == (emitted.event_id, 2)
        finally:
            await adapter.aclose()
