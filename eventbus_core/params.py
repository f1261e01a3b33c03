"""The params of every bus method, as pydantic models (DESIGN.md §5).

The bus validates calls with them (`eventbus_server.rpc`), and `eventbus mcp`
generates its tools' input schemas from them, so the two cannot drift.
Strict, like every params model: `"5"` is not a cursor and `1` is not `true`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from eventbus_core.cron import MAX_EVERY_MS, MIN_EVERY_MS, validate_cron, validate_timezone
from eventbus_core.envelope import EmitParams, Topic, TrnStr
from eventbus_core.numbers import UInt63
from eventbus_core.topics import validate_topic_pattern
from eventbus_core.trn import validate_trn_pattern

__all__ = [
    "FIRING_STATUSES",
    "AuthenticateParams",
    "CancelScheduledParams",
    "CreateScheduleParams",
    "EmitEventsParams",
    "ListFiringsParams",
    "ListScheduledParams",
    "ListSchedulesParams",
    "MethodParams",
    "NoParams",
    "PollParams",
    "ReplayParams",
    "RetryFiringsParams",
    "RuleIdParams",
    "ScheduleEvent",
    "ScheduleIdParams",
    "ScheduledCursor",
    "SetRuleEnabledParams",
    "SetScheduleEnabledParams",
    "SubscribeFiringsParams",
    "SubscribeParams",
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
    events: list[EmitParams] = Field(max_length=10_000)


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
