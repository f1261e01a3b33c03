"""One client connection: framing, dispatch, pipelining and back-pressure.

Every call runs in its own task, so pipelined requests are answered as they
complete and a slow `poll_events` never holds up an `emit_event` behind it.
When the transport's write buffer fills up (the peer is not reading), we stop
reading its requests and let its subscriptions buffer, up to their limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eventbus_core.codec import LineFramer, dumps_line
from eventbus_core.errors import MessageTooLarge, Overloaded
from eventbus_core.jsonrpc import Message, error_reply, parse_message

from .bus import Bus
from .rpc import CallContext, dispatch, start

__all__ = ["Connection"]

log = logging.getLogger("eventbus.connection")


class Connection(asyncio.Protocol):
    def __init__(self, bus: Bus, registry: set[Connection]) -> None:
        self.bus = bus
        self.authenticated = bus.config.auth_token is None
        self._registry = registry
        self._framer_limit = bus.config.max_message_bytes
        self._framer = LineFramer(self._framer_limit)
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._peer_done = False  # the peer half-closed: answer what is pending, then close
        self._closed = False
        self._counted = False
        # Replies and notifications written in one loop iteration leave in one syscall.
        self._outgoing: list[bytes] = []

    # -- Subscriber ------------------------------------------------------------

    @property
    def can_write(self) -> bool:
        return self._writable.is_set() and not self._closed

    def write(self, data: bytes) -> None:
        if self._closed or self._transport is None:
            return
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        if self._outgoing and not self._closed and self._transport is not None:
            data = b"".join(self._outgoing)
            self._outgoing.clear()
            self._transport.write(data)

    async def wait_writable(self) -> None:
        await self._writable.wait()

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]
        if self.bus.connections >= self.bus.config.max_connections:
            limit = self.bus.config.max_connections
            self.write(dumps_line(error_reply(None, Overloaded(f"too many connections (limit {limit}); retry later"))))
            self._close()
            return
        self._counted = True
        self.bus.connections += 1
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        for line in self._framer.feed(data):
            self._handle_line(line)
        if self._framer.overflowed:
            limit = self._framer_limit
            self.write(dumps_line(error_reply(None, MessageTooLarge(f"message too large: a line exceeded {limit} bytes"))))
            self._close()

    def eof_received(self) -> bool:
        for line in self._framer.flush():
            self._handle_line(line)
        self._peer_done = True
        self._close_when_done()
        return True  # keep our side open until every pending reply is written

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._writable.set()  # wake replays waiting to write; they see the subscription gone
        for sub_id in self.bus.dispatcher.owned_by(self):
            self.bus.dispatcher.unsubscribe(sub_id)
        if self.bus.rules is not None:
            for watcher_id in self.bus.rules.watchers_of(self):
                self.bus.rules.unwatch(watcher_id)
        if self._counted:
            self.bus.connections -= 1
            self._counted = False
        self._registry.discard(self)

    def pause_writing(self) -> None:
        self._writable.clear()
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable.set()
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()
        self.bus.dispatcher.resume(self)

    # -- calls -----------------------------------------------------------------

    def _handle_line(self, line: bytes) -> None:
        message = parse_message(line)
        if not message.calls:
            if message.replies:
                self._send(message.replies if message.is_batch else message.replies[0])
            return
        if message.is_batch:
            self._track(asyncio.get_running_loop().create_task(self._run_batch(message)))
            return
        ctx = CallContext(self.bus, self)
        outcome = start(ctx, message.calls[0])
        if isinstance(outcome, asyncio.Future):
            outcome.add_done_callback(lambda done: self._answer(ctx, done.result()))
            self._track(outcome)
        else:
            self._answer(ctx, outcome)

    def _answer(self, ctx: CallContext, reply: dict[str, Any] | None) -> None:
        if reply is not None:
            self._send(reply)
        for callback in ctx.after_reply:
            callback()

    def _track(self, pending: asyncio.Future[Any]) -> None:
        """Remember calls still running, so shutdown and half-close can wait for them."""
        self._tasks.add(pending)
        pending.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bus=%s connection task failed", self.bus.id, exc_info=task.exception())
        self._close_when_done()

    async def _run_batch(self, message: Message) -> None:
        contexts = [CallContext(self.bus, self) for _ in message.calls]
        results = await asyncio.gather(*(dispatch(c, call) for c, call in zip(contexts, message.calls, strict=True)))
        replies = message.replies + [r for r in results if r is not None]
        if replies:
            self._send(replies)
        for ctx in contexts:
            for callback in ctx.after_reply:
                callback()

    def _send(self, reply: Any) -> None:
        self.write(dumps_line(reply))

    # -- closing ---------------------------------------------------------------

    def _close_when_done(self) -> None:
        if self._peer_done and not self._tasks:
            self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()

    def stop_reading(self) -> None:
        """Shutdown step: take no new requests; pending ones still get answers."""
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    async def finish(self) -> None:
        """Shutdown step: wait for pending calls, then close."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._close()
