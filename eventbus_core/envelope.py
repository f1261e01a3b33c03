"""Events on the wire (DESIGN.md §4).

`EmitParams` validates what a client sends to `emit_event`; `EventEnvelope` is
what the bus stores and hands back. Both are pydantic models; the server keeps
stored events as `Event`, a slotted dataclass that orjson encodes directly, so
the hot path (fan-out, polls of 10 000 events) never builds pydantic objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .numbers import UInt63
from .topics import validate_topic
from .trn import validate_trn

__all__ = ["EmitParams", "Event", "EventEnvelope", "Topic", "TrnStr", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


Topic = Annotated[str, AfterValidator(validate_topic)]
TrnStr = Annotated[str, AfterValidator(validate_trn)]


class EmitParams(BaseModel):
    """One event as a client emits it; `event_id` is accepted and ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: Topic
    payload: Any = None
    # Strict: `true` or "123" are not milliseconds; within int64, like every stored integer.
    timestamp: UInt63 | None = None
    metadata: dict[str, Any] | None = None
    source_trn: TrnStr | None = None
    target_trn: TrnStr | None = None
    correlation_id: str | None = Field(default=None, min_length=1, max_length=255)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    event_id: Any = Field(default=None, exclude=True)


class EventEnvelope(BaseModel):
    """A stored event, as every method returns it."""

    model_config = ConfigDict(frozen=True)

    event_id: int
    topic: str
    payload: Any = None
    timestamp: int
    metadata: dict[str, Any] | None = None
    source_trn: str | None = None
    target_trn: str | None = None
    correlation_id: str | None = None


@dataclass(slots=True)
class Event:
    """A stored event inside the server; encodes to the `EventEnvelope` wire form.

    Not frozen: a frozen dataclass costs ~5x more to build, and the server builds
    one per event on every append and poll. Treat it as read-only all the same.
    """

    event_id: int
    topic: str
    payload: Any
    timestamp: int
    metadata: dict[str, Any] | None
    source_trn: str | None
    target_trn: str | None
    correlation_id: str | None
