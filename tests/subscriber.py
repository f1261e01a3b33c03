"""The connection side of subscriptions, in process: it records the lines it is written.

`FanOut` and `Bus` talk to a connection through a small protocol
(`fanout.Subscriber`, `bus.Client`): can it take a line now, take this line,
tell me when it can again, one heavy read at a time. `RecordingSubscriber`
is that protocol without a socket, so the unit tests of the fan-out, the bus
and the rule engine can read what a client would have received, line by
line, and hold the "socket" full (`pause`) or drain it (`drain`) at will.

Pushing an event or a firing while it says it cannot take one is a fan-out
bug: the subscriber raises instead of recording it. (A `lagged` line is
written regardless, as a real connection buffers it past its budget.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["RecordingSubscriber"]


class RecordingSubscriber:
    def __init__(self) -> None:
        #: Every line written, parsed, in the order written.
        self.lines: list[dict[str, Any]] = []
        #: Called (and awaited) inside `heavy_read`, before the page is read: a test's
        #: way to commit more while a replay is between pages.
        self.before_read: Callable[[], Awaitable[None]] | None = None
        self.stopped_reading = False
        self.finished = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading = asyncio.Lock()
        self._written = asyncio.Event()

    # -- the protocol (fanout.Subscriber, bus.Client) ---------------------------

    @property
    def can_write(self) -> bool:
        return self._writable.is_set()

    def write(self, data: bytes) -> None:
        assert data.endswith(b"\n") and data.count(b"\n") == 1, data
        line = json.loads(data)
        if line["method"] != "lagged" and not self.can_write:
            raise AssertionError(f"pushed to a subscriber that cannot take it: {data!r}")
        self.lines.append(line)
        self._written.set()

    async def wait_writable(self) -> None:
        await self._writable.wait()

    @contextlib.asynccontextmanager
    async def heavy_read(self) -> AsyncIterator[None]:
        async with self._reading:
            if self.before_read is not None:
                await self.before_read()
            yield

    def stop_reading(self) -> None:
        self.stopped_reading = True

    async def finish(self) -> None:
        self.finished = True

    # -- the test's side --------------------------------------------------------

    def pause(self) -> None:
        """The socket is full: nothing more may be pushed until `drain`."""
        self._writable.clear()

    def drain(self) -> None:
        """The socket has room again (the caller then tells the fan-out: `resume`)."""
        self._writable.set()

    def event_ids(self, subscription: str | None = None) -> list[int]:
        """The event_id of every `event` line (of one subscription), in order."""
        return [
            line["params"]["event"]["event_id"]
            for line in self.lines
            if line["method"] == "event" and subscription in (None, line["params"]["subscription"])
        ]

    def firing_ids(self, subscription: str | None = None) -> list[int]:
        return [
            line["params"]["firing_id"]
            for line in self.lines
            if line["method"] == "rule_fired"
            and subscription in (None, line["params"]["subscription"])
        ]

    def lagged(self) -> list[dict[str, Any]]:
        """The params of every `lagged` line."""
        return [line["params"] for line in self.lines if line["method"] == "lagged"]

    async def wait_until(
        self, check: Callable[[RecordingSubscriber], bool], timeout_s: float = 10.0
    ) -> None:
        """Return once `check(self)` holds, re-checked after every line written."""
        async with asyncio.timeout(timeout_s):
            while not check(self):
                self._written.clear()
                await self._written.wait()
