"""Loopback tools for tests: an HTTP tool, a JSON-RPC tool and command helpers.

Both servers take the same kind of handler, an async `(body) -> result`
that raises `Fail` to make the call fail, so one behaviour works over either
transport (and over `tool_functions` for python routes):

    async with HttpTool(fail_first(2, per_firing=True)) as tool:
        router = ToolRouter([tool.route("trn:user:alice:tool:*")])
        ...
        assert tool.count(firing_id) == 3

Everything binds 127.0.0.1 on port 0 and is closed when the block ends.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self

from eventbus_core.codec import dumps, dumps_line, loads
from eventbus_core.config import ToolRoute

__all__ = [
    "ECHO_SCRIPT",
    "Fail",
    "Handler",
    "HttpReply",
    "HttpTool",
    "JsonRpcTool",
    "RawReply",
    "echo",
    "fail",
    "fail_first",
    "python_argv",
    "reply",
    "slow",
]

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Fail(Exception):
    """Raised by a handler: HTTP answers `status`, JSON-RPC answers error `code`."""

    def __init__(
        self, message: str = "tool failed", *, status: int = 500, code: int = -32000
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass(frozen=True)
class HttpReply:
    """Returned by a handler of an HttpTool for full control of the response.

    The body is sent `repeat` times (a huge reply without holding it), with a
    Content-Length, or in chunked transfer encoding without one if `chunked`.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    chunked: bool = False
    repeat: int = 1
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RawReply:
    """Returned by a handler of a JsonRpcTool: these bytes, `repeat` times, instead of a reply."""

    data: bytes
    repeat: int = 1


# -- behaviours ---------------------------------------------------------------


def echo() -> Handler:
    """Replies with the body it received (tool_id, input, event, firing_id)."""

    async def handle(body: dict[str, Any]) -> Any:
        return body

    return handle


def reply(value: Any) -> Handler:
    """Always replies with `value`."""

    async def handle(body: dict[str, Any]) -> Any:
        return value

    return handle


def fail(message: str = "boom", *, status: int = 500, code: int = -32000) -> Handler:
    """Always fails (HTTP `status`, JSON-RPC error `code`)."""

    async def handle(body: dict[str, Any]) -> Any:
        raise Fail(message, status=status, code=code)

    return handle


def slow(seconds: float, then: Handler | None = None) -> Handler:
    """Sleeps, then behaves like `then` (echo by default)."""
    after = then or echo()

    async def handle(body: dict[str, Any]) -> Any:
        await asyncio.sleep(seconds)
        return await after(body)

    return handle


def fail_first(failures: int, then: Handler | None = None, *, per_firing: bool = False) -> Handler:
    """Fails the first `failures` calls (of each firing_id if `per_firing`), then behaves like `then`."""
    after = then or echo()
    seen: collections.Counter[Any] = collections.Counter()

    async def handle(body: dict[str, Any]) -> Any:
        key = body.get("firing_id") if per_firing else None
        seen[key] += 1
        if seen[key] <= failures:
            raise Fail(f"planned failure {seen[key]} of {failures}")
        return await after(body)

    return handle


# -- command tools ------------------------------------------------------------

#: A command tool that prints the body it read from stdin.
ECHO_SCRIPT = "import sys; sys.stdout.write(sys.stdin.read())"


def python_argv(script: str) -> tuple[str, ...]:
    """argv running `script` with this interpreter, for a `command` route."""
    return (sys.executable, "-c", script)


# -- servers ------------------------------------------------------------------


@dataclass
class _Recorder:
    """What a tool received, in order, and a way to wait for it without sleeping."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, body: Any) -> None:
        self.calls.append(body if isinstance(body, dict) else {"body": body})
        self._changed.set()

    def count(self, firing_id: int | None = None) -> int:
        """Calls received, all or for one firing."""
        if firing_id is None:
            return len(self.calls)
        return sum(1 for call in self.calls if call.get("firing_id") == firing_id)

    def counts(self) -> collections.Counter[Any]:
        """Calls per firing_id."""
        return collections.Counter(call.get("firing_id") for call in self.calls)

    async def wait_for_calls(self, n: int, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least `n` calls arrived; the calls."""
        async with asyncio.timeout(timeout_s):
            while len(self.calls) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.calls


