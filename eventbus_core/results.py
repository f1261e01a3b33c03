"""What the bus's methods answer (DESIGN.md §5), typed once for both ends.

The server builds these shapes (`StoredRule.wire()`, `Firing.wire()`,
`Bus.info()`) and the client returns them, so a field added on one side is
a type error on the other until both agree. Results that are plain JSON
objects stay dicts at run time (`TypedDict`): the CLI, the dashboard and
`eventbus mcp` print and forward them as they are. `EmitResult` is a small
value both the server's writer and the client hand back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

__all__ = [
    "MAX_PENDING_COUNTED",
    "BusInfo",
    "BusStats",
    "ConsumerInfo",
    "ConsumerStats",
    "DeadLetter",
    "FiringInfo",
    "FiringStats",
    "RegisterResult",
    "RuleFailure",
    "RuleInfo",
    "RuleTestResult",
    "ScheduleCreated",
    "ScheduleInfo",
    "ScheduledCursorInfo",
    "ScheduledEventInfo",
    "ScheduledPage",
    "ScheduledResult",
    "TopicInfo",
]


@dataclass(frozen=True, slots=True)
class EmitResult:
    """One emitted event: its id and timestamp, or those of the event it repeats."""

    event_id: int
    timestamp: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ScheduledResult:
    """A delayed emit (DESIGN §11): stored to be appended at `deliver_at`; `duplicate`
    when its idempotency key names one still pending (that one is answered)."""

    schedule_id: str
    deliver_at: int
    duplicate: bool = False


class RuleInfo(TypedDict, total=False):
    """A stored rule: its body (`eventbus_core.rules.Rule`'s fields) and its counters."""

    id: str
    topic: str
    description: str | None
    match_fields: dict[str, Any] | None
    pattern: dict[str, Any] | None
    action: dict[str, Any]
    retry: dict[str, Any] | None
    enabled: bool
    fired: int
    failed: int
    last_fired_at: int | None
    created_at: int
    updated_at: int


class RegisterResult(TypedDict):
    id: str
    created: bool


class FiringInfo(TypedDict):
    """One (rule, event) pair's firing; `status` `failed` is a dead letter."""

    firing_id: int
    rule_id: str
    event_id: int
    status: Literal["pending", "ok", "failed", "skipped"]
    attempts: int
    started_at: int | None
    duration_ms: int | None
    result: Any
    error: str | None


class RuleFailure(TypedDict):
    """Why a rule did not match, one condition at a time (`test_rule`)."""

    path: str
    expected: Any
    saw: Any
    missing: bool


class RuleTestResult(TypedDict):
    matched: bool
    failures: list[RuleFailure]
    action: dict[str, Any]


class TopicInfo(TypedDict):
    topic: str
    count: int
    last_event_id: int
    last_timestamp: int


class FiringStats(TypedDict):
    matched: int
    ok: int
    failed: int
    skipped: int
    running: int
    match_errors: int
    match_too_large: int


class BusStats(TypedDict, total=False):
    emitted: int
    duplicates: int
    batches: int
    batches_split: int
    rejected_overloaded: int
    storage_errors: int  # group commits failed for a storage outage
    refused_connections: int
    closed_partial_line: int
    closed_unauthenticated: int
    closed_wrong_tokens: int
    closed_not_reading: int
    last_event_id: int
    topics: int
    subscriptions: int
    lagged: int
    connections: int
    queue_depth: int
    queue_bytes: int
    scheduled_appended: int  # delayed events and schedule ticks this node appended when due
    rules_enabled: int  # only with enable_rules
    rule_reloads: int  # only with enable_rules: reloads for other nodes' rule changes
    firings: FiringStats  # only with enable_rules


class BusInfo(TypedDict):
    id: str
    version: str
    persist: bool
    storage: str
    enable_rules: bool
    allowed_sources: list[str] | None
    max_concurrency: int
    uptime_s: float
    stats: BusStats


#: A consumer's `pending` count stops here: a lag to watch, not an exact figure past it.
MAX_PENDING_COUNTED = 100_000


class ConsumerStats(TypedDict):
    pending: int  # matching events after the cursor (at most MAX_PENDING_COUNTED are counted)
    ack_pending: int  # leased now
    waiting: int  # due again later (nacked, or a lease that ran out)
    acked: int
    redelivered: int
    dead: int
    last_delivered_id: int
    cursor: int


class ConsumerInfo(TypedDict):
    """A durable consumer: its config and its stats (DESIGN §10)."""

    name: str
    topic: str
    source_trn: str | None
    target_trn: str | None
    pattern: dict[str, Any] | None
    ack_wait_ms: int
    max_deliver: int
    backoff_ms: list[int]
    max_ack_pending: int
    created_at: int
    updated_at: int
    stats: ConsumerStats


class DeadLetter(TypedDict):
    event_id: int
    event: dict[str, Any] | None  # None once retention pruned the event
    deliveries: int
    reason: str
    dead_at: int


class ScheduledEventInfo(TypedDict):
    """A delayed event still pending (`list_scheduled`); `event` holds its fields
    (`timestamp` null unless the emitter set one: it is filled when appended)."""

    schedule_id: str
    deliver_at: int
    created_at: int
    event: dict[str, Any]


class ScheduledCursorInfo(TypedDict):
    deliver_at: int
    schedule_id: str


class ScheduledPage(TypedDict):
    """One page of `list_scheduled`, due first; `next` is the `after` of the next page (None: done)."""

    scheduled: list[ScheduledEventInfo]
    next: ScheduledCursorInfo | None


class ScheduleInfo(TypedDict):
    """A recurring schedule: its definition, and when it ticked and ticks next
    (`next_tick` None while disabled, or when it never ticks again)."""

    id: str
    cron: str | None
    every_ms: int | None
    timezone: str
    event: dict[str, Any]
    enabled: bool
    next_tick: int | None
    last_tick: int | None
    ticks: int
    created_at: int
    updated_at: int


class ScheduleCreated(TypedDict):
    id: str
    created: bool
    next_tick: int | None
