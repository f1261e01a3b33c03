"""The params of every bus method, as pydantic models (DESIGN.md §5).

The bus validates calls with them (`eventbus_server.rpc`), and `eventbus mcp`
generates its tools' input schemas from them, so the two cannot drift.
Strict, like every params model: `"5"` is not a cursor and `1` is not `true`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from eventbus_core.cron import MAX_EVERY_MS, MIN_EVERY_MS, validate_cron, validate_timezone
from eventbus_core.emit_rows import MAX_EMIT_EVENTS
from eventbus_core.envelope import EmitParams, Topic, TrnStr
from eventbus_core.numbers import UInt63
from eventbus_core.topics import validate_topic_pattern
from eventbus_core.trn import validate_trn_pattern

__all__ = [
    "FIRING_STATUSES",
    "MAX_CONSUMER_WAIT_MS",
    "AckParams",
    "AuthenticateParams",
    "CancelScheduledParams",
    "ConsumerNameParams",
    "CreateConsumerParams",
    "CreateScheduleParams",
    "DeadLettersParams",
    "EmitEventsParams",
    "FetchParams",
    "ListFiringsParams",
    "ListScheduledParams",
    "ListSchedulesParams",
    "MethodParams",
    "NackParams",
    "NoParams",
    "PollParams",
    "RedriveParams",
    "ReplayParams",
    "RetryFiringsParams",
    "RuleIdParams",
    "ScheduleEvent",
    "ScheduleIdParams",
    "ScheduledCursor",
    "SetRuleEnabledParams",
    "SetScheduleEnabledParams",
    "StartAfter",
    "StartFrom",
    "SubscribeFiringsParams",
    "SubscribeParams",
    "TermParams",
    "TestRuleParams",
    "UnsubscribeParams",
]

TopicPattern = Annotated[str, AfterValidator(validate_topic_pattern)]
TrnPattern = Annotated[str, AfterValidator(validate_trn_pattern)]
Limit = Annotated[int, Field(ge=1, le=10_000)]

#: `pending` while a firing is claimed but not finished; the rest are final.
FiringStatus = Literal["pending", "ok", "failed", "skipped"]
FIRING_STATUSES: tuple[str, ...] = get_args(FiringStatus)


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PollParams(MethodParams):
    topic: TopicPattern = ">"
    since: UInt63 = 0
    limit: Limit = 100
    source_trn: TrnPattern | None = None
    target_trn: TrnPattern | None = None
    correlation_id: str | None = None
    from_ts: UInt63 | None = None
    to_ts: UInt63 | None = None
    order: Literal["asc", "desc"] = "asc"


class SubscribeParams(MethodParams):
    topic: TopicPattern
    since: UInt63 | None = None
    source_trn: TrnPattern | None = None
    target_trn: TrnPattern | None = None


class TestRuleParams(MethodParams):
    __test__ = False  # not a pytest class, whatever its name says

    rule: dict[str, Any] | None = None
    rule_id: str | None = None
    event: dict[str, Any]


class ListFiringsParams(MethodParams):
    rule_id: str | None = None
    status: FiringStatus | None = None
    since: UInt63 = 0
    limit: Limit = 100
    order: Literal["asc", "desc"] = "asc"


class NoParams(MethodParams):
    pass


class EmitEventsParams(MethodParams):
    events: list[EmitParams] = Field(max_length=MAX_EMIT_EVENTS)


class UnsubscribeParams(MethodParams):
    subscription: str


class AuthenticateParams(MethodParams):
    token: str


class RuleIdParams(MethodParams):
    id: str


class SetRuleEnabledParams(MethodParams):
    id: str
    enabled: bool


class RetryFiringsParams(MethodParams):
    firing_ids: Annotated[list[UInt63], Field(min_length=1, max_length=10_000)] | None = None
    rule_id: str | None = None
    status: Literal["failed", "skipped", "ok"] = "failed"


class SubscribeFiringsParams(MethodParams):
    rule_id: str | None = None


class ReplayParams(MethodParams):
    since_ts: UInt63
    until_ts: UInt63
    topic: TopicPattern = ">"
    source_trn: TrnPattern | None = None
    target_trn: TrnPattern | None = None
    to_topic: Topic | None = None
    to_bus: str | None = None
    dry_run: bool = False
    after_id: UInt63 = 0
    until_id: UInt63 | None = None
    limit: Limit = 1000


# -- durable consumers (DESIGN §10) ------------------------------------------------------

_CONSUMER_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _consumer_name(value: str) -> str:
    if not _CONSUMER_NAME.fullmatch(value):
        raise ValueError("must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return value


ConsumerName = Annotated[str, AfterValidator(_consumer_name)]
#: One id list of ack / nack / extend / term: what one call may settle.
EventIds = Annotated[list[UInt63], Field(min_length=1, max_length=1000)]
#: The longest wait any consumer setting may ask for: a day.
MAX_CONSUMER_WAIT_MS = 86_400_000


class StartAfter(MethodParams):
    after_id: UInt63


class StartFrom(MethodParams):
    from_ts: UInt63


class CreateConsumerParams(MethodParams):
    name: ConsumerName
    topic: TopicPattern = ">"
    source_trn: TrnPattern | None = None
    target_trn: TrnPattern | None = None
    pattern: dict[str, Any] | None = None
    #: "new": events stored from now on; "all": every stored event; or after an id / from a time.
    start: Literal["new", "all"] | StartAfter | StartFrom = "new"
    ack_wait_ms: int = Field(default=30_000, ge=100, le=MAX_CONSUMER_WAIT_MS)
    max_deliver: int = Field(default=5, ge=1, le=1000)
    backoff_ms: Annotated[
        list[Annotated[int, Field(ge=0, le=MAX_CONSUMER_WAIT_MS)]], Field(max_length=50)
    ] = []
    max_ack_pending: int = Field(default=1000, ge=1, le=10_000)
    replace: bool = False


class ConsumerNameParams(MethodParams):
    name: ConsumerName


class FetchParams(MethodParams):
    consumer: ConsumerName
    max: int = Field(default=10, ge=1, le=1000)
    wait_ms: int = Field(default=0, ge=0, le=60_000)


class AckParams(MethodParams):
    consumer: ConsumerName
    event_ids: EventIds


class NackParams(AckParams):
    delay_ms: int | None = Field(default=None, ge=0, le=MAX_CONSUMER_WAIT_MS)


class TermParams(AckParams):
    reason: str | None = Field(default=None, min_length=1, max_length=1000)


class DeadLettersParams(MethodParams):
    consumer: ConsumerName
    after_id: UInt63 = 0
    limit: Limit = 100


class RedriveParams(MethodParams):
    consumer: ConsumerName
    event_ids: Annotated[list[UInt63], Field(min_length=1, max_length=10_000)] | None = None


# -- scheduled events and schedules (DESIGN §11) -----------------------------------

#: Schedule ids are rule ids' alphabet (DESIGN §4): they go into TRNs and CLI arguments.
ScheduleId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
Cron = Annotated[str, AfterValidator(validate_cron)]
TimeZone = Annotated[str, AfterValidator(validate_timezone)]


class CancelScheduledParams(MethodParams):
    schedule_id: Annotated[str, Field(min_length=1, max_length=128)]


class ScheduledCursor(MethodParams):
    """Where a page of `list_scheduled` ended: its last item's due time and id."""

    deliver_at: UInt63
    schedule_id: Annotated[str, Field(min_length=1, max_length=128)]


