"""One TCP connection to a bus: pipelined JSON-RPC calls matched by id.

Calls are written as soon as they are made and matched to their replies by
`id`, so any number can be in flight. Notifications from the bus (`event`,
`lagged`, `rule_fired`) go to `on_notification`. When the socket closes,
every pending call fails with `ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from eventbus_core.codec import DecodeError, LineFramer, dumps_line, loads
from eventbus_core.errors import ConnectionLost, from_error_object
from eventbus_core.jsonrpc import Notification, parse_incoming, request

__all__ = ["RpcConnection", "open_connection", "parse_url"]

#: Replies and notifications may be large (a poll of 10 000 events).
MAX_REPLY_BYTES = 256 * 1024 * 1024

NotificationHandler = Callable[[str, Any], None]


def parse_url(url: str) -> tuple[str, int, bool]:
    """`tcp://host:port` (or `tls://…`, or bare `host:port`) → (host, port, use_tls)."""
    if "://" not in url:
        url = "tcp://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("tcp", "tls"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}: use tcp://host:port")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"invalid bus URL {url!r}: expected tcp://host:port")
    return parts.hostname, port, parts.scheme == "tls"


class RpcConnection(asyncio.Protocol):
    def __init__(self, on_notification: NotificationHandler | None = None) -> None:
        self.on_notification = on_notification
        self.on_close: Callable[[], None] | None = None
        self._framer = LineFramer(MAX_REPLY_BYTES)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._on_result: dict[int, Callable[[Any], None]] = {}
        self._ids = itertools.count(1)
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = asyncio.Event()
        self._close_reason = "connection closed"
        # Requests made in one loop iteration leave in one syscall.
        self._outgoing: list[bytes] = []

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        on_result: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send one request and wait for its result; raises the bus's error class.

        `on_result` runs as soon as the reply is read, before any later line is
        handled: a subscription registers there, so events that follow its
        reply in the same read are not missed.
        """
        if self._transport is None or self.is_closed:
            raise ConnectionLost(self._close_reason)
        call_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[call_id] = future
        if on_result is not None:
            self._on_result[call_id] = on_result
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(dumps_line(request(method, params or None, call_id)))
        try:
            if not self._writable.is_set():
                await self._writable.wait()
            return await future
        except BaseException:
            # Cancelled (or the wait failed): nobody reads this call's reply. An answered
            # call was taken out of both maps by the line that answered it.
            self._pending.pop(call_id, None)
            self._on_result.pop(call_id, None)
            raise

    def _flush(self) -> None:
        if self._outgoing and self._transport is not None and not self._transport.is_closing():
            data = b"".join(self._outgoing)
            self._outgoing.clear()
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def set_reading(self, reading: bool) -> None:
        """Pause or resume reading from the bus (a subscriber's buffer is full: TCP
        back-pressure instead of memory)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            (transport.resume_reading if reading else transport.pause_reading)()

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for line in self._framer.feed(data):
            self._on_line(line)
        if self._framer.overflowed:
            self._close_reason = "a reply from the bus exceeded the client's line limit"
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._close_reason = f"connection lost: {exc}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(self._close_reason))
        self._pending.clear()
        self._writable.set()
        self._closed.set()
        if self.on_close is not None:
            self.on_close()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _answered(self, message: dict[str, Any]) -> bool:
        """Answer the call whose result `message` is, if it is one: the usual line,
        answered without `_on_line`'s general walk."""
        call_id: Any = message.get("id")
        if "method" in message or "error" in message or not isinstance(call_id, int):
            return False
        future = self._pending.pop(call_id, None)
        if future is None:
            return False
        if not future.done():
            result = message.get("result")
            on_result = self._on_result.pop(call_id, None)
            if on_result is not None:
                on_result(result)
            future.set_result(result)
        return True

    def _on_line(self, line: bytes) -> None:
        try:
            message = loads(line)
        except DecodeError:
            return
        if type(message) is dict and self._answered(message):
            return
        for item in parse_incoming(message):
            if isinstance(item, Notification):
                if self.on_notification is not None:
                    self.on_notification(item.method, item.params)
                continue
            future = self._pending.pop(item.id, None) if isinstance(item.id, int) else None
            if future is None or future.done():
                if item.id is None and item.error is not None:
                    # Connection-level error (too large, too many connections): it is about to close.
                    self._close_reason = str(item.error.get("message", "closed by the bus"))
                continue
            if item.error is not None:
                self._on_result.pop(item.id, None)
                future.set_exception(from_error_object(item.error))
                continue
            on_result = self._on_result.pop(item.id, None)
            if on_result is not None:
                on_result(item.result)
            future.set_result(item.result)


async def open_connection(
    url: str,
    *,
    on_notification: NotificationHandler | None = None,
    timeout_s: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> RpcConnection:
    """Connect to `url`; raises ConnectionLost saying why when the bus is unreachable."""
    host, port, use_tls = parse_url(url)
    if use_tls and ssl_context is None:
        ssl_context = ssl.create_default_context()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: on 3.11 it can swallow a cancel
            _, protocol = await loop.create_connection(
                lambda: RpcConnection(on_notification), host, port, ssl=ssl_context
            )
    except ssl.SSLError as exc:
        raise ConnectionLost(f"cannot connect to {url}: {_tls_problem(exc, host, port)}") from None
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = exc.strerror or str(exc)
        raise ConnectionLost(f"cannot connect to {url}: {reason}") from None
    return protocol


def _tls_problem(exc: ssl.SSLError, host: str, port: int) -> str:
    """What went wrong in the TLS handshake, in words (not OpenSSL's)."""
    if exc.reason == "WRONG_VERSION_NUMBER":
        # The bytes that came back were not TLS: a plain-TCP bus answered.
        return f"the bus at {host}:{port} does not speak TLS (a plain bus: use tcp://{host}:{port})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted: {exc.verify_message} (for a private CA, set SSL_CERT_FILE)"
    return f"TLS handshake failed: {exc.reason or exc}"
