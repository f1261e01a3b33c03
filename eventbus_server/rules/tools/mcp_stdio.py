"""The stdio transport of an `mcp` tool route: one MCP server process (DESIGN §12).

    argv ─▶ process ─ stdout ─▶ LineFramer(max_line_bytes) ─▶ SessionMessage ─▶ session
                    ◀ stdin ─── one JSON-RPC message a line ◀──────────────── session
                    ─ stderr ─▶ the bus log, a line at a time (eventbus.mcp)

The SDK's own `stdio_client` reads a line of any length and sends stderr to a
file; the bus needs both bounded and logged, so this transport does the
pipes itself and leaves the protocol to the SDK's `ClientSession`. A line
longer than `max_line_bytes` ends the connection (the stream cannot be
re-synchronised): the call waiting for it fails and `too_large` says why.

The process runs in its own session (process group): stopping it closes its
stdin, waits `STOP_GRACE_S`, then SIGTERMs and finally SIGKILLs the group, so
a server that spawned helpers leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import mcp_types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from eventbus_core.codec import LineFramer

__all__ = ["StdioServer"]

log = logging.getLogger("eventbus.mcp")

#: Bytes asked of a pipe per read.
READ_CHUNK_BYTES = 65_536
#: After stdin closes, this long for the server to exit by itself; as long again after SIGTERM.
STOP_GRACE_S = 2.0
#: How often the process is looked at while it is being stopped.
EXIT_POLL_S = 0.01
#: A stderr line longer than this is logged cut.
STDERR_LINE_CHARS = 2000
#: The environment a stdio server inherits (the SDK's own choice); the route's `env` adds to it.
INHERITED_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR")


class StdioServer:
    """Runs one stdio MCP server; `async with server.connect() as (read, write)`.

    Args:
        argv: the program and its arguments (never a shell).
        env: added to the few inherited variables (`INHERITED_ENV`).
        max_line_bytes: the longest message line accepted from the server.
        name: how the server is named in log lines.
    """

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None, max_line_bytes: int, name: str
    ) -> None:
        self.argv = tuple(argv)
        self.env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ} | dict(
            env or {}
        )
        self.max_line_bytes = max_line_bytes
        self.name = name
        self.pid: int | None = None
        #: Set when the server's stdout ended: it exited or closed it; the session is over.
        self.closed = anyio.Event()
        #: The connection ended because a message line passed `max_line_bytes`.
        self.too_large = False
        #: The process's exit code once it has exited (known after the session stops it).
        self.exit_code: int | None = None

    @contextlib.asynccontextmanager
    async def connect(
        self,
    ) -> AsyncIterator[
        tuple[MemoryObjectReceiveStream[Any], MemoryObjectSendStream[SessionMessage]]
    ]:
        """Start the process; the SDK's stream pair until the block ends, then stop it."""
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        self.pid = process.pid
        log.info(
            "mcp server %s started: pid=%d argv=%s", self.name, process.pid, " ".join(self.argv)
        )
        # Unbuffered, like the SDK's: a message is handed over only when the session takes it.
        read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._read_stdout, process, read_send)
                tasks.start_soon(self._write_stdin, process, write_recv)
                tasks.start_soon(self._log_stderr, process)
                try:
                    yield read_recv, write_send
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(process)
                for stream in (read_send, read_recv, write_send, write_recv):
                    await stream.aclose()

    async def _read_stdout(
        self, process: asyncio.subprocess.Process, send: MemoryObjectSendStream[Any]
    ) -> None:
        assert process.stdout is not None
        framer = LineFramer(self.max_line_bytes)
        try:
            async with send:
                while data := await process.stdout.read(READ_CHUNK_BYTES):
                    lines = framer.feed(data)
                    if framer.overflowed:
                        self.too_large = True
                        log.warning(
                            "mcp server %s sent a message line over %d bytes; closing it",
                            self.name,
                            self.max_line_bytes,
                        )
                        return
                    for line in lines:
                        await send.send(_message(line))
                for line in framer.flush():
                    await send.send(_message(line))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the session went away first
        finally:
            self.closed.set()

    async def _write_stdin(
        self,
        process: asyncio.subprocess.Process,
        receive: MemoryObjectReceiveStream[SessionMessage],
    ) -> None:
        assert process.stdin is not None
        try:
            async with receive:
                async for message in receive:
                    line = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    process.stdin.write(line.encode() + b"\n")
                    await process.stdin.drain()
        except (ConnectionError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            # The server is gone: the read side sees its end and the session with it.
            self.closed.set()

    async def _log_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        framer = LineFramer(STDERR_LINE_CHARS * 4)
        while data := await process.stderr.read(READ_CHUNK_BYTES):
            if framer.overflowed:  # a line too long for the log: start over at the next line
                framer = LineFramer(STDERR_LINE_CHARS * 4)
                data = data.partition(b"\n")[2]
            for line in framer.feed(data):
                text = line.decode("utf-8", "replace")[:STDERR_LINE_CHARS]
                log.info("mcp server %s stderr: %s", self.name, text)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
            if await _exited(process, STOP_GRACE_S):
                break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # helpers it left in its group
        self.exit_code = process.returncode
        log.info(
            "mcp server %s stopped: pid=%d exit=%s", self.name, process.pid, process.returncode
        )


async def _exited(process: asyncio.subprocess.Process, within_s: float) -> bool:
    """Whether the process exits within `within_s`. Not `wait()`: on 3.11 that also waits
    for its pipes to close, which a helper that inherited them can hold open."""
    deadline = asyncio.get_running_loop().time() + within_s
    while process.returncode is None:
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(EXIT_POLL_S)
    return True


def _message(line: bytes) -> SessionMessage | Exception:
    """A parsed message, or the parse error as a value for the session to report (as the SDK does)."""
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc
