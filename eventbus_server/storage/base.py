"""The storage contract every backend (memory, sqlite, postgres) fulfils.

The bus owns the single writer: it hands `append` whole batches, one
transaction each (group commit), and only acknowledges emitters after
`append` returns. Reads (`query`, `list_topics`) may run concurrently with
the writer. Backends raise `StorageUnavailable` when the database cannot be
reached; anything else is a bug.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from eventbus_core.cron import Cadence
from eventbus_core.event import Event, NewEvent
from eventbus_core.params import FIRING_STATUSES
from eventbus_core.results import FiringInfo, RuleInfo, ScheduledEventInfo, ScheduleInfo
from eventbus_core.topics import compile_topic_pattern, literal_prefix
from eventbus_core.trn import compile_trn_pattern

if TYPE_CHECKING:  # consumers.py reads EventQuery from here
    from eventbus_server.storage.consumers import (
        ConsumerConfig,
        Delivery,
        FetchResult,
        Scan,
        Settle,
        StoredConsumer,
    )

__all__ = [
    "FIRING_STATUSES",
    "READ_PAGE_BYTES",
    "SCHEDULE_PAGE_BYTES",
    "EventQuery",
    "Firing",
    "FiringQuery",
    "FiringSelection",
    "KeysTaken",
    "Narrowing",
    "NewEvent",
    "ScheduledEvent",
    "SchemaTooNew",
    "Storage",
    "StoredKey",
    "StoredRule",
    "StoredSchedule",
    "TopicStats",
    "row_bytes",
    "topic_narrowing",
    "trn_narrowing",
]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer eventbus than this one."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What an idempotency key points at: the first event emitted with it."""

    event_id: int
    timestamp: int


class KeysTaken(Exception):
    """Another node stored events with some of these idempotency keys meanwhile."""

    def __init__(self, found: dict[str, StoredKey]) -> None:
        super().__init__(f"idempotency keys stored meanwhile by another node: {sorted(found)}")
        self.found = found


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
    #: Stop once the events read hold about this many bytes of JSON (at least one
    #: event is returned). A page may then be shorter than `limit`: read on from
    #: its last id until a page is empty. None: no bound (memory already holds them).
    max_bytes: int | None = None

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


#: The bound internal readers of the log (catch-up, the commit feed, the rule
#: engine) put on one page, so a page of 1 MiB events is not a GiB in memory.
READ_PAGE_BYTES = 8 * 1024 * 1024

#: What a row costs beyond its payload and metadata text, for `EventQuery.max_bytes`.
ROW_OVERHEAD_BYTES = 64


def row_bytes(payload: str | None, metadata: str | None) -> int:
    """The size `EventQuery.max_bytes` counts for a stored row (its JSON text)."""
    return ROW_OVERHEAD_BYTES + len(payload or "") + len(metadata or "")


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


