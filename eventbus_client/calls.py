"""What the client's groups of methods stand on: one `call` by name, and the small
helpers that shape params. `EventBusClient` (client.py) supplies `call`; the groups
(consumer_calls.py, schedule_calls.py) are its bases, one noun each, as redis-py's
command mixins are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventbus_core.envelope import EmitParams

__all__ = ["Calls", "wire_event", "without_none"]


class Calls:
    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call any bus method by name."""
        raise NotImplementedError


def without_none(**fields: Any) -> dict[str, Any]:
    """The params that were given: a None leaves the bus's default."""
    return {k: v for k, v in fields.items() if v is not None}


def wire_event(event: Mapping[str, Any] | EmitParams) -> dict[str, Any]:
    """An event to emit as its wire object."""
    if isinstance(event, EmitParams):
        return event.model_dump(exclude_none=True, exclude={"event_id"})
    return dict(event)
