"""Tool invokers: how a rule's `InvokeTool` action reaches a tool (DESIGN.md §6).

The bus's `tools` routes map TRN patterns to one of five invokers; the first
route whose `match` fits the tool's TRN wins. The first four send the same
body, `{tool_id, input, event, firing_id}`, and return the tool's JSON result:

- `http`     POST the body as JSON to `url` (one pooled httpx client);
- `jsonrpc`  one JSON-RPC 2.0 request line to `tcp://host:port`, one reply line;
- `command`  run `argv` (never a shell), body on stdin, JSON result on stdout;
- `python`   call `module:function` (sync ones in a thread of the router's own
             pool); the module is imported with the config file's folder
             (`import_dir`) on the import path.

An `http` route with `"format": "cloudevents"` posts the event as a structured
CloudEvent instead (DESIGN §14; the extensions `firingid` and `ruleid` say
which firing, stable across retries).

Trace context (DESIGN §13): when the event carries a `traceparent` (or spans
are on), the call carries a child of it: the `traceparent` header (http),
`_meta.traceparent` in the body (jsonrpc, python) or the MCP call's `_meta`
(mcp), the `TRACEPARENT` environment variable (command).

The fifth, `mcp`, calls a tool of an MCP server with the input as its arguments
(`mcp_tools`, DESIGN §12); its module, and the SDK, load only when a route needs it.

A reply is at most `max_reply_bytes` (the bus's `max_tool_reply_bytes`): the
HTTP body, the JSON-RPC reply line, the command's stdout, the python result
encoded as JSON. Replies are read in chunks and refused as soon as they pass
the limit, so a tool that answers 100 MB costs the bus about the limit, never
the 100 MB; a command is killed at that point.

Errors::

    ToolError              the call failed (retryable: the engine tries again)
     ├── ToolTimeout       the call took longer than its timeout
     └── ToolReplyTooLarge the reply passed max_reply_bytes
    NoToolRoute            no route matches the TRN (not retryable: a config problem)
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from eventbus_core import jsonrpc
from eventbus_core.cloudevents import STRUCTURED_CONTENT_TYPE, to_cloudevent
from eventbus_core.codec import (
    MAX_NESTING,
    DecodeError,
    LineFramer,
    deeper_than,
    dumps,
    dumps_line,
    loads,
)
from eventbus_core.config import ToolRoute, split_listen
from eventbus_core.trn import compile_trn_pattern
from eventbus_server import tracing

if TYPE_CHECKING:
    from eventbus_core.rules import InvokeTool
    from eventbus_server.rules.tools.mcp import McpTools

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "NoToolRoute",
    "ToolCall",
    "ToolError",
    "ToolReplyTooLarge",
    "ToolRouter",
    "ToolTimeout",
]

#: The bus's `max_tool_reply_bytes` default: the largest reply a tool may send.
DEFAULT_MAX_REPLY_BYTES = 1_048_576
#: How much of a failing tool's reply or stderr goes into the error message.
SNIPPET_CHARS = 200
STDERR_TAIL_CHARS = 500
#: stderr kept while a command runs: its tail, enough for STDERR_TAIL_CHARS characters.
STDERR_TAIL_BYTES = 4 * STDERR_TAIL_CHARS
#: Of a non-2xx HTTP body only a snippet is shown, so only this much is read.
ERROR_BODY_BYTES = 4096
#: Bytes asked of a pipe or socket per read.
READ_CHUNK_BYTES = 65_536
#: The JSON-RPC method called when a `jsonrpc` route names none.
DEFAULT_RPC_METHOD = "call_tool"


class ToolError(Exception):
    """A tool call failed; the message says which tool, which route kind, and why."""

    def __init__(self, message: str, *, tool_id: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.tool_id = tool_id
        self.kind = kind


class ToolTimeout(ToolError):
    """The call took longer than its timeout."""


class ToolReplyTooLarge(ToolError):
    """The tool's reply passed the router's `max_reply_bytes`; it was not kept."""


class NoToolRoute(Exception):
    """No configured route matches the tool's TRN."""


class _Failed(Exception):
    """Raised inside an invoker with just the reason; `invoke` adds tool and route."""


class _TooLarge(_Failed):
    """Raised inside an invoker when the reply passed the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"reply larger than max_tool_reply_bytes ({limit} bytes)")


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool_id: str
    input: Any
    event: dict[str, Any]
    #: Stable across retries, so a tool can deduplicate.
    firing_id: int
    #: Not in the body; an `mcp` call carries it in `_meta`.
    rule_id: str = ""

    def body(self, traceparent: str | None = None) -> dict[str, Any]:
        body = {
            "tool_id": self.tool_id,
            "input": self.input,
            "event": self.event,
            "firing_id": self.firing_id,
        }
        if traceparent is not None:
            body["_meta"] = {"traceparent": traceparent}
        return body


def describe(route: ToolRoute) -> str:
    """`http http://…`, `jsonrpc tcp://… method`, `command argv0`, `python mod:fn`."""
    if route.kind == "jsonrpc":
        return f"jsonrpc {route.url} {route.method or DEFAULT_RPC_METHOD}"
    if route.kind == "command":
        return f"command {route.argv[0] if route.argv else '?'}"
    if route.kind == "mcp":
        return (
            f"mcp {route.url}"
            if route.url
            else f"mcp stdio {route.command[0] if route.command else '?'}"
        )
    target = route.url if route.kind == "http" else route.function
    return f"{route.kind} {target}"


class ToolRouter:
    """Picks a route for a tool TRN and invokes it under a timeout.

    Args:
        routes: the bus's `tools`, first match wins.
        max_reply_bytes: the largest reply accepted from any tool (see the module docstring).
        import_dir: the config file's folder; a `python` tool's module is imported with it
            on the import path, so a module next to the config needs no PYTHONPATH.
        bus_id: the bus the events are from (a CloudEvent's source when the event has none).
        max_threads: threads for sync `python` tools (the bus's max_concurrency). They are
            the router's own: a sync tool that hangs keeps its thread after its call timed
            out (a thread cannot be stopped), and in the loop's default executor six such
            calls left no thread for rule matching, `test_rule` or closing SQLite, on any bus
            of the process. Here they hold only this router's pool.
    """

    def __init__(
        self,
        routes: Sequence[ToolRoute],
        *,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        import_dir: Path | None = None,
        bus_id: str = "eventbus",
        max_threads: int = 8,
    ) -> None:
        self.routes = tuple(routes)
        self.bus_id = bus_id
        #: Calls by (route kind, outcome), for /metrics: ok, error, timeout, too_large, no_route.
        self.calls: dict[tuple[str, str], int] = {}
        self.max_reply_bytes = max_reply_bytes
        self.import_dir = import_dir
        self.max_threads = max_threads
        self._threads: ThreadPoolExecutor | None = None  # created on first use
        self._matchers = [(compile_trn_pattern(route.match), route) for route in self.routes]
        # Created on first use so a router can be built outside a running loop.
        self._http: httpx.AsyncClient | None = None
        self._functions: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self._rpc_ids = itertools.count(1)
        self._mcp: McpTools | None = None
        self._invokers: dict[str, Callable[[ToolRoute, ToolCall, str | None], Awaitable[Any]]] = {
            "http": self._http_call,
            "jsonrpc": self._jsonrpc_call,
            "command": self._command_call,
            "python": self._python_call,
        }

    def route_for(self, tool_id: str) -> ToolRoute | None:
        for matches, route in self._matchers:
            if matches(tool_id):
                return route
        return None

    async def invoke(self, call: ToolCall, *, timeout_ms: int | None = None) -> Any:
        """Call the tool; its JSON result. `timeout_ms` (the action's) overrides the route's."""
        route = self.route_for(call.tool_id)
        if route is None:
            self._count("none", "no_route")
            patterns = ", ".join(r.match for r in self.routes) or "none configured"
            raise NoToolRoute(f"no tool route matches {call.tool_id} (routes: {patterns})")
        attributes = {
            "eventbus.tool_id": call.tool_id,
            "eventbus.tool_kind": route.kind,
            "eventbus.firing_id": call.firing_id,
        }
        with tracing.span("tool.call", attributes) as span:
            try:
                result = await self._invoke(route, call, timeout_ms)
            except BaseException as exc:
                outcome = _outcome(exc)
                self._count(route.kind, outcome)
                if span is not None and outcome != "cancelled":
                    span.set_attribute("error", True)
                    span.set_attribute("eventbus.outcome", outcome)
                raise
            self._count(route.kind, "ok")
            return result

    def _count(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1

    async def _invoke(self, route: ToolRoute, call: ToolCall, timeout_ms: int | None) -> Any:
        timeout_ms = route.timeout_ms if timeout_ms is None else timeout_ms
        where, tool = describe(route), {"tool_id": call.tool_id, "kind": route.kind}
        traceparent = tracing.outgoing_traceparent(call.event.get("metadata"))
        try:
            async with asyncio.timeout(timeout_ms / 1000) as deadline:
                if route.kind == "mcp":
                    result = await self._mcp_call(route, call, traceparent)
                else:
                    result = await self._invokers[route.kind](route, call, traceparent)
            if deeper_than(result, MAX_NESTING):
                # Stored and sent on, it could not be encoded again: refuse it here, named.
                raise _Failed(f"reply nested deeper than {MAX_NESTING} levels")
            return result
        except TimeoutError as exc:
            # Only our own deadline is a timeout; a TimeoutError from inside is a failure.
            if not deadline.expired():
                raise ToolError(f"tool {call.tool_id} ({where}): {exc!r}", **tool) from exc
            message = f"tool {call.tool_id} timed out after {timeout_ms} ms ({where})"
            raise ToolTimeout(message, **tool) from None
        except _TooLarge as exc:
            raise ToolReplyTooLarge(f"tool {call.tool_id} ({where}): {exc}", **tool) from None
        except _Failed as exc:
            raise ToolError(f"tool {call.tool_id} ({where}): {exc}", **tool) from exc.__cause__

    async def check(self, rule_id: str, action: InvokeTool) -> None:
        """At register_rule: what can be known of the call before it fires (only `mcp` routes
        know anything: the tool and its inputSchema). -32602 naming the tool or field."""
        route = self.route_for(action.tool_id)
        if route is not None and route.kind == "mcp":
            await self._mcp_tools().check(
                route, rule_id=rule_id, tool_id=action.tool_id, template=action.input
            )

    async def aclose(self) -> None:
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()
        if self._mcp is not None:
            tools, self._mcp = self._mcp, None
            await tools.aclose()  # closes the sessions and stops the stdio servers
        if self._threads is not None:
            threads, self._threads = self._threads, None
            threads.shutdown(wait=False, cancel_futures=True)  # a hung tool is not waited for

    async def __aenter__(self) -> ToolRouter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- http ------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            # No httpx timeout (ours governs) and no proxies from the environment:
            # the config alone says where a tool lives.
            self._http = httpx.AsyncClient(timeout=None, trust_env=False, follow_redirects=False)
        return self._http

    async def _http_call(self, route: ToolRoute, call: ToolCall, traceparent: str | None) -> Any:
        assert route.url is not None
        if route.format == "cloudevents":
            extensions = {"firingid": call.firing_id, "ruleid": call.rule_id}
            body: Any = to_cloudevent(
                call.event, default_source=f"trn:eventbus:{self.bus_id}", extensions=extensions
            )
            content_type = STRUCTURED_CONTENT_TYPE
        else:
            body, content_type = call.body(), "application/json"
        # identity: a compressed body is counted as it arrives, never inflated past the limit.
        headers = {
            "content-type": content_type,
            "accept-encoding": "identity",
            **(route.headers or {}),
        }
        if traceparent is not None:
            headers["traceparent"] = traceparent
        client = self._http_client()
        try:
            # Streamed, so a reply is refused before it is all in memory.
            async with client.stream(
                "POST", route.url, content=dumps(body), headers=headers
            ) as response:
                data = await self._http_body(response)
        except httpx.ConnectError as exc:
            reason = "connection refused" if _refused(exc) else str(exc) or type(exc).__name__
            raise _Failed(f"cannot connect ({reason})") from exc
        except httpx.HTTPError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from exc
        return _json_reply(data, "reply")

    async def _http_body(self, response: httpx.Response) -> bytes:
        """The body of a 2xx reply of at most the limit; anything else raises `_Failed`."""
        if not response.is_success:
            head = await _read_bounded(response.aiter_raw(), ERROR_BODY_BYTES, truncate=True)
            raise _Failed(f"HTTP {response.status_code}: {_snippet(head)}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise _Failed(f"reply has content-encoding {encoding!r}; the bus asks for identity")
        length = response.headers.get("content-length", "")
        if length.strip().isdigit() and int(length) > self.max_reply_bytes:
            raise _TooLarge(self.max_reply_bytes)  # refused before reading a byte of it
        return await _read_bounded(response.aiter_raw(), self.max_reply_bytes)

    # -- jsonrpc ---------------------------------------------------------------

    async def _jsonrpc_call(
        self, route: ToolRoute, tool_call: ToolCall, traceparent: str | None
    ) -> Any:
        assert route.url is not None
        host, port = _tcp_address(route.url)
        request_id = next(self._rpc_ids)
        method = route.method or DEFAULT_RPC_METHOD
        call = jsonrpc.request(method, tool_call.body(traceparent), request_id)
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            raise _Failed(f"cannot connect to {host}:{port} ({reason})") from exc
        try:
            writer.write(dumps_line(call))
            await writer.drain()
            reply = await _read_reply(reader, request_id, self.max_reply_bytes)
        except OSError as exc:
            raise _Failed(f"connection lost: {exc}") from exc
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the peer already went away; the socket is closed either way
        if reply.error is not None:
            raise _Failed(f"error {reply.error.get('code')}: {reply.error.get('message')}")
        return reply.result

    # -- command ---------------------------------------------------------------

    async def _command_call(self, route: ToolRoute, call: ToolCall, traceparent: str | None) -> Any:
        assert route.argv
        body = call.body()
        # The process's own environment, plus the trace context (None: inherited as it is).
        env = {**os.environ, "TRACEPARENT": traceparent} if traceparent is not None else None
        try:
            process = await asyncio.create_subprocess_exec(
                *route.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise _Failed(f"cannot run {route.argv[0]!r}: {exc.strerror or exc}") from exc
        assert process.stdin and process.stdout and process.stderr
        # Not communicate(): it would hold all of stdout and stderr, however large.
        feeding = asyncio.create_task(_write_stdin(process.stdin, dumps(body)))
        stderr_tail = asyncio.create_task(_read_tail(process.stderr, STDERR_TAIL_BYTES))
        try:
            stdout = await _read_bounded(_chunks(process.stdout), self.max_reply_bytes)
            stderr = await stderr_tail
            await process.wait()
        finally:
            # Done, too large, timed out or cancelled: the tool must not outlive its call.
            if process.returncode is None:
                process.kill()
            feeding.cancel()
            stderr_tail.cancel()
            await asyncio.gather(feeding, stderr_tail, return_exceptions=True)
            await process.wait()
        if process.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL_CHARS:] or "(no stderr)"
            raise _Failed(f"exited with code {process.returncode}: {tail}")
        return _json_reply(stdout, "output")

    # -- mcp -------------------------------------------------------------------

    def _mcp_tools(self) -> McpTools:
        if self._mcp is None:
            from eventbus_server.rules.tools.mcp import (
                McpTools,  # the SDK loads only for a bus with an mcp route
            )

            self._mcp = McpTools(max_reply_bytes=self.max_reply_bytes)
        return self._mcp

    async def _mcp_call(self, route: ToolRoute, call: ToolCall, traceparent: str | None) -> Any:
        from eventbus_server.rules.tools.mcp import McpReplyTooLarge, McpToolFailed

        meta = {
            "firing_id": call.firing_id,
            "event_id": call.event.get("event_id"),
            "rule_id": call.rule_id,
        }
        if traceparent is not None:
            meta["traceparent"] = traceparent
        try:
            return await self._mcp_tools().call(
                route, tool_id=call.tool_id, arguments=call.input, meta=meta
            )
        except McpReplyTooLarge:
            raise _TooLarge(self.max_reply_bytes) from None
        except McpToolFailed as exc:
            raise _Failed(str(exc)) from exc.__cause__

    # -- python ----------------------------------------------------------------

    async def _python_call(self, route: ToolRoute, call: ToolCall, traceparent: str | None) -> Any:
        assert route.function is not None
        function = self._function(route.function)
        body = call.body(traceparent)
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(body)
            else:
                # A sync tool runs in a thread so it cannot stall the bus; on timeout
                # the thread cannot be stopped and finishes in the background, in the
                # router's own pool (see max_threads).
                result = await asyncio.get_running_loop().run_in_executor(
                    self._python_threads(), function, body
                )
        except Exception as exc:
            raise _Failed(f"raised {type(exc).__name__}: {exc}") from exc
        try:
            encoded = dumps(result)
        except TypeError as exc:  # orjson's JSONEncodeError
            raise _Failed(f"result is not JSON: {exc}") from None
        if len(encoded) > self.max_reply_bytes:
            raise _TooLarge(self.max_reply_bytes)
        # The decoded copy is what the other kinds return and what storage keeps.
        return loads(encoded)

    def _python_threads(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.max_threads, thread_name_prefix="eventbus-tool")
        return self._threads

    def _function(self, spec: str) -> Callable[[dict[str, Any]], Any]:
        if (cached := self._functions.get(spec)) is not None:
            return cached
        module_name, _, name = spec.partition(":")
        if not module_name or not name:
            raise _Failed(f"function must be 'module:function', not {spec!r}")
        if self.import_dir is not None and str(self.import_dir) not in sys.path:
            # Appended, not prepended: a file beside the config must not shadow the
            # standard library or the bus's own dependencies, imported later.
            sys.path.append(str(self.import_dir))
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise _Failed(f"cannot import module {module_name!r}: {reason}") from exc
        function: Callable[[dict[str, Any]], Any] | None = getattr(module, name, None)
        if not callable(function):
            raise _Failed(f"module {module_name!r} has no function {name!r}")
        self._functions[spec] = function
        return function


def _outcome(exc: BaseException) -> str:
    """How a failed call is counted in eventbus_tool_calls_total{outcome}."""
    if isinstance(exc, ToolTimeout):
        return "timeout"
    if isinstance(exc, ToolReplyTooLarge):
        return "too_large"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return "(empty body)"
    return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")


def _refused(exc: BaseException | None) -> bool:
    """True if a ConnectionRefusedError lies in the chain (httpx wraps it twice)."""
    for _ in range(10):  # the chain is short; the bound guards against a cycle
        if exc is None:
            return False
        if isinstance(exc, ConnectionRefusedError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _json_reply(data: bytes, what: str) -> Any:
    """The tool's JSON value; an empty reply is None."""
    if not data.strip():
        return None
    try:
        return loads(data)
    except DecodeError:
        raise _Failed(f"{what} is not JSON: {_snippet(data)}") from None


def _tcp_address(url: str) -> tuple[str, int]:
    try:
        return split_listen(url.removeprefix("tcp://").rstrip("/"))
    except ValueError:
        raise _Failed(f"url must be 'tcp://host:port', not {url!r}") from None


async def _read_reply(
    reader: asyncio.StreamReader, request_id: int, max_line_bytes: int
) -> jsonrpc.Reply:
    """The reply to `request_id`; other lines (notifications) are skipped."""
    framer = LineFramer(max_line_bytes)
    while True:
        data = await reader.read(READ_CHUNK_BYTES)
        lines = framer.feed(data) if data else framer.flush()
        if framer.overflowed:
            raise _TooLarge(max_line_bytes)
        for line in lines:
            try:
                message = loads(line)
            except DecodeError:
                raise _Failed(f"reply is not JSON: {_snippet(line)}") from None
            for item in jsonrpc.parse_incoming(message):
                if isinstance(item, jsonrpc.Reply) and item.id == request_id:
                    return item
        if not data:
            raise _Failed("the tool closed the connection without replying")


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(READ_CHUNK_BYTES):
        yield data


async def _read_bounded(
    chunks: AsyncIterator[bytes], limit: int, *, truncate: bool = False
) -> bytes:
    """All of `chunks`, stopping once past `limit`: `_TooLarge`, or the first `limit` bytes."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            if truncate:
                return bytes(data[:limit])
            raise _TooLarge(limit)
    return bytes(data)


async def _read_tail(reader: asyncio.StreamReader, keep_bytes: int) -> bytes:
    """The last `keep_bytes` of the stream, read to its end."""
    tail = b""
    async for chunk in _chunks(reader):
        tail = (tail + chunk)[-keep_bytes:]
    return tail


async def _write_stdin(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the tool exited without reading all of its input: its exit code tells