@dataclass(slots=True)
class StoredRule:
    """A rule as stored: its wire body (see `eventbus_core.rules.Rule`) and counters."""

    id: str
    body: dict[str, Any]
    enabled: bool
    created_at: int
    updated_at: int
    fired: int = 0
    failed: int = 0
    last_fired_at: int | None = None

    def wire(self) -> RuleInfo:
        return {
            **self.body,  # type: ignore[typeddict-item]  # the body holds the rule's own fields
            "enabled": self.enabled,
            "fired": self.fired,
            "failed": self.failed,
            "last_fired_at": self.last_fired_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class Firing:
    """One (rule, event) pair: claimed once, then finished with a final status."""

    firing_id: int
    rule_id: str
    event_id: int
    status: str = "pending"
    attempts: int = 0
    started_at: int | None = None
    duration_ms: int | None = None
    result: Any = None
    error: str | None = None

    def wire(self) -> FiringInfo:
        return {
            "firing_id": self.firing_id,
            "rule_id": self.rule_id,
            "event_id": self.event_id,
            "status": self.status,  # type: ignore[typeddict-item]  # one of FIRING_STATUSES
            "attempts": self.attempts,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "result": self.result,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class FiringQuery:
    """The filters of `list_firings`; `since` is an exclusive firing_id cursor."""

    rule_id: str | None = None
    status: str | None = None
    since: int = 0
    limit: int = 100
    order: Literal["asc", "desc"] = "asc"

    def matches(self, firing: Firing) -> bool:
        if self.rule_id is not None and firing.rule_id != self.rule_id:
            return False
        if self.status is not None and firing.status != self.status:
            return False
        if self.order == "asc":
            return firing.firing_id > self.since
        return self.since == 0 or firing.firing_id < self.since


@dataclass(frozen=True, slots=True)
class FiringSelection:
    """Which final firings `retry_firings` runs again: by id, or every one of a rule
    (or of the bus) in `status`; at most `limit` of them, oldest first."""

    firing_ids: tuple[int, ...] | None = None
    rule_id: str | None = None
    status: str = "failed"
    limit: int = 10_000

    def matches(self, firing: Firing) -> bool:
        if firing.status != self.status:
            return False
        if self.firing_ids is not None and firing.firing_id not in self.firing_ids:
            return False
        return self.rule_id is None or firing.rule_id == self.rule_id


#: What one turn of the scheduler moves into the log at most, in bytes of JSON
#: (at least one event), so a turn over 1 MiB events is not a GiB in memory.
SCHEDULE_PAGE_BYTES = READ_PAGE_BYTES


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """A delayed event (DESIGN §11): stored at once, appended to the log at `deliver_at`.

    `timestamp` is the emitter's, or None: the event then gets the time it is
    appended, like any event the bus stamps.
    """

    schedule_id: str
    deliver_at: int
    created_at: int
    topic: str
    payload: Any = None
    timestamp: int | None = None
    metadata: dict[str, Any] | None = None
    source_trn: str | None = None
    target_trn: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None

    def due(self, now_ms: int) -> NewEvent:
        """The event to append now."""
        return NewEvent(
            topic=self.topic,
            payload=self.payload,
            timestamp=self.timestamp if self.timestamp is not None else now_ms,
            metadata=self.metadata,
            source_trn=self.source_trn,
            target_trn=self.target_trn,
            correlation_id=self.correlation_id,
            idempotency_key=self.idempotency_key,
        )

    def wire(self) -> ScheduledEventInfo:
        event = {
            "topic": self.topic,
            "payload": self.payload,
            "timestamp": self.timestamp,
            "metadata": self.metadata,
            "source_trn": self.source_trn,
            "target_trn": self.target_trn,
            "correlation_id": self.correlation_id,
        }
        return {
            "schedule_id": self.schedule_id,
            "deliver_at": self.deliver_at,
            "created_at": self.created_at,
            "event": event,
        }


@dataclass(slots=True)
class StoredSchedule:
    """A recurring schedule as stored: its definition (`body`: `cron` or `every_ms`,
    `timezone`, `event`) and its state. `next_tick` is None while disabled, or
    when the cadence never ticks again."""

    id: str
    body: dict[str, Any]
    enabled: bool
    next_tick: int | None
    last_tick: int | None = None
    ticks: int = 0
    created_at: int = 0
    updated_at: int = 0

    def cadence(self) -> Cadence:
        body = self.body
        return Cadence(
            cron=body.get("cron"),
            every_ms=body.get("every_ms"),
            timezone=body.get("timezone", "UTC"),
        )

    def first_tick(self, now_ms: int) -> int | None:
        """`next_tick` for a schedule (re)defined or enabled at `now_ms`."""
        return self.cadence().after(now_ms) if self.enabled else None

    def tick(self, bus_id: str, now_ms: int) -> NewEvent:
        """Fire the tick due now: the latest one (missed ones are not caught up).

        Moves `next_tick` on, sets `last_tick`, counts it, and returns the event
        to append with it, in the same transaction.
        """
        assert self.next_tick is not None
        tick, self.next_tick = self.cadence().due(self.next_tick, now_ms)
        self.last_tick = tick
        self.ticks += 1
        event = self.body["event"]
        return NewEvent(
            topic=event["topic"],
            payload=event.get("payload"),
            timestamp=now_ms,
            metadata={**(event.get("metadata") or {}), "schedule": {"id": self.id, "tick": tick}},
            source_trn=event.get("source_trn") or f"trn:eventbus:{bus_id}:schedule:{self.id}",
            target_trn=event.get("target_trn"),
            correlation_id=event.get("correlation_id"),
        )

    def wire(self) -> ScheduleInfo:
        body = self.body
        return {
            "id": self.id,
            "cron": body.get("cron"),
            "every_ms": body.get("every_ms"),
            "timezone": body.get("timezone", "UTC"),
            "event": body["event"],
            "enabled": self.enabled,
            "next_tick": self.next_tick,
            "last_tick": self.last_tick,
            "ticks": self.ticks,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Storage(ABC):
    """One bus's event log, with its rules, rule firings and cursors."""

    #: "memory", "sqlite" or "postgres"; shown by bus_info.
    kind: str
    #: True when other processes may write the same bus (PostgreSQL): the bus
    #: then learns of their commits and rule changes through `watch`.
    shared: bool = False

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema. Called once before anything else."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release everything. Safe to call twice."""

    @abstractmethod
    async def append(
        self, events: Sequence[NewEvent], *, keys_since_ts: int | None = None
    ) -> list[Event]:
        """Store `events` in one transaction, in order; return them with their ids.

        `keys_since_ts`: the caller checked the idempotency keys of `events`
        with `find_keys(…, keys_since_ts)` before. On `shared` storage another
        node may have stored one of them since, so the append checks again
        inside its transaction and raises `KeysTaken` (storing nothing) if so.
        A single node's one writer cannot race itself: other backends ignore it.
        """

    def append_now(self, events: Sequence[NewEvent]) -> list[Event] | None:
        """`append`, done before this returns if this storage commits `events` without
        waiting (on the event loop, as SQLite does small batches at `durability: normal`);
        None, with nothing done, if it would have to wait: then `append`. For events
        without idempotency keys (nothing to check again on shared storage)."""
        return None

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

    # -- rules ---------------------------------------------------------------

    @abstractmethod
    async def load_rules(self) -> list[StoredRule]:
        """Every stored rule, in id order."""

    @abstractmethod
    async def put_rule(
        self, rule_id: str, body: dict[str, Any], enabled: bool, now_ms: int
    ) -> bool:
        """Insert or replace a rule (a replaced rule keeps its counters); True if new."""

    @abstractmethod
    async def delete_rule(self, rule_id: str) -> bool:
        """Remove a rule (its firings stay, as history); False if there was none."""

    @abstractmethod
    async def set_rule_enabled(self, rule_id: str, enabled: bool, now_ms: int) -> bool:
        """False if there is no such rule."""

    # -- firings and the engine's cursor -------------------------------------

    @abstractmethod
    async def claim_firings(self, pairs: Sequence[tuple[str, int]], cursor: int) -> list[Firing]:
        """In one transaction: record each (rule_id, event_id) as `pending` unless it
        already has a firing, and move the engine's cursor to `cursor`.

        Returns only the firings created now, in the order of `pairs`; a pair
        claimed before (a replay after a crash) is left as it is.
        """

    @abstractmethod
    async def finish_firing(self, firing: Firing) -> None:
        """Store a firing's final status and bump its rule's counters, in one transaction."""

    @abstractmethod
    async def rearm_firings(self, selection: FiringSelection) -> list[Firing]:
        """In one transaction: set the selected final firings back to `pending` (this
        node's, on shared storage), take a `failed` one off its rule's `failed`
        counter, and return them as they were (attempts kept), oldest first.

        For `retry_firings`: the engine runs them again under the same firing_id.
        """

    @abstractmethod
    async def pending_firings(self) -> list[Firing]:
        """Firings claimed but never finished (cut off by a crash), oldest first.

        On `shared` storage: only those whose node is gone, adopted by this
        one (the engine asks again from time to time, to take over from a node
        that died while running).
        """

    @abstractmethod
    async def list_firings(self, query: FiringQuery) -> list[Firing]:
        """Up to `query.limit` firings matching `query`, by firing_id in `query.order`."""

    @abstractmethod
    async def load_cursor(self) -> int | None:
        """The last event the rule engine has claimed firings for; None if it never ran."""

    @abstractmethod
    async def save_cursor(self, event_id: int) -> None:
        """Move the rule engine's cursor forward (never backward)."""

    # -- durable consumers (consumers.py has the states and transitions) --------

    @abstractmethod
    async def put_consumer(
        self, name: str, config: ConsumerConfig, cursor: int, now_ms: int
    ) -> bool:
        """Create a consumer at `cursor`, or change the config of one that exists (its
        cursor and deliveries stay); True when it was created."""

    @abstractmethod
    async def load_consumer(self, name: str) -> StoredConsumer | None: ...

    @abstractmethod
    async def list_consumers(self) -> list[StoredConsumer]: ...

    @abstractmethod
    async def delete_consumer(self, name: str) -> bool:
        """Forget the consumer and every delivery of it; False when there was none."""

    @abstractmethod
    async def fetch_leases(
        self, name: str, now_ms: int, limit: int, scan: Scan
    ) -> FetchResult | None:
        """One fetch, in one transaction (None: no such consumer): expired leases become
        waiting or dead (`expire`); as far as `limit` and `max_ack_pending` leave room,
        waiting rows due by `now_ms` are leased again, oldest event first
        (`redeliver`), then events after the cursor that `scan` lets through are
        leased (`pick`) and the cursor moves past what was read."""

    @abstractmethod
    async def settle(
        self,
        name: str,
        event_ids: Sequence[int],
        action: Settle,
        now_ms: int,
        *,
        delay_ms: int | None = None,
        reason: str | None = None,
    ) -> tuple[int, list[Delivery]] | None:
        """Apply `action` to those of `event_ids` that are leased; how many changed, and
        those that became dead letters (None: no such consumer)."""

    @abstractmethod
    async def dead_letters(self, name: str, after_id: int, limit: int) -> list[Delivery]: ...

    @abstractmethod
    async def redrive(
        self, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int
    ) -> int:
        """Dead letters (these, or the oldest `limit`) due again now with their deliveries
        reset; how many."""

    @abstractmethod
    async def delivery_counts(self, name: str) -> dict[str, int]:
        """How many rows of the consumer are `leased`, `waiting` and `dead` now."""

    @abstractmethod
    async def count_after(self, query: EventQuery, since: int, cap: int) -> int:
        """How many stored events after `since` match `query`'s topic and TRN filters,
        counting at most `cap`."""

    # -- scheduled events and schedules (DESIGN §11; storage/*/schedules.py) ----

    @abstractmethod
    async def add_scheduled(
        self, items: Sequence[ScheduledEvent], *, max_pending: int
    ) -> list[ScheduledEvent]:
        """Store delayed events in one transaction, all or none; return what each
        item is now (itself, or the pending one its idempotency key names, which is
        answered as a duplicate and stores nothing). `Overloaded` when more than
        `max_pending` would then be pending.
        """

    @abstractmethod
    async def cancel_scheduled(self, schedule_id: str) -> bool:
        """Drop a pending delayed event; False when none is pending by that id
        (never was, cancelled, or appended already)."""

    @abstractmethod
    async def list_scheduled(
        self, *, after: tuple[int, str] | None, limit: int, max_bytes: int | None = None
    ) -> list[ScheduledEvent]:
        """Pending delayed events by (deliver_at, schedule_id), after `after`; about
        `max_bytes` of payload and metadata at most (at least one event)."""

    @abstractmethod
    async def put_schedule(
        self, schedule: StoredSchedule, *, replace: bool, max_schedules: int
    ) -> bool:
        """Store a schedule; True when new. A replaced one keeps its `last_tick`,
        `ticks` and `created_at`. `AlreadyExists` without `replace`; `Overloaded`
        when it would be one more than `max_schedules`."""

    @abstractmethod
    async def get_schedule(self, schedule_id: str) -> StoredSchedule | None: ...

    @abstractmethod
    async def list_schedules(self, *, after_id: str | None, limit: int) -> list[StoredSchedule]:
        """Schedules in id order, after `after_id`."""

    @abstractmethod
    async def delete_schedule(self, schedule_id: str) -> bool:
        """False when there is no such schedule."""

    @abstractmethod
    async def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, now_ms: int
    ) -> StoredSchedule | None:
        """Switch a schedule; one switched on ticks next after `now_ms` (ticks it
        missed while off are not caught up), one switched off has no `next_tick`.
        None when there is no such schedule."""

    @abstractmethod
    async def next_due(self) -> int | None:
        """The earliest `deliver_at` or enabled `next_tick`; None when nothing is scheduled."""

    @abstractmethod
    async def append_due(self, now_ms: int, *, bus_id: str, limit: int) -> list[Event]:
        """In one transaction: append to the log what is due at `now_ms` (delayed
        events, oldest first, and one tick of each due schedule), take those events
        off the pending set and move those schedules on; return the stored events.

        At most `limit` delayed events and `limit` schedules, and about
        SCHEDULE_PAGE_BYTES: call again while it returns any. Run by the bus's
        writer, in its order with every other commit. On `shared` storage each
        item is claimed inside the transaction, so two nodes never append one
        twice.
        """

    # -- other nodes -----------------------------------------------------------

    async def watch(
        self, on_commit: Callable[[int], None], on_rules_changed: Callable[[], None]
    ) -> None:
        """For `shared` storage: report commits (their last event_id) made by any
        process, and rule changes made by any other, until cancelled: this
        storage's own rule changes its caller has applied already. Unshared
        storage has nothing to report."""
        return
