"""Durable consumers as storage keeps them, and the rules of a lease (DESIGN.md §10).

Every backend stores the same two things: a consumer (its config, its
cursor in the log, its counters) and one delivery row per event it has
handed out and not yet seen acked. A row is in one of three states:

    leased   out to a worker until `due_at` (its lease); `deliveries` counts
             every delivery, this one included
    waiting  due again at `due_at` (after a nack, or a lease that expired,
             plus the backoff for the deliveries so far)
    dead     a dead letter since `due_at` (max_deliver reached, or `term`)

An ack deletes the row and counts it. Events after the cursor have no row
yet. `fetch_leases` does a whole fetch in one transaction: expired leases
move on, due rows are leased again, then events after the cursor that the
consumer's filter lets through are leased and the cursor moves past what it
read; so an event is leased once, and acked events are never delivered
again, also after a crash. The transitions and the choice of events are
computed here, once, for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from eventbus_core.codec import dumps
from eventbus_core.event import Event
from eventbus_server.storage.base import EventQuery

__all__ = [
    "DEAD_MAX_DELIVER",
    "GONE",
    "ConsumerConfig",
    "Delivery",
    "FetchResult",
    "Scan",
    "Settle",
    "StoredConsumer",
    "expire",
    "page_rows",
    "pick",
    "settle",
]

DeliveryState = Literal["leased", "waiting", "dead"]
Settle = Literal["ack", "nack", "extend", "term"]

#: The reason of a dead letter that ran out of deliveries.
DEAD_MAX_DELIVER = "max_deliver"
#: The reason of a dead letter whose event retention removed before it was done.
GONE = "the event is no longer stored"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """What a consumer delivers and how (the params of `create_consumer`, checked)."""

    topic: str = ">"
    source_trn: str | None = None
    target_trn: str | None = None
    pattern: dict[str, Any] | None = None
    ack_wait_ms: int = 30_000
    max_deliver: int = 5
    backoff_ms: tuple[int, ...] = ()
    max_ack_pending: int = 1000

    def backoff_after(self, deliveries: int) -> int:
        """How long delivery `deliveries + 1` waits after an expiry or a plain nack."""
        if not self.backoff_ms or deliveries < 1:
            return 0
        return self.backoff_ms[min(deliveries, len(self.backoff_ms)) - 1]

    def wire(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "source_trn": self.source_trn,
            "target_trn": self.target_trn,
            "pattern": self.pattern,
            "ack_wait_ms": self.ack_wait_ms,
            "max_deliver": self.max_deliver,
            "backoff_ms": list(self.backoff_ms),
            "max_ack_pending": self.max_ack_pending,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ConsumerConfig:
        return cls(**{**data, "backoff_ms": tuple(data.get("backoff_ms") or ())})


@dataclass(slots=True)
class StoredConsumer:
    name: str
    config: ConsumerConfig
    #: Every event up to here has been handed out (or did not match).
    cursor: int
    created_at: int
    updated_at: int
    acked: int = 0
    redelivered: int = 0
    last_delivered_id: int = 0


@dataclass(slots=True)
class Delivery:
    event_id: int
    state: DeliveryState
    deliveries: int
    #: leased: when the lease ends; waiting: when it is due; dead: when it died.
    due_at: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Scan:
    """What a fetch takes of the log after the consumer's cursor."""

    #: The topic and TRN filters, which storage narrows in SQL.
    query: EventQuery
    #: The rest of the filter (an EventBridge pattern), run on each event read; None: all pass.
    accept: Callable[[Event], bool] | None
    #: The leased events, as JSON, hold at most this many bytes (at least one event).
    max_bytes: int
    #: Log pages read at most looking for matches, so a rare match cannot hold a fetch.
    max_pages: int = 10


@dataclass(slots=True)
class FetchResult:
    """What `fetch_leases` did: the events leased now (redeliveries first), rows that
    became dead letters on the way, and when the next row of the consumer falls due."""

    leased: list[tuple[Event, Delivery]] = field(default_factory=list)
    died: list[Delivery] = field(default_factory=list)
    next_due_ms: int | None = None