class ListScheduledParams(MethodParams):
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    after: ScheduledCursor | None = None


class ScheduleEvent(MethodParams):
    """The event each tick of a schedule appends (its topic and fields, no time)."""

    topic: Topic
    payload: Any = None
    metadata: dict[str, Any] | None = None
    source_trn: TrnStr | None = None
    target_trn: TrnStr | None = None
    correlation_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None


class CreateScheduleParams(MethodParams):
    id: ScheduleId
    cron: Cron | None = None
    every_ms: Annotated[int, Field(ge=MIN_EVERY_MS, le=MAX_EVERY_MS)] | None = None
    timezone: TimeZone = "UTC"
    event: ScheduleEvent
    enabled: bool = True
    replace: bool = False

    @model_validator(mode="after")
    def _one_cadence(self) -> CreateScheduleParams:
        if (self.cron is None) == (self.every_ms is None):
            raise ValueError("give either cron (a 5-field cron expression) or every_ms")
        if self.every_ms is not None and self.timezone != "UTC":
            raise ValueError("timezone goes with cron; every_ms counts from the epoch")
        return self


class ScheduleIdParams(MethodParams):
    id: ScheduleId


class SetScheduleEnabledParams(MethodParams):
    id: ScheduleId
    enabled: bool


class ListSchedulesParams(MethodParams):
    after_id: ScheduleId | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 1000