class _LoopbackServer:
    """A 127.0.0.1 server on port 0 that closes every connection on exit."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or echo()
        self.recorder = _Recorder()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._closing = False
        self._connections: set[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = set()

    # Shortcuts so tests read `tool.calls`, `tool.count(firing_id)`.
    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.recorder.calls

    def count(self, firing_id: int | None = None) -> int:
        return self.recorder.count(firing_id)

    def counts(self) -> collections.Counter[Any]:
        return self.recorder.counts()

    async def wait_for_calls(self, n: int, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        return await self.recorder.wait_for_calls(n, timeout_s=timeout_s)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._closing = True
        # Let connections the kernel has accepted reach `_connected` (which closes them)
        # first: on Python 3.11 one accepted after server.close() leaks its socket.
        await asyncio.sleep(0.01)
        self._server.close()
        for task, writer in list(self._connections):
            writer.close()
            task.cancel()
        await asyncio.gather(*(task for task, _ in self._connections), return_exceptions=True)
        await self._server.wait_closed()
        # A transport closes its socket in a callback close() schedules; let it run
        # before the test's loop ends (a cancelled wait_closed() did not wait for it).
        await asyncio.sleep(0.01)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        entry = (task, writer)
        self._connections.add(entry)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request: nothing to answer
        except asyncio.CancelledError:
            # Cancelled by __aexit__ (a slow handler or an idle keep-alive connection):
            # end normally, since asyncio logs a connection callback that ends cancelled.
            if not self._closing:
                raise
        finally:
            self._connections.discard(entry)
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def answer(self, body: Any) -> tuple[Any, Fail | None]:
        """Record the call and run the handler: (result, None) or (None, Fail)."""
        self.recorder.record(body)
        try:
            return await self.handler(body), None
        except Fail as failure:
            return None, failure


class HttpTool(_LoopbackServer):
    """An HTTP/1.1 tool: POST a JSON body, get a JSON reply; keep-alive."""

    def __init__(self, handler: Handler | None = None) -> None:
        super().__init__(handler)
        #: Headers of each request (lower-case names), in order.
        self.headers: list[dict[str, str]] = []
        #: The request line of each request (`POST /tool HTTP/1.1`), in order.
        self.request_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tool"

    def route(self, match: str, **extra: Any) -> ToolRoute:
        return ToolRoute.model_validate({"match": match, "kind": "http", "url": self.url, **extra})

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request_line := await reader.readline():
            self.request_lines.append(request_line.decode("latin-1").strip())
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            self.headers.append(headers)
            response = await self._respond(raw)
            for data in _http_response(response):
                writer.write(data)
                await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return

    async def _respond(self, raw: bytes) -> HttpReply:
        try:
            body = loads(raw)
        except ValueError:
            return HttpReply(400, dumps({"error": "body is not JSON"}))
        result, failure = await self.answer(body)
        if failure is not None:
            return HttpReply(failure.status, dumps({"error": failure.message}))
        if isinstance(result, HttpReply):
            return result
        return HttpReply(200, dumps(result))


def _http_response(reply: HttpReply) -> Iterator[bytes]:
    """The response in pieces, so a repeated body is never whole in memory."""
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = "Unknown"
    framing = (
        "Transfer-Encoding: chunked"
        if reply.chunked
        else f"Content-Length: {len(reply.body) * reply.repeat}"
    )
    extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items())
    head = f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: {reply.content_type}\r\n{extra}{framing}\r\n\r\n"
    yield head.encode("latin-1")
    for _ in range(reply.repeat):
        if not reply.chunked:
            yield reply.body
        elif reply.body:
            yield f"{len(reply.body):x}\r\n".encode() + reply.body + b"\r\n"
    if reply.chunked:
        yield b"0\r\n\r\n"


class JsonRpcTool(_LoopbackServer):
    """A JSON-RPC 2.0 tool over TCP, one JSON text per line; `.calls` holds the params."""

    def __init__(self, handler: Handler | None = None) -> None:
        super().__init__(handler)
        self.methods: list[str] = []

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def route(self, match: str, *, method: str = "call_tool", **extra: Any) -> ToolRoute:
        return ToolRoute.model_validate(
            {"match": match, "kind": "jsonrpc", "url": self.url, "method": method, **extra}
        )

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if not line.strip():
                continue
            request = loads(line)
            self.methods.append(request.get("method"))
            result, failure = await self.answer(request.get("params"))
            if isinstance(result, RawReply):
                for _ in range(result.repeat):
                    writer.write(result.data)
                    await writer.drain()
                continue
            if failure is not None:
                message = {
                    "jsonrpc": "2.0",
                    "id": request.get("id"),
                    "error": {"code": failure.code, "message": failure.message},
                }
            else:
                message = {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
            writer.write(dumps_line(message))
            await writer.drain()
