"""A raw-socket JSON-RPC peer for the wire tests: bytes in, parsed lines out."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class RawPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: tuple[str, int], *, limit: int = 64 * 1024 * 1024) -> RawPeer:
        """`limit` bounds what the peer buffers before it stops reading the socket."""
        reader, writer = await asyncio.open_connection(*address, limit=limit)
        return cls(reader, writer)

    async def send(self, data: bytes | str | Any) -> None:
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            data = json.dumps(data).encode() + b"\n"
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout_s: float = 5.0) -> Any:
        line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        assert line, "connection closed before a reply"
        return json.loads(line)

    async def expect_only(self, call_id: Any) -> Any:
        """Send `ping` with `call_id`; the next line must be its reply.

        Proves that what was sent before (notifications) got no reply, without sleeping.
        """
        await self.send({"jsonrpc": "2.0", "method": "ping", "id": call_id})
        reply = await self.recv()
        assert reply == {"jsonrpc": "2.0", "id": call_id, "result": "pong"}, reply
        return reply

    async def call(self, method: str, params: Any = None, call_id: Any = 1) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.recv()

    async def call_line(self, line: str) -> Any:
        """Send one request line as written (for JSON no client would encode) and read the reply."""
        await self.send(line)
        return await self.recv()

    async def closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        data = await asyncio.wait_for(self.reader.read(), timeout_s)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
