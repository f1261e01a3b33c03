"""The params of every bus method, as pydantic models (DESIGN.md §5).

The bus validates calls with them (`eventbus_server.rpc`), and `eventbus mcp`
generates its tools' input schemas from them, so the two cannot drift.
Strict, like every params model: `"5"` is not a cursor and `1` is not `true`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from eventbus_core.envelope import EmitParams, Topic
from eventbus_core.numbers import UInt63
from eventbus_core.topics import validate_topic_pattern
from eventbus_core.trn import validate_trn_pattern

__all__ = [
    "FIRING_STATUSES",
    "AuthenticateParams",
    "EmitEventsParams",
    "ListFiringsParams",
    "MethodParams",
    "NoParams",
    "PollParams",
    "ReplayParams",
    "RetryFiringsParams",
    "RuleIdParams",
    "SetRuleEnabledParams",
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
