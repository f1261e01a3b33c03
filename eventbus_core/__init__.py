"""eventbus_core: wire types and pure logic shared by server, client and CLI. No I/O."""

from eventbus_core.envelope import EmitParams, EventEnvelope
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
    error_class_for,
    from_error_object,
    to_error_object,
)
from eventbus_core.event import Event, now_ms
from eventbus_core.topics import (
    compile_topic_pattern,
    topic_matches,
    validate_topic,
    validate_topic_pattern,
)
from eventbus_core.trn import (
    Trn,
    compile_trn_pattern,
    parse_trn,
    trn_matches,
    validate_trn,
    validate_trn_pattern,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "ConnectionLost",
    "EmitParams",
    "Event",
    "EventBusError",
    "EventEnvelope",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MessageTooLarge",
    "MethodNotFound",
    "NotFound",
    "Overloaded",
    "ParseError",
    "ReservedTopic",
    "RulesDisabled",
    "SourceNotAllowed",
    "StorageUnavailable",
    "Trn",
    "Unauthorized",
    "__version__",
    "compile_topic_pattern",
    "compile_trn_pattern",
    "error_class_for",
    "from_error_object",
    "now_ms",
    "parse_trn",
    "to_error_object",
    "topic_matches",
    "trn_matches",
    "validate_topic",
    "validate_topic_pattern",
    "validate_trn",
    "validate_trn_pattern",
]
