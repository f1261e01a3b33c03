"""A thin blocking wrapper for scripts: `with connect_sync(url) as bus: bus.emit(...)`.

The async client runs on an event loop in a background thread; each method
submits a coroutine there and waits for its result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from eventbus_client.client import EventBusClient, PollResult, connect
from eventbus_client.subscription import Subscription
from eventbus_core.envelope import EventEnvelope
from eventbus_core.results import BusInfo, EmitResult, ScheduledResult, TopicInfo

__all__ = ["SyncClient", "SyncSubscription", "connect_sync"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="eventbus-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class SyncSubscription:
    """A blocking iterator over a subscription."""

    def __init__(self, runner: _LoopThread, sub: Subscription) -> None:
        self._runner = runner
        self._sub = sub

    def __iter__(self) -> Iterator[EventEnvelope]:
        while True:
            try:
                yield self._runner.run(self._sub.next())
            except StopAsyncIteration:
                return

    def next(self, *, timeout_s: float | None = None) -> EventEnvelope:
        return self._runner.run(self._sub.next(timeout_s=timeout_s))

    def unsubscribe(self) -> None:
        self._runner.run(self._sub.unsubscribe())


class SyncClient:
    """The same verbs as `EventBusClient`, blocking."""

    def __init__(self, runner: _LoopThread, client: EventBusClient) -> None:
        self._runner = runner
        self._client = client

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self._runner.run(self._client.call(method, params))

    def emit(self, topic: str, payload: Any = None, **options: Any) -> EmitResult | ScheduledResult:
        """`deliver_at=` or `delay_ms=` among the options: a `ScheduledResult`."""
        result: EmitResult | ScheduledResult = self._runner.run(
            self._client.emit(topic, payload, **options)
        )
        return result

    def emit_many(self, events: list[dict[str, Any]]) -> list[int]:
        return self._runner.run(self._client.emit_many(events))

    def poll(self, topic: str = ">", **options: Any) -> PollResult:
        return self._runner.run(self._client.poll(topic, **options))

    def subscribe(self, topic: str = ">", **options: Any) -> SyncSubscription:
        return SyncSubscription(
            self._runner, self._runner.run(self._client.subscribe(topic, **options))
        )

    def list_topics(self) -> list[TopicInfo]:
        return self._runner.run(self._client.list_topics())

    def bus_info(self) -> BusInfo:
        return self._runner.run(self._client.bus_info())

    def ping(self) -> str:
        return self._runner.run(self._client.ping())

    def close(self) -> None:
        try:
            self._runner.run(self._client.close(), timeout_s=5)
        finally:
            self._runner.stop()


def connect_sync(url: str, **options: Any) -> SyncClient:
    """Blocking `connect`: same arguments as `eventbus_client.connect`."""
    runner = _LoopThread()
    try:
        client = runner.run(connect(url, **options))
    except BaseException:
        runner.stop()
        raise
    return SyncClient(runner, client)
