"""A live subscription as an async iterator that survives reconnects.

The client remembers the last event it handed over (`last_event_id`). When
the connection drops or the bus says `lagged`, it subscribes again with
`since=last_event_id`: the bus replays what was missed from storage and then
goes live, so the iterator sees every event once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from eventbus_core.envelope import EventEnvelope
from eventbus_core.errors import ConnectionLost

__all__ = ["FiringSubscription", "Subscription"]

#: Above this many undelivered events the client stops reading the socket,
#: which pushes back to the bus (and ends, there, in `lagged` + resume).
HIGH_WATER = 10_000

_CLOSED: Any = object()


class _Stream:
    """What both kinds of subscription share: a queue that ends, or fails, once."""

    def __init__(self, unsubscribe: Callable[[Any], Awaitable[None]]) -> None:
        self.id: str | None = None
        self.closed = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._unsubscribe = unsubscribe

    def fail(self, exc: BaseException) -> None:
        self.closed = True
        self._queue.put_nowait(exc)

    def end(self) -> None:
        self.closed = True
        self._queue.put_nowait(_CLOSED)

    def _open(self, item: Any) -> Any:
        """`item` unless it ends the stream: then raise (again for every later reader)."""
        if item is _CLOSED or isinstance(item, BaseException):
            self._queue.put_nowait(item)
            if item is _CLOSED:
                raise StopAsyncIteration
            raise item
        return item

    async def unsubscribe(self) -> None:
        """Stop the subscription; the iterator ends after what is already buffered."""
        if self.closed:
            return
        self.end()
        try:
            await self._unsubscribe(self)
        except ConnectionLost:
            pass


class Subscription(_Stream):
    #: The method that (re)subscribes.
    method = "subscribe_topic"

    def __init__(
        self,
        *,
        topic: str,
        since: int | None,
        source_trn: str | None,
        target_trn: str | None,
        unsubscribe: Callable[[Subscription], Awaitable[None]],
        set_reading: Callable[[bool], None],
    ) -> None:
        super().__init__(unsubscribe)
        self.topic = topic
        self.source_trn = source_trn
        self.target_trn = target_trn
        #: The last event handed to the consumer; the resume point.
        self.last_event_id = since or 0
        self._since_given = since is not None
        self._last_queued = self.last_event_id
        self._set_reading = set_reading
        self._paused = False

    def subscribe_params(self) -> dict[str, Any]:
        """Params for (re)subscribing: first time as asked, later from the resume point."""
        params: dict[str, Any] = {"topic": self.topic}
        if self._since_given or self.id is not None:
            params["since"] = self._last_queued
        if self.source_trn is not None:
            params["source_trn"] = self.source_trn
        if self.target_trn is not None:
            params["target_trn"] = self.target_trn
        return params

    def subscribed(self, result: dict[str, Any]) -> None:
        self.id = result["subscription"]
        if not self._since_given and self._last_queued == 0:
            # Live-only: resume from the bus's head at the time we subscribed.
            self._last_queued = max(self._last_queued, int(result.get("last_event_id") or 0))
            self._since_given = True

    def deliver(self, event: dict[str, Any]) -> None:
        event_id = event.get("event_id")
        if not isinstance(event_id, int) or event_id <= self._last_queued:
            return  # a replay overlapping what we already have
        self._last_queued = event_id
        self._queue.put_nowait(event)
        if not self._paused and self._queue.qsize() > HIGH_WATER:
            self._paused = True
            self._set_reading(False)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EventEnvelope:
        item = await self._queue.get()
        return self._handover(item)

    async def next(self, *, timeout_s: float | None = None) -> EventEnvelope:
        """The next event; TimeoutError after `timeout_s`, StopAsyncIteration once closed."""
        async with asyncio.timeout(timeout_s):  # not wait_for: on 3.11 it can swallow a cancel
            item = await self._queue.get()
        return self._handover(item)

    def _handover(self, item: Any) -> EventEnvelope:
        item = self._open(item)
        if self._paused and self._queue.qsize() < HIGH_WATER // 2:
            self._paused = False
            self._set_reading(True)
        event = EventEnvelope.model_validate(item)
        self.last_event_id = event.event_id
        return event


class FiringSubscription(_Stream):
    """Live `rule_fired` notifications (firing dicts) as an async iterator.

    After a reconnect it subscribes again; firings that finished while the
    connection was down are not replayed (`list_firings` has them).
    """

    method = "subscribe_firings"

    def __init__(
        self, *, rule_id: str | None, unsubscribe: Callable[[Any], Awaitable[None]]
    ) -> None:
        super().__init__(unsubscribe)
        self.rule_id = rule_id

    def subscribe_params(self) -> dict[str, Any]:
        return {} if self.rule_id is None else {"rule_id": self.rule_id}

    def subscribed(self, result: dict[str, Any]) -> None:
        self.id = result["subscription"]

    def deliver(self, firing: dict[str, Any]) -> None:
        firing = dict(firing)
        firing.pop("subscription", None)
        self._queue.put_nowait(firing)

    def __aiter__(self) -> FiringSubscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return self._handover(await self._queue.get())

    async def next(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The next finished firing; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            item = await self._queue.get()
        return self._handover(item)

    def _handover(self, item: Any) -> dict[str, Any]:
        return dict(self._open(item))
