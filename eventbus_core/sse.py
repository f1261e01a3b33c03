"""Server-Sent Events frames, sans-IO (DESIGN.md §14, `GET /events`).

    id: 42
    event: event
    data: {"event_id":42,"topic":"repo.pushed",…}

One frame per event; `id:` is the event_id, so a browser's `Last-Event-ID`
resumes after it. The JSON of an event has no newline (orjson never writes
one), so it always fits on one `data:` line. A lagging reader gets one
`event: lagged` frame, with no `id:` (its Last-Event-ID stays the last event
it got), and the stream ends.
"""

from __future__ import annotations

from eventbus_core.codec import dumps

__all__ = ["comment_frame", "event_frame", "lagged_frame"]


def event_frame(event_id: int, encoded_event: bytes) -> bytes:
    """One event, already encoded as JSON (fan-out encodes each event once for everyone)."""
    return b"id: %d\nevent: event\ndata: %s\n\n" % (event_id, encoded_event)


def lagged_frame(resume_since: int) -> bytes:
    return b"event: lagged\ndata: " + dumps({"resume_since": resume_since}) + b"\n\n"


def comment_frame(text: str) -> bytes:
    """A comment line: ignored by readers, it keeps idle proxies from closing the stream."""
    return b": " + text.replace("\n", " ").encode() + b"\n\n"
