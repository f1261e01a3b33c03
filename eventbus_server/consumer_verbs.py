"""The durable-consumer verbs of a bus (DESIGN §10), as every door calls them: a base
of `Bus`, which owns the `Consumers` (consumers.py) they go to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from eventbus_server.consumers import Consumers, Message, Start
from eventbus_server.storage.consumers import ConsumerConfig, Settle

__all__ = ["ConsumerVerbs"]


class ConsumerVerbs:
    _consumers: Consumers

    async def create_consumer(
        self, name: str, config: ConsumerConfig, start: Start, *, replace: bool
    ) -> bool:
        """A named durable consumer; True when it is new (DESIGN §10)."""
        return await self._consumers.create(name, config, start, replace=replace)

    async def list_consumers(self) -> list[dict[str, Any]]:
        return await self._consumers.list_all()

    async def get_consumer(self, name: str) -> dict[str, Any]:
        return await self._consumers.get(name)

    async def delete_consumer(self, name: str) -> None:
        await self._consumers.delete(name)

    async def fetch(
        self,
        consumer: str,
        *,
        max_messages: int,
        wait_ms: int,
        max_bytes: int,
        hold: Callable[[], AbstractAsyncContextManager[None]],
        abandoned: asyncio.Event | None = None,
    ) -> list[Message]:
        """Lease up to `max_messages` events of the consumer, waiting up to `wait_ms` for one
        (not once `abandoned` is set: the caller went away)."""
        return await self._consumers.fetch(
            consumer,
            max_messages=max_messages,
            wait_ms=wait_ms,
            max_bytes=max_bytes,
            hold=hold,
            abandoned=abandoned,
        )

    async def settle(
        self,
        consumer: str,
        event_ids: Sequence[int],
        action: Settle,
        *,
        delay_ms: int | None = None,
        reason: str | None = None,
    ) -> int:
        """ack / nack / extend / term leased events; how many changed."""
        return await self._consumers.settle(
            consumer, event_ids, action, delay_ms=delay_ms, reason=reason
        )

    async def dead_letters(
        self, consumer: str, *, after_id: int, limit: int
    ) -> list[dict[str, Any]]:
        return await self._consumers.dead_letters(consumer, after_id=after_id, limit=limit)

    async def redrive(self, consumer: str, event_ids: Sequence[int] | None) -> int:
        return await self._consumers.redrive(consumer, event_ids)
