"""`mcp` tool routes: rules call the tools of MCP servers (DESIGN §12).

    firing ─▶ McpTools.call ─▶ McpSession (one per route) ─▶ tools/call name(arguments, _meta)
                                   │ started on first use, shared by every firing,
                                   │ started again on the next use after it ended
                                   ▼
               stdio: StdioServer (mcp_stdio)   |   Streamable HTTP: the SDK's client at `url`

A session is owned by one task (the SDK's client lives in anyio task groups,
entered and left by the same task); firings only borrow it. It ends when the
stdio server exits, when a call on it times out or loses the connection (a
server that does not answer in time may be hung), or at shutdown, which stops
the stdio process. Setting it up (start, handshake) is bounded by the route's
`timeout_ms`, like a call.

The tool name is the route's `tool`, else the TRN's last segment, or the one
before it when the last is a version (`trn:org:acme:mcp:github:get_repo:v1` →
`get_repo`). Arguments are the rendered `input` (an object; none is `{}`), and
`_meta` carries `{firing_id, event_id, rule_id}` and the firing's `traceparent`
(DESIGN §13). The result is `structuredContent`, else the
`content` list; `isError` is a failure whose text is the error, retried and
dead-lettered like any tool's.

Replies are bounded: the result kept is at most `max_reply_bytes`; the message
carrying it at most `wire_limit(max_reply_bytes)` (a server sends the result
twice, as structuredContent and as its text), past which a stdio server's
connection is closed and an HTTP reply refused.

At `register_rule` (`check`), when the server answers within the route's
timeout, the tool must be in `tools/list` and the input's literal parts must
satisfy its `inputSchema` (values that are templates are only known when the
rule fires); else -32602 naming the tool or the field. A server that cannot be
reached leaves the rule registered; its firings then say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import httpx2
import jsonschema
import mcp_types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from referencing.exceptions import Unresolvable

from eventbus_core.codec import dumps, loads
from eventbus_core.config import ToolRoute
from eventbus_core.errors import InvalidParams
from eventbus_server.rules.lang.templates import placeholders
from eventbus_server.rules.tools.mcp_stdio import StdioServer

__all__ = ["McpReplyTooLarge", "McpToolFailed", "McpTools", "tool_name", "wire_limit"]

log = logging.getLogger("eventbus.mcp")

#: A TRN segment that is a version: `v1`, `v2.1`, `V10`.
_VERSION_RE = re.compile(r"[vV]\d+(\.\d+)*")
#: tools/list pages read at most, so a server that paginates forever cannot hang a check.
MAX_TOOL_PAGES = 20
#: Who the bus says it is in the MCP handshake.
CLIENT_INFO = mcp_types.Implementation(name="eventbus", version="0.1.0")
#: How many tool names an "unknown tool" error lists.
LISTED_TOOLS = 20
#: Schema errors whose place is the object itself, never a value inside it: they hold
#: whatever its values are, so templates do not hide them.
_KEY_VALIDATORS = frozenset(
    {
        "required",
        "additionalProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
    }
)


class McpToolFailed(Exception):
    """An MCP call failed; the message says why (the router adds tool and route)."""


class McpReplyTooLarge(McpToolFailed):
    def __init__(self, limit: int) -> None:
        super().__init__(f"reply larger than max_tool_reply_bytes ({limit} bytes)")


def tool_name(route: ToolRoute, tool_id: str) -> str:
    """The MCP tool a TRN names through this route (see the module docstring)."""
    if route.tool:
        return route.tool
    segments = tool_id.partition("@")[0].split(":")
    if len(segments) > 2 and _VERSION_RE.fullmatch(segments[-1]):
        return segments[-2]
    return segments[-1]


def wire_limit(max_reply_bytes: int) -> int:
    """The largest message accepted from an MCP server: the result twice, and room for the envelope."""
    return 2 * max_reply_bytes + 65_536


def describe_mcp(route: ToolRoute) -> str:
    """`mcp stdio python server.py` or `mcp http://…/mcp`, for errors and logs."""
    if route.command:
        return "mcp stdio " + " ".join(route.command)[:120]
    return f"mcp {route.url}"


class McpSession:
    """The one session of a route; see the module docstring for its life."""

    def __init__(self, route: ToolRoute, *, max_reply_bytes: int) -> None:
        self.route = route
        self.max_reply_bytes = max_reply_bytes
        self.name = describe_mcp(route)
        self.stdio: StdioServer | None = None
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[Client] | None = None
        self._end = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def setup_timeout_s(self) -> float:
        return self.route.timeout_ms / 1000

    async def client(self) -> tuple[Client, asyncio.Event]:
        """The live session's client and the event that ends it, starting one if there is none."""
        async with self._lock:  # one start at a time: a second would be a second server
            if self._ready is None or self._ended():
                await self._retire()
                self._end = asyncio.Event()
                self._ready = asyncio.get_running_loop().create_future()
                self._owner = asyncio.create_task(
                    self._run(self._ready, self._end), name=f"mcp {self.name}"
                )
            ready, end = self._ready, self._end
        # shield: a firing that gives up waiting must not cancel the start others wait for.
        return await asyncio.shield(ready), end

    def _ended(self) -> bool:
        if self._owner is not None and self._owner.done():
            return True
        return self.stdio is not None and self.stdio.closed.is_set()

    async def aclose(self) -> None:
        await self._retire()

    async def _retire(self) -> None:
        owner, self._owner = self._owner, None
        self.stdio = None
        if owner is not None:
            self._end.set()
            with contextlib.suppress(asyncio.CancelledError):
                await owner  # it stops the server and closes the session itself
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()

    async def _run(self, ready: asyncio.Future[Client], end: asyncio.Event) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self.setup_timeout_s):
                    client = Client(
                        self._transport(), mode="auto", cache=None, client_info=CLIENT_INFO
                    )
                    await stack.enter_async_context(client)
                ready.set_result(client)
                await self._wait_end(end)
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(McpToolFailed("the session was closed while it started"))
            raise
        except TimeoutError:
            self._failed(
                ready, f"no session within {self.route.timeout_ms} ms (timeout_ms of the route)"
            )
        except (
            Exception
        ) as exc:  # the SDK raises more kinds than it documents; none may kill the bus
            # anyio's task groups wrap what failed inside: the first leaf says why.
            cause = _first_leaf(exc)
            if not isinstance(cause, EXPECTED):
                log.error("mcp server %s: the session failed unexpectedly", self.name, exc_info=exc)
            self._failed(ready, _reason(cause))

    def _failed(self, ready: asyncio.Future[Client], reason: str) -> None:
        stdio = self.stdio
        if stdio is not None and stdio.closed.is_set():
            code = f" with code {stdio.exit_code}" if stdio.exit_code is not None else ""
            reason = f"the server exited{code} (its stderr is in the bus log): {reason}"
        if ready.done():
            log.info("mcp server %s: session ended: %s", self.name, reason)
        else:
            ready.set_exception(McpToolFailed(f"cannot start a session: {reason}"))

    async def _wait_end(self, end: asyncio.Event) -> None:
        if self.stdio is None:
            await end.wait()
            return
        ending = asyncio.ensure_future(end.wait())
        closed = asyncio.ensure_future(self.stdio.closed.wait())
        try:
            await asyncio.wait({ending, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (ending, closed):
                waiter.cancel()
            await asyncio.gather(ending, closed, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        limit = wire_limit(self.max_reply_bytes)
        if self.route.command:
            self.stdio = StdioServer(
                self.route.command, env=self.route.env, max_line_bytes=limit, name=self.name
            )
            async with self.stdio.connect() as pipes:
                yield pipes
            return
        assert self.route.url is not None

        async def refuse_large(response: httpx2.Response) -> None:
            length = response.headers.get("content-length", "")
            if length.strip().isdigit() and int(length) > limit:
                raise McpReplyTooLarge(self.max_reply_bytes)

        http = httpx2.AsyncClient(
            headers=self.route.headers,
            timeout=httpx2.Timeout(self.setup_timeout_s, read=None),  # calls have their own timeout
            trust_env=False,  # the config alone says where a tool lives
            event_hooks={"response": [refuse_large]},
        )
        async with (
            http,
            streamable_http_client(
                self.route.url, http_client=http, max_sse_event_size=limit
            ) as streams,
        ):
            yield streams


class McpTools:
    """The sessions of a router's `mcp` routes; `call` for firings, `check` for register_rule."""

    def __init__(self, *, max_reply_bytes: int) -> None:
        self.max_reply_bytes = max_reply_bytes
        self._sessions: dict[int, McpSession] = {}

    def session(self, route: ToolRoute) -> McpSession:
        session = self._sessions.get(id(route))
        if session is None:
            session = self._sessions[id(route)] = McpSession(
                route, max_reply_bytes=self.max_reply_bytes
            )
        return session

    async def call(
        self, route: ToolRoute, *, tool_id: str, arguments: Any, meta: dict[str, Any]
    ) -> Any:
        """Call the route's tool for a firing; its result (see the module docstring)."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise McpToolFailed(
                f"the rendered input must be an object (MCP tool arguments), not {_json_type(arguments)}"
            )
        session = self.session(route)
        client, end = await session.client()
        stdio = session.stdio
        try:
            result = await client.call_tool(tool_name(route, tool_id), arguments, meta=meta)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            end.set()  # timed out (or shutting down): the server may be hung; the next call starts another
            raise
        except MCPError as exc:
            if exc.code != mcp_types.CONNECTION_CLOSED:
                raise McpToolFailed(f"error {exc.code}: {exc}") from None
            end.set()
            if stdio is not None and stdio.too_large:
                raise McpReplyTooLarge(self.max_reply_bytes) from None
            raise McpToolFailed("the server closed the connection") from None
        except McpReplyTooLarge:
            end.set()
            raise
        except (
            OSError,
            ValidationError,
            httpx2.HTTPError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ) as exc:
            end.set()
            raise McpToolFailed(_reason(exc)) from exc
        return self._result(result)

    def _result(self, result: mcp_types.CallToolResult) -> Any:
        if result.is_error:
            text = " ".join(
                block.text for block in result.content if isinstance(block, mcp_types.TextContent)
            )
            raise McpToolFailed(f"the tool answered isError: {text.strip()[:500] or '(no text)'}")
        if result.structured_content is not None:
            value = result.structured_content
        else:
            value = [
                block.model_dump(mode="json", by_alias=True, exclude_none=True)
                for block in result.content
            ]
        encoded = dumps(value)
        if len(encoded) > self.max_reply_bytes:
            raise McpReplyTooLarge(self.max_reply_bytes)
        return loads(encoded)

    async def check(self, route: ToolRoute, *, rule_id: str, tool_id: str, template: Any) -> None:
        """At register_rule: -32602 when the tool is missing or the literal input breaks its schema."""
        where = f"invalid rule {rule_id!r}: action.input"
        if template is not None and not isinstance(template, dict) and not _is_template(template):
            msg = f"must be an object (the MCP tool's arguments), not {_json_type(template)}"
            raise InvalidParams(f"{where} {msg}", [{"loc": "action.input", "msg": msg}])
        name = tool_name(route, tool_id)
        session = self.session(route)
        try:
            async with asyncio.timeout(session.setup_timeout_s):
                client, _ = await session.client()
                tools = await _list_tools(client)
        except (
            TimeoutError,
            McpToolFailed,
            MCPError,
            ValidationError,
            OSError,
            httpx2.HTTPError,
        ) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else _reason(exc)
            log.warning(
                "rule=%s: MCP server %s not reachable (%s); registered without checking tool %s",
                rule_id,
                session.name,
                reason,
                name,
            )
            return
        tool = next((t for t in tools if t.name == name), None)
        if tool is None:
            offered = ", ".join(sorted(t.name for t in tools)[:LISTED_TOOLS]) or "none"
            msg = f"MCP tool {name!r} is not offered by {session.name} (its tools: {offered})"
            raise InvalidParams(
                f"invalid rule {rule_id!r}: action.tool_id: {msg}",
                [{"loc": "action.tool_id", "msg": msg}],
            )
        if isinstance(template, dict):
            # In a thread: the schema is the server's, and its regexes are not ours to trust.
            problems = await asyncio.to_thread(schema_problems, tool.input_schema, template)
            if problems:
                loc, msg = problems[0]
                raise InvalidParams(
                    f"{where}{loc.removeprefix('action.input')}: {msg} (inputSchema of MCP tool {name!r})",
                    [{"loc": loc, "msg": msg} for loc, msg in problems],
                )

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.aclose() for session in sessions))


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def schema_problems(schema: dict[str, Any], value: dict[str, Any]) -> list[tuple[str, str]]:
    """`(loc, msg)` for each way the literal parts of `value` break `schema` (templates skipped)."""
    try:
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        validator_class.check_schema(schema)
        errors = list(validator_class(schema).iter_errors(value))
    except (jsonschema.SchemaError, Unresolvable) as exc:
        log.warning(
            "an MCP tool's inputSchema cannot be used (%s); its input is not checked",
            str(exc).splitlines()[0],
        )
        return []
    templated = _templated_paths(value, ())
    problems = []
    for error in errors:
        path = tuple(error.absolute_path)
        if error.validator not in _KEY_VALIDATORS and any(
            _related(path, spot) for spot in templated
        ):
            continue  # the value is only known when the rule fires
        problems.append(("action.input" + "".join(_loc_part(part) for part in path), error.message))
    return problems


def _templated_paths(value: Any, path: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path] if placeholders(value) else []
    items: Sequence[tuple[Any, Any]] = ()
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    return [spot for key, item in items for spot in _templated_paths(item, (*path, key))]


def _related(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """One path lies inside the other (or they are the same)."""
    return a[: len(b)] == b or b[: len(a)] == a


def _loc_part(part: Any) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and bool(placeholders(value))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__


#: What a session that ends badly usually raises; anything else is logged with its traceback.
EXPECTED = (
    OSError,
    MCPError,
    ValidationError,
    httpx2.HTTPError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups; `exc` itself if it is none."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return f"error {exc.code}: {exc}"
    if isinstance(exc, ConnectionRefusedError) or "connection refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return f"cannot run {exc.filename or 'the command'}: not found"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