def expire(rows: list[Delivery], config: ConsumerConfig, now_ms: int) -> list[Delivery]:
    """Leases that ran out (`due_at <= now`) as their next state: waiting (after the
    backoff) or, once `max_deliver` deliveries went unacked, dead."""
    changed = []
    for row in rows:
        if row.state != "leased" or row.due_at > now_ms:
            continue
        if row.deliveries >= config.max_deliver:
            changed.append(Delivery(row.event_id, "dead", row.deliveries, now_ms, DEAD_MAX_DELIVER))
        else:
            changed.append(
                Delivery(
                    row.event_id,
                    "waiting",
                    row.deliveries,
                    row.due_at + config.backoff_after(row.deliveries),
                )
            )
    return changed


def settle(
    row: Delivery,
    action: Settle,
    config: ConsumerConfig,
    now_ms: int,
    *,
    delay_ms: int | None = None,
    reason: str | None = None,
) -> Delivery | None:
    """A leased row after `action` (None: acked, the row goes). Only leased rows settle."""
    if action == "ack":
        return None
    if action == "extend":
        return Delivery(row.event_id, "leased", row.deliveries, now_ms + config.ack_wait_ms)
    if action == "term":
        return Delivery(row.event_id, "dead", row.deliveries, now_ms, reason or "term")
    # nack: due again after delay_ms, or the backoff; unless it has had all its deliveries.
    if row.deliveries >= config.max_deliver:
        return Delivery(row.event_id, "dead", row.deliveries, now_ms, DEAD_MAX_DELIVER)
    wait = delay_ms if delay_ms is not None else config.backoff_after(row.deliveries)
    return Delivery(row.event_id, "waiting", row.deliveries, now_ms + wait)


def page_rows(scan: Scan, room: int, *, exact: bool, full_page: int) -> int:
    """How many events a fetch reads per page of the log. When SQL alone decides every
    match (`exact`, and no pattern to run on each event), every row read is leased, so it
    reads what it may lease: a fetch of one reads one event, not a page of them. Else a
    full page, so that a rare match is still found within `scan.max_pages`."""
    return max(1, min(full_page, room)) if exact and scan.accept is None else full_page


def pick(
    page: Iterable[Event], scan: Scan, room: int, budget: int, *, have_some: bool
) -> tuple[list[Event], int | None, int, bool]:
    """From a page of events after the cursor (in id order, the query's filter applied):
    those `scan.accept` lets through, up to `room` and `budget` bytes; where the cursor
    may go (past every event read, but not past one left for a later fetch); the
    budget left; and whether the fetch is full."""
    chosen: list[Event] = []
    cursor: int | None = None
    for event in page:
        if scan.accept is None or scan.accept(event):
            size = len(dumps(event))
            if (chosen or have_some) and size > budget:
                return chosen, cursor, budget, True
            chosen.append(event)
            budget -= size
        cursor = event.event_id
        if len(chosen) == room:
            return chosen, cursor, budget, True
    return chosen, cursor, budget, False


def redeliver(
    due: list[Delivery], events: dict[int, Event], config: ConsumerConfig, now_ms: int, budget: int
) -> tuple[list[tuple[Event, Delivery]], list[Delivery], int]:
    """Due rows leased again (one more delivery) while the budget lasts; rows whose event
    is gone become dead letters. The leases, the dead, and the budget left."""
    leased: list[tuple[Event, Delivery]] = []
    dead: list[Delivery] = []
    for row in due:
        event = events.get(row.event_id)
        if event is None:
            dead.append(Delivery(row.event_id, "dead", row.deliveries, now_ms, GONE))
            continue
        size = len(dumps(event))
        if leased and size > budget:
            break
        budget -= size
        leased.append(
            (
                event,
                Delivery(row.event_id, "leased", row.deliveries + 1, now_ms + config.ack_wait_ms),
            )
        )
    return leased, dead, budget
