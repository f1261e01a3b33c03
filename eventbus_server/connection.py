"""One client connection: framing, dispatch, pipelining, and the limits that keep
one client from hurting the others (DESIGN.md §3 "Limits").

Every call that waits runs as a task, so pipelined requests are answered as
they complete and a slow `poll_events` never holds up an `emit_event` behind
it. What one connection may hold is bounded:

- **in flight**: at most `max_inflight` calls run at once. Further complete
  lines wait here unparsed and reading pauses, so a flood stays in the
  client's socket (TCP back-pressure), not in our memory.
- **output**: the transport's high-water mark is `max_output_bytes`. Above
  it no new call starts, reading pauses and subscriptions hold their events
  in their bounded buffers (`lagged` beyond); a client that stays above it for
  `write_timeout_s` is cut off. Calls of a connection that is gone are
  cancelled at once.
- **partial line**: a line not completed within `read_timeout_s` (while we
  read) ends the connection (slowloris).
- **authentication**: on a token bus, `auth_timeout_s` to authenticate.

A refusal is written as an error line, then the bus half-closes and drains
the client's input for a moment, so the kernel does not answer with a reset
and the client can read why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

from eventbus_core.codec import LineFramer, compact, dumps_line
from eventbus_core.errors import (
    EventBusError,
    InvalidRequest,
    MessageTooLarge,
    Overloaded,
    Unauthorized,
)
from eventbus_core.jsonrpc import Message, error_reply, parse_message
from eventbus_server.bus import Bus
from eventbus_server.rpc import LATER, CallContext, ReplyBudget, dispatch, start

__all__ = ["Connection"]

log = logging.getLogger("eventbus.connection")

#: How long a refused client may keep sending before the socket is closed anyway.
REFUSAL_DRAIN_S = 1.0
#: Requests of one connection started per turn of the event loop (see `_pump`).
LINES_PER_TURN = 64


class Connection(asyncio.Protocol):
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.config = bus.config
        self.authenticated = bus.config.auth_token is None
        #: Wrong tokens so far (the rpc layer closes the connection at the limit).
        self.wrong_tokens = 0
        #: One authentication attempt at a time: pipelining does not multiply guesses.
        self.auth_lock = asyncio.Lock()
        self.input_closed = asyncio.Event()
        self._heavy_lock = asyncio.Lock()
        self._pages: set[ReplyBudget] = set()  # replies with pages not written yet
        self._room = asyncio.Event()  # set when output may have dropped below max_output_bytes
        self._framer = LineFramer(bus.config.max_message_bytes)
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._writable = asyncio.Event()
        self._writable.set()
        self._lines: deque[bytes] = deque()  # complete lines waiting for room to run
        self._inflight = 0
        self._pump_scheduled = False
        self._pumping = False  # in `_pump`: what is written leaves when it returns
        self._tasks: set[asyncio.Future[Any]] = set()
        #: Emits queued in the bus's writer, whose replies come through `_answer_later`.
        self._later = 0
        self._settled: asyncio.Event | None = None  # set when _later drops to 0 (finish waits)
        self._reading_paused = False
        self._stop_reading = False  # shutdown: never read again
        self._peer_done = False  # the peer half-closed: answer what is pending, then close
        self._refusing = False  # an error line went out; now only draining the input
        self._closed = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Replies and notifications written in one loop iteration leave in one syscall.
        self._outgoing: list[bytes] = []

    # -- Subscriber ------------------------------------------------------------

    @property
    def can_write(self) -> bool:
        return self._writable.is_set() and not self._done_writing()

    def write(self, data: bytes) -> None:
        if self._done_writing():
            return
        if not self._outgoing and not self._pumping:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        if self._outgoing and not self._done_writing():
            transport = self._transport
            assert transport is not None
            if len(self._outgoing) > 1:
                data = b"".join(self._outgoing)
            else:
                # One item (a large reply, often) goes as it is: joining would copy it. Unless
                # it must wait behind unsent output: uvloop keeps the object itself, with the
                # spare capacity orjson reserved (for a 4 KB line, 32 KiB kept; see codec.compact).
                data = self._outgoing[0]
                if transport.get_write_buffer_size():
                    data = compact(data)
            self._outgoing.clear()
            transport.write(data)

    def _done_writing(self) -> bool:
        # Once we closed the transport, a push (a replay still running) must not follow:
        # uvloop refuses a write to a closed handle, and one that races the close can
        # leave the client a line cut short. What was written before close() still goes out.
        transport = self._transport
        return self._closed or self._refusing or transport is None or transport.is_closing()

    async def wait_writable(self) -> None:
        await self._writable.wait()

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = tcp = cast(asyncio.Transport, transport)
        self._peer = _address(transport.get_extra_info("peername"))
        config = self.config
        if not self.bus.admit(self):
            self._refuse(
                Overloaded(f"too many connections (limit {config.max_connections}); retry later")
            )
            return
        # Flow control at the output budget: pause_writing() fires once replies and
        # notifications waiting for this client pass max_output_bytes.
        tcp.set_write_buffer_limits(high=config.max_output_bytes, low=config.max_output_bytes // 2)
        if not self.authenticated:
            self._arm("auth", config.auth_timeout_s, self._auth_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._refusing:
            return  # draining what the refused client still sends
        lines = self._framer.feed(data)
        if lines:
            self._disarm(
                "partial"
            )  # a line was completed: the next one gets its own read_timeout_s
        self._lines.extend(lines)
        if self._framer.overflowed:
            limit = self.config.max_message_bytes
            self._refuse(MessageTooLarge(f"message too large: a line exceeded {limit} bytes"))
            return
        self._pump()

    def eof_received(self) -> bool:
        if self._refusing:
            return False  # the refused client is done: close
        self._lines.extend(self._framer.flush())
        self._peer_done = True
        self.input_closed.set()
        self._pump()
        return True  # keep our side open until every pending reply is written

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.input_closed.set()
        self._writable.set()  # wake replays waiting to write; they see the subscription gone
        self._room.set()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._lines.clear()
        # Nobody is left to read the answers: stop the work at once.
        for pending in list(self._tasks):
            pending.cancel()
        self.bus.disconnected(self)

    def pause_writing(self) -> None:
        self._writable.clear()
        self._arm("write", self.config.write_timeout_s, self._write_timed_out)
        self._update_reading()

    def resume_writing(self) -> None:
        self._writable.set()
        self._room.set()
        self._disarm("write")
        self.bus.resume_streams(self)
        self._pump()

    # -- calls -----------------------------------------------------------------

    def _room_for_calls(self) -> bool:
        return (
            self._inflight < self.config.max_inflight
            and self._writable.is_set()
            and not self._closed
            and not self._refusing
        )

    def _pump(self) -> None:
        """Start waiting lines while there is room, then read on only if room is left.

        At most LINES_PER_TURN lines a turn of the loop: one read can hold
        thousands of cheap requests, and running them all at once would hold
        every other connection of the process for as long (10,000 pipelined
        subscribes: 0.3 s). The rest waits for the next turn, unread.

        What the lines' calls write meanwhile (replies given at once, an emit the
        writer committed at once) leaves when this returns, in one write, unless a
        flush is due anyway (output was waiting): then it goes with that one.
        """
        outer = self._pumping
        owed = not outer and not self._outgoing  # no flush is scheduled: ours to do
        self._pumping = True
        try:
            started = 0
            while self._lines and self._room_for_calls():
                if started == LINES_PER_TURN:
                    if not self._pump_scheduled:
                        self._pump_scheduled = True
                        asyncio.get_running_loop().call_soon(self._next_turn)
                    break
                line = self._lines.popleft()
                self._handle_line(line, alone=not self._lines)
                started += 1
            self._update_reading()
            self._close_when_done()
        finally:
            self._pumping = outer
            if owed and self._outgoing:
                self._flush()

    def _next_turn(self) -> None:
        self._pump_scheduled = False
        if not self._closed:
            self._pump()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed or self._refusing:
            return
        should_read = not self._lines and self._room_for_calls() and not self._stop_reading
        if should_read and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        elif not should_read and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        self._watch_partial_line()

    def _handle_line(self, line: bytes, *, alone: bool) -> None:
        message = parse_message(line, max_batch=self.config.max_batch)
        if not message.calls:
            if message.replies:
                self._send(message.replies if message.is_batch else message.replies[0])
            return
        if message.is_batch:
            size = len(line) // len(message.calls) + 1  # each call's share of the line
            self._track(
                asyncio.get_running_loop().create_task(self._run_batch(message, size)),
                len(message.calls),
            )
            return
        ctx = CallContext(
            self.bus, self, self._budget(), size=len(line), answer=self._answer_later, alone=alone
        )
        # Counted before it starts: an emit committed at once is answered inside `start`.
        self._inflight += 1
        self._later += 1
        outcome = start(ctx, message.calls[0])
        if outcome is LATER:
            return
        self._inflight -= 1
        self._later -= 1
        if isinstance(outcome, asyncio.Future):
            outcome.add_done_callback(
                lambda done: self._answer(ctx, done.result()) if not done.cancelled() else None
            )
            self._track(outcome, 1)
        else:
            self._answer(ctx, outcome)

    def _answer(self, ctx: CallContext, reply: dict[str, Any] | None) -> None:
        if reply is not None:
            self._send(reply)
        self._pages_written(ctx.budget)
        for callback in ctx.after_reply:
            callback()

    def _answer_later(self, ctx: CallContext, reply: dict[str, Any] | None) -> None:
        """An emit's reply, from the bus's writer once its events are committed (also
        after the connection is gone: then nothing is written)."""
        self._later -= 1
        self._inflight -= 1
        self._answer(ctx, reply)
        if self._later == 0 and self._settled is not None:
            self._settled.set()
        # The next lines start in a turn of their own, not inside the writer's acks (an
        # emit committed at once is answered inside `_pump`, which goes on by itself).
        if not self._closed and not self._pump_scheduled and not self._pumping:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _track(self, pending: asyncio.Future[Any], calls: int) -> None:
        """Count calls in flight until they finish; shutdown and half-close wait for them."""
        self._inflight += calls
        self._tasks.add(pending)
        pending.add_done_callback(lambda done: self._task_done(done, calls))

    def _task_done(self, task: asyncio.Future[Any], calls: int) -> None:
        self._tasks.discard(task)
        self._inflight -= calls
        if not task.cancelled() and task.exception() is not None:
            log.error("bus=%s connection task failed", self.bus.id, exc_info=task.exception())
        if not self._closed:
            self._pump()

    async def _run_batch(self, message: Message, size: int) -> None:
        budget = self._budget()  # shared: one batch's reply is bounded as a whole
        contexts = [CallContext(self.bus, self, budget, size=size) for _ in message.calls]
        results = await asyncio.gather(
            *(dispatch(c, call) for c, call in zip(contexts, message.calls, strict=True))
        )
        replies = message.replies + [r for r in results if r is not None]
        if replies:
            self._send(replies)
        self._pages_written(budget)
        for ctx in contexts:
            for callback in ctx.after_reply:
                callback()

    def _send(self, reply: Any) -> None:
        self.write(dumps_line(reply))

    def _budget(self) -> ReplyBudget:
        # A quarter of the output budget: a page fits beside what waits to be sent,
        # and the copies made while it is encoded stay small beside it.
        return ReplyBudget(self.config.max_output_bytes // 4, self._pages.add)

    def _pages_written(self, budget: ReplyBudget) -> None:
        """A reply with pages is written (or will never be): they are output like any other now."""
        if budget.spent:
            self._pages.discard(budget)
            self._room.set()

    def _output_bytes(self) -> int:
        """What this client has yet to read from us: pages encoded but not written,
        replies not flushed, and the transport's buffer."""
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return sum(b.spent for b in self._pages) + sum(map(len, self._outgoing)) + buffered

    @contextlib.asynccontextmanager
    async def heavy_read(self) -> AsyncIterator[None]:
        async with self._heavy_lock:
            # Never two heavy reads of one connection in one turn of the loop: the
            # sockets of every other client are read between them.
            await asyncio.sleep(0)
            while self._output_bytes() >= self.config.max_output_bytes and not self._closed:
                self._flush()  # over the high-water mark, the transport pauses writing
                self._room.clear()
                await self._room.wait()
            yield

    # -- timers ------------------------------------------------------------------

    def _arm(self, name: str, delay_s: float, callback: Any) -> None:
        self._disarm(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay_s, callback)

    def _disarm(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _watch_partial_line(self) -> None:
        """Time a partial line only while we read: a paused read is not the client's delay."""
        if self._framer.partial_bytes and not self._reading_paused:
            if "partial" not in self._timers:
                self._arm("partial", self.config.read_timeout_s, self._partial_line_timed_out)
        else:
            self._disarm("partial")

    def _partial_line_timed_out(self) -> None:
        self._timers.pop("partial", None)
        timeout = self.config.read_timeout_s
        self.bus.note("closed_partial_line")
        log.info(
            "bus=%s peer=%s closed: a request line was not completed within %g s",
            self.bus.id,
            self._peer,
            timeout,
        )
        self._refuse(
            InvalidRequest(
                f"invalid request: a request line was not completed within {timeout:g} s (read_timeout_s)"
            )
        )

    def _auth_timed_out(self) -> None:
        self._timers.pop("auth", None)
        if self.authenticated:
            return
        timeout = self.config.auth_timeout_s
        self.bus.note("closed_unauthenticated")
        log.info(
            "bus=%s peer=%s closed: not authenticated within %g s", self.bus.id, self._peer, timeout
        )
        self._refuse(
            Unauthorized(
                f"bus {self.bus.id!r} requires a token: not authenticated within {timeout:g} s (auth_timeout_s)"
            )
        )

    def _write_timed_out(self) -> None:
        self._timers.pop("write", None)
        if self._writable.is_set() or self._transport is None:
            return
        self.bus.note("closed_not_reading")
        log.info(
            "bus=%s peer=%s closed: over %d bytes of unread replies for %g s",
            self.bus.id,
            self._peer,
            self.config.max_output_bytes,
            self.config.write_timeout_s,
        )
        self._transport.abort()  # it does not read: there is no one to tell

    # -- closing ---------------------------------------------------------------

    def close_after_reply(self) -> None:
        """End the connection once what was written so far has gone out (no further line)."""
        self._refuse(None)

    def _refuse(self, error: EventBusError | None) -> None:
        """Write `error` (id null), half-close, and drain the input briefly before closing."""
        transport = self._transport
        if transport is None or self._refusing or self._closed:
            return
        if error is not None:
            self.write(dumps_line(error_reply(None, error)))
        self._flush()
        self._refusing = True
        self._lines.clear()
        for pending in list(self._tasks):
            pending.cancel()
        self.bus.release(self)  # a refused client no longer holds a max_connections slot
        if not transport.can_write_eof():  # TLS cannot half-close
            transport.close()
            return
        transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm("drain", REFUSAL_DRAIN_S, transport.close)

    def _close_when_done(self) -> None:
        if self._peer_done and not self._tasks and not self._later and not self._lines:
            self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()

    def stop_reading(self) -> None:
        """Shutdown step: take no new requests; pending ones still get answers."""
        self._stop_reading = True
        self._lines.clear()
        self._update_reading()

    async def finish(self) -> None:
        """Shutdown step: wait for pending calls, then close."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._later:
            self._settled = asyncio.Event()
            await self._settled.wait()
        self._close()


def _address(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)
