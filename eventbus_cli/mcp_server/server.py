"""`eventbus mcp`: the bus as an MCP server, an adapter over the client (DESIGN §12).

    agent ─ MCP (stdio | Streamable HTTP /mcp) ─▶ McpAdapter ─ EventBusClient ─▶ bus (any, local or remote)
            tools/call      → TOOLS (one bus method each; wait_for_event: a subscription for one event)
            resources/*     → TopicResources (list_topics, poll_events; watches are subscriptions)

Built on the SDK's low-level `Server`, which serves both protocol eras: the
2025 handshake era (`resources/subscribe` → `notifications/resources/updated`
on the session) and the 2026-07-28 era (`subscriptions/listen` streams). A bus
error is an `isError` result carrying the bus's message; the server stays up.

Limits (hostile by default), per session (an MCP connection of the handshake
era; requests of the 2026 era carry no session, so they share one):
`max_waits` concurrent calls that wait (`wait_for_event`, `consumer_fetch`),
`max_subscriptions` watched resources, each wait at most `MAX_WAIT_MS` (a
fetch: the bus's 60 s), each result at most `max_reply_bytes` (lists are cut
to fit). Over HTTP, at most `max_sessions` sessions at once. Trace context
(§13): an `emit_event` call whose `_meta` carries a W3C `traceparent` emits
the event with it in `metadata.traceparent` (unless the arguments set one),
so the agent's trace goes on through the rules and tools the event wakes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mcp_types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from eventbus_cli.mcp_server.resources import TopicResources, pump
from eventbus_cli.mcp_server.tools import TOOLS
from eventbus_client import EventBusClient
from eventbus_core.errors import EventBusError
from eventbus_core.locations import format_loc, plain_message

__all__ = ["McpAdapter", "McpLimits"]

log = logging.getLogger("eventbus.mcp")

T = TypeVar("T")

#: The bus's own code for "overloaded": a session over one of its limits.
OVERLOADED = -32005
#: Where an adapter keeps a handshake-era connection's state (`Connection.state`).
STATE_KEY = "eventbus"


@dataclass(frozen=True, slots=True)
class McpLimits:
    max_waits: int = 16
    max_subscriptions: int = 64
    max_reply_bytes: int = 1_048_576
    latest_events: int = 20
    max_sessions: int = 256


@dataclass(slots=True)
class SessionState:
    """What one session holds: its waits in progress and its watched resources."""

    waits: int = 0
    listening: int = 0
    watches: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def subscriptions(self) -> int:
        return len(self.watches) + self.listening

    async def aclose(self) -> None:
        watches, self.watches = list(self.watches.values()), {}
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)


class McpAdapter:
    """The MCP server of one bus; `server` is the SDK's, ready to run on any transport."""

    def __init__(
        self, client: EventBusClient, bus_id: str, *, limits: McpLimits | None = None
    ) -> None:
        self.client = client
        self.bus_id = bus_id
        self.limits = limits or McpLimits()
        self.resources = TopicResources(
            client,
            bus_id,
            latest_events=self.limits.latest_events,
            max_reply_bytes=self.limits.max_reply_bytes,
        )
        #: The one state of requests that belong to no session (the 2026 era's).
        self.sessionless = SessionState()
        self.server: Server[Any] = Server(
            "eventbus",
            version="0.1.0",
            title=f"eventbus bus {bus_id}",
            instructions=(
                f"Bus {bus_id}: emit events, read them, wait for one with wait_for_event (instead of polling), "
                "take work from a durable consumer (consumer_fetch, then consumer_ack or consumer_nack each message), "
                "and register rules that call tools when events match. Topics are resources you can subscribe to."
            ),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_resource_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_subscriptions_listen=self._listen,
        )

    async def aclose(self) -> None:
        await self.sessionless.aclose()

    # -- sessions --------------------------------------------------------------

    def _state(self, ctx: ServerRequestContext[Any, Any]) -> SessionState:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return self.sessionless
        connection = _connection(ctx)
        if connection is None:
            return self.sessionless
        state = connection.state.get(STATE_KEY)
        if not isinstance(state, SessionState):
            state = connection.state[STATE_KEY] = SessionState()
            connection.exit_stack.push_async_callback(
                state.aclose
            )  # the session ends: its watches end
        return state

    # -- tools -----------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        tools = [
            mcp_types.Tool(name=t.name, description=t.description, input_schema=t.input_schema())
            for t in TOOLS.values()
        ]
        return mcp_types.ListToolsResult(tools=tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            raise MCPError(
                mcp_types.INVALID_PARAMS,
                f"unknown tool {params.name!r} (tools: {', '.join(TOOLS)})",
            )
        state = self._state(ctx)
        waits = tool.waits
        if waits and state.waits >= self.limits.max_waits:
            return _error(
                f"this session already waits in {state.waits} calls of wait_for_event and consumer_fetch (the limit); "
                "wait for one to end"
            )
        state.waits += waits
        arguments = dict(params.arguments or {})
        if tool.name == "emit_event":
            arguments = _with_trace_context(arguments, params.meta)
        try:
            reply = await tool.run(self.client, arguments, self.limits.max_reply_bytes)
        except EventBusError as exc:
            return _error(f"{exc.message} (code {exc.code})" if exc.code else exc.message)
        except ValidationError as exc:
            problems = "; ".join(
                f"{format_loc(e['loc'])}: {plain_message(e)}" for e in exc.errors(include_url=False)
            )
            return _error(f"invalid arguments for {tool.name}: {problems}")
        finally:
            state.waits -= waits
        text = mcp_types.TextContent(type="text", text=reply.summary)
        return mcp_types.CallToolResult(content=[text], structured_content=reply.result)

    # -- resources -------------------------------------------------------------

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourcesResult:
        return await _bus_call(self.resources.list())

    async def _list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourceTemplatesResult:
        return self.resources.templates()

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.ReadResourceRequestParams
    ) -> mcp_types.ReadResourceResult:
        return await _bus_call(self.resources.read(params.uri))

    def _room_for(self, state: SessionState, more: int) -> None:
        if state.subscriptions + more > self.limits.max_subscriptions:
            raise MCPError(
                OVERLOADED,
                f"this session watches {state.subscriptions} resources; at most {self.limits.max_subscriptions}",
            )

    async def _subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        """resources/subscribe (2025 era): updates go to the session's standalone stream."""
        state, uri, session = self._state(ctx), params.uri, ctx.session
        self.resources.topic_of(uri)  # an unknown resource is -32602 before anything else
        if uri in state.watches:
            return mcp_types.EmptyResult()
        self._room_for(state, 1)
        subscription = await _bus_call(self.resources.subscribe(uri))
        state.watches[uri] = asyncio.create_task(
            pump(subscription, lambda: session.send_resource_updated(uri))
        )
        return mcp_types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        task = self._state(ctx).watches.pop(params.uri, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return mcp_types.EmptyResult()

    async def _listen(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: mcp_types.SubscriptionsListenRequestParams,
    ) -> mcp_types.SubscriptionsListenResult:
        """subscriptions/listen (2026 era): this stream's resources, watched while it is open.

        The SDK's ListenHandler acknowledges, stamps and forwards; its bus is this
        stream's own, fed by the stream's bus subscriptions."""
        state = self._state(ctx)
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        for uri in uris:
            self.resources.topic_of(uri)
        self._room_for(state, len(uris))
        updates = InMemorySubscriptionBus()
        pumps: list[asyncio.Task[None]] = []
        state.listening += len(uris)
        try:
            for uri in uris:
                subscription = await _bus_call(self.resources.subscribe(uri))
                pumps.append(asyncio.create_task(pump(subscription, _publisher(updates, uri))))
            return await ListenHandler(updates, max_subscriptions=1)(ctx, params)
        finally:
            state.listening -= len(uris)
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


def _with_trace_context(arguments: dict[str, Any], meta: Any) -> dict[str, Any]:
    """`_meta.traceparent` of the call into the event's metadata, where the bus propagates it."""
    traceparent = meta.get("traceparent") if isinstance(meta, dict) else None
    metadata = arguments.get("metadata")
    if not isinstance(traceparent, str) or (
        metadata is not None and not isinstance(metadata, dict)
    ):
        return arguments
    return {**arguments, "metadata": {"traceparent": traceparent, **(metadata or {})}}


def _publisher(updates: InMemorySubscriptionBus, uri: str) -> Any:
    async def publish() -> None:
        await updates.publish(ResourceUpdated(uri=uri))

    return publish


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
    """The session's connection: the handler context does not expose it yet (the SDK's
    Context rework, its TODO(L54)); its `ServerSession` holds it."""
    connection = getattr(ctx.session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


async def _bus_call(call: Awaitable[T]) -> T:
    """A bus call made for a protocol request: a bus error becomes the request's error."""
    try:
        return await call
    except EventBusError as exc:
        raise MCPError(exc.code or mcp_types.INTERNAL_ERROR, exc.message) from None


def _error(message: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=message)], is_error=True
    )
