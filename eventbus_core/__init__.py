"""eventbus_core: wire types and pure logic shared by server, client and CLI. No I/O."""

from .envelope import EmitParams, Event, EventEnvelope, now_ms
from .errors import *  # noqa: F403
from .errors import __all__ as _error_names
from .topics import compile_topic_pattern, topic_matches, validate_topic, validate_topic_pattern
from .trn import Trn, compile_trn_pattern, parse_trn, trn_matches, validate_trn, validate_trn_pattern

__version__ = "0.1.0"

__all__ = sorted(
    [
        *_error_names,
        "EmitParams",
        "Event",
        "EventEnvelope",
        "Trn",
        "__version__",
        "compile_topic_pattern",
        "compile_trn_pattern",
        "now_ms",
        "parse_trn",
        "topic_matches",
        "trn_matches",
        "validate_topic",
        "validate_topic_pattern",
        "validate_trn",
        "validate_trn_pattern",
    ]
)
