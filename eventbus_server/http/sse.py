"""`GET /events`: a bus's live events as Server-Sent Events (DESIGN §14).

    GET /events?topic=repo.>&since=41&source_trn=…&target_trn=…   (Last-Event-ID: 41 wins over since)
        ─▶ Bus.subscribe_sse  (fanout.py: the same subscription as subscribe_topic,
                               replay then live, gapless, framed as SSE)
        ─▶ EventStream.write  (bounded: at most max_output_bytes waiting for the socket)
        ─▶ the ASGI send, one frame batch at a time

There is no queue of its own: a stream is a subscriber like a TCP
connection. While its socket does not drain, it says it cannot write, so
fan-out holds events in the subscription's bounded buffer, and past
`subscriber_buffer` the reader gets `event: lagged` (with `resume_since`)
and the stream ends; it resumes from there with Last-Event-ID. A stream
whose last frames are not read within `write_timeout_s` is dropped. At most
`http.max_streams` streams are open at once (429 beyond).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from eventbus_core.errors import EventBusError, InvalidParams, Overloaded
from eventbus_core.locations import invalid_params
from eventbus_core.params import SubscribeParams
from eventbus_core.sse import comment_frame
from eventbus_server.bus import Bus
from eventbus_server.http.answers import error_response
from eventbus_server.storage.base import EventQuery

__all__ = ["EventStream", "EventStreams"]

log = logging.getLogger("eventbus.http")

#: Fan-out's `lagged` frame starts so (eventbus_core.sse.lagged_frame): the stream ends after it.
_LAGGED = b"event: lagged"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass frames on at once
]


class EventStream:
    """One open `GET /events`: the subscriber fan-out writes to."""

    def __init__(
        self, bus: Bus, *, limit_bytes: int, heartbeat_s: float, write_timeout_s: float
    ) -> None:
        self.bus = bus
        self.limit_bytes = limit_bytes
        self.heartbeat_s = heartbeat_s
        self.write_timeout_s = write_timeout_s
        self._outgoing: list[bytes] = []
        self._pending_bytes = 0  # written by fan-out, not yet through the ASGI send
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._ending = False  # lagged, or the server stops: send what is left, then end
        self._closed = False  # gone: write nothing more
        self._heavy = asyncio.Lock()

    # -- Subscriber ---------------------------------------------------------------

    @property
    def can_write(self) -> bool:
        return not self._closed and not self._ending and self._pending_bytes < self.limit_bytes

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if data.startswith(_LAGGED):
            self._ending = True  # fan-out dropped the subscription; this is its last frame
        self._outgoing.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.limit_bytes:
            self._room.clear()
        self._wake.set()

    async def wait_writable(self) -> None:
        await self._room.wait()

    @contextlib.asynccontextmanager
    async def heavy_read(self) -> AsyncIterator[None]:
        """A page of stored events is read (a replay) only once what waits is below the limit."""
        async with self._heavy:
            while self._pending_bytes >= self.limit_bytes and not self._closed:
                await self._room.wait()
            yield

    # -- life -------------------------------------------------------------------------

    def end(self) -> None:
        """The server stops: finish the response with what was written."""
        self._ending = True
        self._wake.set()

    async def pump(self, send: Send) -> None:
        """Hand what fan-out wrote to the ASGI send until the stream ends."""
        while True:
            try:
                async with asyncio.timeout(self.heartbeat_s):
                    await self._wake.wait()
            except TimeoutError:
                if self.can_write and not self._outgoing:
                    self.write(comment_frame("keep-alive"))
                continue
            self._wake.clear()
            if self._outgoing:
                data = b"".join(self._outgoing)
                self._outgoing.clear()
                if self._ending:
                    async with asyncio.timeout(self.write_timeout_s):
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                else:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                self._pending_bytes -= len(data)
                if self._pending_bytes < self.limit_bytes // 2 and not self._room.is_set():
                    self._room.set()
                    self.bus.resume_streams(self)  # frames held while we could not write go now
            if self._ending and not self._outgoing:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    def close(self) -> None:
        self._closed = True
        self._room.set()  # a replay waiting to write wakes and sees its subscription gone
        self.bus.drop_streams(self)


class _StreamResponse(Response):
    """The ASGI side of one stream: headers, then frames until lagged, shutdown or disconnect."""

    def __init__(self, streams: EventStreams, stream: EventStream, start: Any) -> None:
        self.streams = streams
        self.stream = stream
        self.start = start  # the subscription's start(): delivery begins once headers are out
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            self.start()
            pumping = asyncio.ensure_future(stream.pump(send))
            watching = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pumping, watching):
                    task.cancel()
                await asyncio.gather(pumping, watching, return_exceptions=True)
            if (
                pumping.done()
                and not pumping.cancelled()
                and isinstance(pumping.exception(), TimeoutError)
            ):
                log.info(
                    "bus=%s event stream dropped: its last frames were not read within %g s",
                    stream.bus.id,
                    stream.write_timeout_s,
                )
        finally:
            stream.close()
            self.streams.open.discard(stream)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStreams:
    """The open streams of one bus: the `GET /events` handler, and the end of them all at shutdown."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.open: set[EventStream] = set()
        self.closing = (
            False  # the server stops: no new stream (a kept-alive connection may still ask)
        )

    async def handle(self, request: Request) -> Response:
        try:
            query, replay = _query(request)
            if self.closing:
                raise Overloaded(
                    f"bus {self.bus.id!r} is shutting down; reconnect with Last-Event-ID"
                )
            if len(self.open) >= self.bus.config.http.max_streams:  # type: ignore[union-attr]
                raise Overloaded(
                    f"{len(self.open)} event streams are open on bus {self.bus.id!r}, the limit (http.max_streams)"
                )
        except EventBusError as exc:
            return error_response(exc)
        config = self.bus.config
        assert config.http is not None
        stream = EventStream(
            self.bus,
            limit_bytes=config.max_output_bytes,
            heartbeat_s=config.http.heartbeat_s,
            write_timeout_s=config.write_timeout_s,
        )
        subscription = self.bus.subscribe_sse(query, stream, replay=replay)
        self.open.add(stream)
        return _StreamResponse(self, stream, subscription.start)

    def end_all(self) -> None:
        self.closing = True
        for stream in list(self.open):
            stream.end()


def _query(request: Request) -> tuple[EventQuery, bool]:
    """The subscription a request asks for; Last-Event-ID (a reconnecting reader) wins over since."""
    args: dict[str, Any] = {"topic": ">"}
    for name in ("topic", "source_trn", "target_trn"):
        if name in request.query_params:
            args[name] = request.query_params[name]
    since = request.headers.get("last-event-id") or request.query_params.get("since")
    where = "Last-Event-ID" if request.headers.get("last-event-id") else "since"
    if since is not None:
        if not since.strip().isdigit():
            msg = f"must be an event id (an integer ≥ 0), not {since[:40]!r}"
            raise InvalidParams(
                f"invalid params for GET /events: {where}: {msg}", [{"loc": where, "msg": msg}]
            )
        args["since"] = int(since)
    try:
        params = SubscribeParams.model_validate(args)
    except ValidationError as exc:
        raise invalid_params("GET /events", exc) from None
    query = EventQuery(
        topic=params.topic,
        since=params.since or 0,
        source_trn=params.source_trn,
        target_trn=params.target_trn,
    )
    return query, params.since is not None
