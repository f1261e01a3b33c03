"""Work from a durable consumer: leased messages and what a worker says of them.

    async for msg in bus.consume("resize-workers", batch=10):
        try:
            await resize(msg.event.payload)
        except Exception:
            await msg.nack(delay_ms=5_000)   # again in five seconds
        else:
            await msg.ack()                  # never delivered again

A message is leased to this worker for the consumer's `ack_wait_ms`; not
acked by then (the worker crashed, say), it goes to another. `extend()` says
"still working"; `term(reason)` sends it straight to the dead letters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventbus_core.envelope import EventEnvelope

__all__ = ["ConsumerMessage", "consume"]

Settler = Callable[..., Awaitable[int]]


@dataclass(slots=True)
class ConsumerMessage:
    """One leased event of `consumer`: delivery number `deliveries`, leased until `lease_until`."""

    consumer: str
    event: EventEnvelope
    deliveries: int
    lease_until: int
    _settle: Settler = field(repr=False)

    @property
    def event_id(self) -> int:
        return self.event.event_id

    async def ack(self) -> bool:
        """Done: it is never delivered again. False when the lease was no longer ours."""
        return await self._settle("ack", self.consumer, [self.event_id]) == 1

    async def nack(self, *, delay_ms: int | None = None) -> bool:
        """Not done: due again after `delay_ms` (else the consumer's backoff)."""
        params = {"delay_ms": delay_ms} if delay_ms is not None else {}
        return await self._settle("nack", self.consumer, [self.event_id], **params) == 1

    async def extend(self) -> bool:
        """Still working: the lease runs for another `ack_wait_ms`."""
        return await self._settle("extend", self.consumer, [self.event_id]) == 1

    async def term(self, *, reason: str | None = None) -> bool:
        """Never again: straight to the consumer's dead letters, with `reason`."""
        params = {"reason": reason} if reason is not None else {}
        return await self._settle("term", self.consumer, [self.event_id], **params) == 1


def messages_from_wire(
    consumer: str, result: dict[str, Any], settle: Settler
) -> list[ConsumerMessage]:
    return [
        ConsumerMessage(
            consumer,
            EventEnvelope.model_validate(m["event"]),
            m["deliveries"],
            m["lease_until"],
            settle,
        )
        for m in result["messages"]
    ]


async def consume(
    fetch: Callable[[], Awaitable[Sequence[ConsumerMessage]]],
) -> AsyncIterator[ConsumerMessage]:
    """Every message `fetch` leases, batch after batch, for as long as the caller iterates."""
    while True:
        for message in await fetch():
            yield message
