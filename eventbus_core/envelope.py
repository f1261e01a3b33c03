"""Events on the wire (DESIGN.md §4), as pydantic models.

`EmitParams` validates what a client sends to `emit_event`; `EventEnvelope` is
a stored event as the client reads it back. The server keeps stored events as
`event.Event`, whose fields `EventEnvelope` repeats (a test holds them equal).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from eventbus_core.numbers import UInt63
from eventbus_core.topics import validate_topic
from eventbus_core.trn import validate_trn

__all__ = ["DELIVERY_FIELDS", "EmitParams", "EventEnvelope", "Topic", "TrnStr"]

#: What an emit may add to the event's fields to deliver it later (DESIGN §11).
DELIVERY_FIELDS = ("deliver_at", "delay_ms")


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
    #: Deliver later (DESIGN §11): at this epoch-ms time, or this long from now. The bus
    #: checks how far ahead (its `max_schedule_delay_s`); the event gets its id when due.
    deliver_at: UInt63 | None = None
    delay_ms: UInt63 | None = None

    @model_validator(mode="after")
    def _one_delivery_time(self) -> EmitParams:
        if self.deliver_at is not None and self.delay_ms is not None:
            raise ValueError("give deliver_at or delay_ms, not both")
        return self

    @property
    def delayed(self) -> bool:
        """Whether the event is to be appended later rather than now."""
        return self.deliver_at is not None or self.delay_ms is not None


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
