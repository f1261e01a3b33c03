"""One event, one field list (DESIGN.md §4).

`Event` is a stored event; its dataclass fields are THE field list
(`EVENT_FIELDS`), and every other shape derives from it:

- the wire form: orjson encodes an `Event` as it is (`EventEnvelope` in
  envelope.py, the client's model, has the same fields; a test holds them
  equal);
- the stored row: `NewEvent` is an event before the log gives it its id
  (`NEW_EVENT_FIELDS` are the INSERT columns, `EVENT_FIELDS` the SELECT
  columns of both SQL backends);
- the rule view: `Event.rule_view()`, the JSON object rules look at.

`Event` is a slotted dataclass so the hot path (fan-out, polls of 10,000
events) never builds pydantic objects. Not frozen: a frozen dataclass costs
~5x more to build, and the server builds one per event on every append and
poll. Treat it as read-only all the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["EVENT_FIELDS", "NEW_EVENT_FIELDS", "OPTIONAL_FIELDS", "Event", "NewEvent", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Event:
    """A stored event."""

    event_id: int
    topic: str
    payload: Any
    timestamp: int
    metadata: dict[str, Any] | None
    source_trn: str | None
    target_trn: str | None
    correlation_id: str | None

    def rule_view(self) -> dict[str, Any]:
        """The event as the JSON object conditions, patterns and templates look at.

        Optional fields the event does not have are left out rather than null,
        so `{"exists": false}` on `source_trn` means "emitted without a source".
        """
        view = {
            "event_id": self.event_id,
            "topic": self.topic,
            "payload": self.payload,
            "timestamp": self.timestamp,
        }
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                view[name] = value
        return view

    def as_dict(self) -> dict[str, Any]:
        """The wire form as a dict (every field, null where absent)."""
        return {name: getattr(self, name) for name in EVENT_FIELDS}


#: Every field of a stored event, in wire and column order.
EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Event))
#: The fields an event may lack (null on the wire, left out of the rule view).
OPTIONAL_FIELDS: tuple[str, ...] = EVENT_FIELDS[4:]


@dataclass(slots=True)
class NewEvent:
    """A validated event waiting for its `event_id`; `timestamp` is already filled.

    Its fields are an `Event`'s without the id, plus the idempotency key the
    log keeps (but never hands back)."""

    topic: str
    payload: Any
    timestamp: int
    metadata: dict[str, Any] | None = None
    source_trn: str | None = None
    target_trn: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None

    def stored(self, event_id: int) -> Event:
        return Event(
            event_id,
            self.topic,
            self.payload,
            self.timestamp,
            self.metadata,
            self.source_trn,
            self.target_trn,
            self.correlation_id,
        )


#: The columns of a new row, in the order `NewEvent` holds them.
NEW_EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(NewEvent))

if NEW_EVENT_FIELDS[:-1] != EVENT_FIELDS[1:]:  # pragma: no cover - a field added to one shape only
    raise TypeError(
        f"NewEvent's fields {NEW_EVENT_FIELDS} must be Event's {EVENT_FIELDS} without event_id, plus idempotency_key"
    )
