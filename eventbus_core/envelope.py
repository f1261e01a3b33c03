"""Events on the wire (DESIGN.md §4), as pydantic models.

`EmitParams` validates what a client sends to `emit_event`; `EventEnvelope` is
a stored event as the client reads it back. The server keeps stored events as
`event.Event`, whose fields `EventEnvelope` repeats (a test holds them equal).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from eventbus_core.numbers import UInt63
from eventbus_core.topics import validate_topic
from eventbus_core.trn import validate_trn

__all__ = ["EmitParams", "EventEnvelope", "Topic", "TrnStr"]


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
