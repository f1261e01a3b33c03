"""The client's durable-consumer methods (DESIGN §10): create, fetch and settle leases,
dead letters. A base of `EventBusClient`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from eventbus_client.calls import Calls, without_none
from eventbus_client.consumer import ConsumerMessage, consume, messages_from_wire
from eventbus_core.results import ConsumerInfo, DeadLetter

__all__ = ["ConsumerCalls"]


class ConsumerCalls(Calls):
    async def create_consumer(
        self,
        name: str,
        *,
        topic: str = ">",
        source_trn: str | None = None,
        target_trn: str | None = None,
        pattern: Mapping[str, Any] | None = None,
        start: str | Mapping[str, int] = "new",
        ack_wait_ms: int | None = None,
        max_deliver: int | None = None,
        backoff_ms: Sequence[int] | None = None,
        max_ack_pending: int | None = None,
        replace: bool = False,
    ) -> bool:
        """Create a durable consumer (or change one, with `replace`); True when it is new.

        Args:
            name: 1-128 characters of letters, digits, '.', '_', '-'.
            topic, source_trn, target_trn: which events, as for `subscribe`.
            pattern: an EventBridge pattern the events must match too.
            start: "new" (from now on), "all" (every stored event), {"after_id": n}
                or {"from_ts": ms}.
            ack_wait_ms: how long a lease lasts (default 30 s).
            max_deliver: deliveries before an event becomes a dead letter (default 5).
            backoff_ms: the wait before delivery n+1 after a lease ran out or a
                plain nack: backoff_ms[n-1], the last one repeating.
            max_ack_pending: events leased at once across all workers (default 1000).
        """
        params = without_none(
            name=name,
            topic=topic,
            source_trn=source_trn,
            target_trn=target_trn,
            pattern=dict(pattern) if pattern is not None else None,
            start=start if isinstance(start, str) else dict(start),
            ack_wait_ms=ack_wait_ms,
            max_deliver=max_deliver,
            backoff_ms=list(backoff_ms) if backoff_ms is not None else None,
            max_ack_pending=max_ack_pending,
        )
        if replace:
            params["replace"] = True
        return bool((await self.call("create_consumer", params))["created"])

    async def list_consumers(self) -> list[ConsumerInfo]:
        consumers: list[ConsumerInfo] = (await self.call("list_consumers"))["consumers"]
        return consumers

    async def get_consumer(self, name: str) -> ConsumerInfo:
        info: ConsumerInfo = await self.call("get_consumer", {"name": name})
        return info

    async def delete_consumer(self, name: str) -> None:
        await self.call("delete_consumer", {"name": name})

    async def fetch(
        self, consumer: str, *, max: int = 10, wait_ms: int = 0
    ) -> list[ConsumerMessage]:
        """Lease up to `max` messages (≤ 1000), waiting up to `wait_ms` (≤ 60000) for one."""
        result = await self.call("fetch", {"consumer": consumer, "max": max, "wait_ms": wait_ms})
        return messages_from_wire(consumer, result, self._settle)

    async def consume(
        self, consumer: str, *, batch: int = 10, wait_ms: int = 30_000
    ) -> AsyncIterator[ConsumerMessage]:
        """Every message of `consumer` this worker leases, `batch` at a time, for as long
        as the caller iterates; ack, nack, extend or term each (see ConsumerMessage)."""
        async for message in consume(lambda: self.fetch(consumer, max=batch, wait_ms=wait_ms)):
            yield message

    async def ack(self, consumer: str, event_ids: Sequence[int]) -> int:
        """Done with these leased events; how many were leased (and are now acked)."""
        return await self._settle("ack", consumer, event_ids)

    async def nack(
        self, consumer: str, event_ids: Sequence[int], *, delay_ms: int | None = None
    ) -> int:
        return await self._settle("nack", consumer, event_ids, **without_none(delay_ms=delay_ms))

    async def extend(self, consumer: str, event_ids: Sequence[int]) -> int:
        return await self._settle("extend", consumer, event_ids)

    async def term(
        self, consumer: str, event_ids: Sequence[int], *, reason: str | None = None
    ) -> int:
        return await self._settle("term", consumer, event_ids, **without_none(reason=reason))

    async def _settle(
        self, method: str, consumer: str, event_ids: Sequence[int], **params: Any
    ) -> int:
        return int(
            (
                await self.call(
                    method, {"consumer": consumer, "event_ids": list(event_ids), **params}
                )
            )["count"]
        )

    async def list_dead_letters(
        self, consumer: str, *, after_id: int = 0, limit: int = 100
    ) -> list[DeadLetter]:
        dead: list[DeadLetter] = (
            await self.call(
                "list_dead_letters", {"consumer": consumer, "after_id": after_id, "limit": limit}
            )
        )["dead"]
        return dead

    async def redrive(self, consumer: str, event_ids: Sequence[int] | None = None) -> int:
        """Dead letters (these, or up to 10,000 of them) back to the consumer; how many."""
        params = without_none(
            consumer=consumer, event_ids=list(event_ids) if event_ids is not None else None
        )
        return int((await self.call("redrive", params))["redriven"])
