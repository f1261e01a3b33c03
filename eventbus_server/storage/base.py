"""The storage contract every backend (memory, sqlite, postgres) fulfils.

The bus owns the single writer: it hands `append` whole batches, one
transaction each (group commit), and only acknowledges emitters after
`append` returns. Reads (`query`, `list_topics`) may run concurrently with
the writer. Backends raise `StorageUnavailable` when the database cannot be
reached; anything else is a bug.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eventbus_core.envelope import Event
from eventbus_core.topics import compile_topic_pattern, literal_prefix
from eventbus_core.trn import compile_trn_pattern

__all__ = [
    "EventQuery",
    "Narrowing",
    "NewEvent",
    "Storage",
    "StoredKey",
    "TopicStats",
    "topic_narrowing",
    "trn_narrowing",
]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A validated event waiting for its `event_id`; `timestamp` is already filled."""

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


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What an idempotency key points at: the first event emitted with it."""

    event_id: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class TopicStats:
    topic: str
    count: int
    last_event_id: int
    last_timestamp: int


@dataclass(frozen=True, slots=True)
class EventQuery:
    """The filters of `poll_events`; patterns are validated before they get here.

    `since` is an exclusive cursor: ascending returns ids > since, descending
    returns ids < since (or the newest events when since is 0).
    """

    topic: str = ">"
    since: int = 0
    limit: int = 100
    source_trn: str | None = None
    target_trn: str | None = None
    correlation_id: str | None = None
    from_ts: int | None = None
    to_ts: int | None = None
    order: Literal["asc", "desc"] = "asc"

    def matches(self, event: Event) -> bool:
        """The exact test, shared by every backend after its own narrowing."""
        if not compile_topic_pattern(self.topic)(event.topic):
            return False
        if self.source_trn is not None and not (
            event.source_trn is not None and compile_trn_pattern(self.source_trn)(event.source_trn)
        ):
            return False
        if self.target_trn is not None and not (
            event.target_trn is not None and compile_trn_pattern(self.target_trn)(event.target_trn)
        ):
            return False
        if self.correlation_id is not None and event.correlation_id != self.correlation_id:
            return False
        if self.from_ts is not None and event.timestamp < self.from_ts:
            return False
        return self.to_ts is None or event.timestamp <= self.to_ts


@dataclass(frozen=True, slots=True)
class Narrowing:
    """A cheap, index-friendly check a SQL backend runs before `EventQuery.matches`.

    `exact`: the column equals `value`; otherwise it starts with `value`, which
    SQL checks as the range `value <= column < upper_bound` (topics and TRNs
    are ASCII, so byte order and string order agree).
    """

    value: str
    exact: bool

    @property
    def upper_bound(self) -> str:
        """The least string above every string that starts with `value`."""
        return self.value[:-1] + chr(ord(self.value[-1]) + 1)


def topic_narrowing(pattern: str) -> Narrowing | None:
    """What a topic pattern pins down before its first wildcard; None if nothing."""
    if "*" not in pattern and ">" not in pattern:
        return Narrowing(pattern, exact=True)
    prefix = literal_prefix(pattern)
    return Narrowing(prefix, exact=False) if prefix else None


def trn_narrowing(pattern: str) -> Narrowing:
    """What a TRN pattern pins down before its first `*` segment (at least `trn:`)."""
    if pattern.endswith(":"):
        return Narrowing(pattern, exact=False)
    if "*" not in pattern:
        return Narrowing(pattern, exact=True)
    segments = pattern.partition("@")[0].split(":")
    return Narrowing(":".join(segments[: segments.index("*")]) + ":", exact=False)


class Storage(ABC):
    """One bus's event log (and, later, its rules, firings and cursors)."""

    #: "memory", "sqlite" or "postgres"; shown by bus_info.
    kind: str

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema. Called once before anything else."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release everything. Safe to call twice."""

    @abstractmethod
    async def append(self, events: Sequence[NewEvent]) -> list[Event]:
        """Store `events` in one transaction, in order; return them with their ids."""

    @abstractmethod
    async def find_keys(self, keys: Sequence[str], since_ts: int) -> dict[str, StoredKey]:
        """The events stored with these idempotency keys at or after `since_ts`."""

    @abstractmethod
    async def query(self, query: EventQuery) -> list[Event]:
        """Up to `query.limit` events matching `query`, in `query.order`."""

    @abstractmethod
    async def list_topics(self) -> list[TopicStats]:
        """Every stored topic with its count and last event."""

    @abstractmethod
    async def last_event_id(self) -> int:
        """The highest event_id ever assigned (0 for an empty log)."""

    @abstractmethod
    async def count(self) -> int:
        """How many events are stored now."""

    async def prune(self, *, max_events: int | None, min_timestamp: int | None) -> int:
        """Drop the oldest events beyond retention; returns how many went. Optional."""
        return 0
