"""W3C trace context (`traceparent`), sans-IO (DESIGN.md §13).

    00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>

An event carries one in `metadata.traceparent`; what it causes (events made
by rules, tool results, the tool calls themselves) carries a *child*: the
same trace id and flags, a new parent (span) id. A malformed value is
ignored, never an error: trace context is best effort and must not fail an
emit or a firing.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

__all__ = ["TraceParent", "child_of", "parse_traceparent", "traceparent_of"]

_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceParent(NamedTuple):
    trace_id: str
    span_id: str
    flags: str = "01"

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self, span_id: str | None = None) -> TraceParent:
        """The same trace, a new span (random unless given)."""
        return TraceParent(self.trace_id, span_id or new_span_id(), self.flags)


def new_span_id() -> str:
    while True:
        span_id = os.urandom(8).hex()
        if span_id != _ZERO_SPAN:
            return span_id


def parse_traceparent(value: Any) -> TraceParent | None:
    """The parsed header, or None when it is not a valid version-00 (or later) traceparent."""
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = _TRACEPARENT_RE.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (
        version == "ff"
        or (version == "00" and rest)
        or trace_id == _ZERO_TRACE
        or span_id == _ZERO_SPAN
    ):
        return None
    return TraceParent(trace_id, span_id, flags)


def traceparent_of(metadata: dict[str, Any] | None) -> TraceParent | None:
    """The trace context an event carries in `metadata.traceparent`, if any."""
    return parse_traceparent(metadata.get("traceparent")) if metadata else None


def child_of(metadata: dict[str, Any] | None, span_id: str | None = None) -> str | None:
    """A child of the event's traceparent as a header value, or None when it has none."""
    parent = traceparent_of(metadata)
    return str(parent.child(span_id)) if parent is not None else None
