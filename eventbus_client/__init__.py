"""eventbus_client: talk to an eventbus from Python.

from eventbus_client import connect

async with await connect("tcp://127.0.0.1:4010") as bus:
    await bus.emit("repo.pushed", {"repo": "acme/api"}, source_trn="trn:user:alice:cli:v1")
"""

from eventbus_client.client import EventBusClient, PollResult, ReplayResult, connect
from eventbus_client.consumer import ConsumerMessage
from eventbus_client.subscription import FiringSubscription, Subscription
from eventbus_client.sync import SyncClient, SyncSubscription, connect_sync
from eventbus_core.envelope import EventEnvelope
from eventbus_core.errors import (
    AlreadyExists,
    ConnectionLost,
    EventBusError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    NotFound,
    Overloaded,
    ParseError,
    ReservedTopic,
    RulesDisabled,
    SourceNotAllowed,
    StorageUnavailable,
    Unauthorized,
)
from eventbus_core.results import (
    BusInfo,
    BusStats,
    ConsumerInfo,
    ConsumerStats,
    DeadLetter,
    EmitResult,
    FiringInfo,
    FiringStats,
    RegisterResult,
    RuleFailure,
    RuleInfo,
    RuleTestResult,
    ScheduleCreated,
    ScheduledCursorInfo,
    ScheduledEventInfo,
    ScheduledPage,
    ScheduledResult,
    ScheduleInfo,
    TopicInfo,
)

__all__ = [
    "AlreadyExists",
    "BusInfo",
    "BusStats",
    "ConnectionLost",
    "ConsumerInfo",
    "ConsumerMessage",
    "ConsumerStats",
    "DeadLetter",
    "EmitResult",
    "EventBusClient",
    "EventBusError",
    "EventEnvelope",
    "FiringInfo",
    "FiringStats",
    "FiringSubscription",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MessageTooLarge",
    "MethodNotFound",
    "NotFound",
    "Overloaded",
    "ParseError",
    "PollResult",
    "RegisterResult",
    "ReplayResult",
    "ReservedTopic",
    "RuleFailure",
    "RuleInfo",
    "RuleTestResult",
    "RulesDisabled",
    "ScheduleCreated",
    "ScheduleInfo",
    "ScheduledCursorInfo",
    "ScheduledEventInfo",
    "ScheduledPage",
    "ScheduledResult",
    "SourceNotAllowed",
    "StorageUnavailable",
    "Subscription",
    "SyncClient",
    "SyncSubscription",
    "TopicInfo",
    "Unauthorized",
    "connect",
    "connect_sync",
]
