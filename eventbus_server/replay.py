"""Server-side replay (`replay_events`, DESIGN.md §5, §9): stored events emitted again.

    read a page of matching events after `after_id` (the log reader's page)
      → copies with `metadata.replay_of` → one all-or-nothing emit, awaited
      → the next page, until `limit` copies, the window's end, or the call's time

The bus does the work, not a client: a client re-emitting what it polled
meets the allow-list with the events the bus made itself (rule events carry
`trn:eventbus:<bus>:rule:<id>`), and dies halfway through a batch. The copies
here are emitted trusted, like rule-made events: every original passed the
allow-list, or was the bus's own, when it was first stored.

The window is fixed by time (`since_ts`..`until_ts`) and by id (`until_id`,
the newest event when the replay began): copies are newer than it, so a
replay onto its own topic never replays its own copies, in this call or a
later one that passes the same `until_id`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventbus_core.envelope import EmitParams
from eventbus_core.event import Event
from eventbus_server.storage.base import EventQuery, Storage
from eventbus_server.storage.reader import LogReader

__all__ = ["CALL_BUDGET_S", "ReplayRequest", "ReplayResult", "replay"]

#: A call stops after the page that takes it past this long; the client calls again.
CALL_BUDGET_S = 2.0

Emit = Callable[[Sequence[EmitParams]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """The params of `replay_events`, validated; `until_id` None: the newest event now."""

    since_ts: int
    until_ts: int
    topic: str = ">"
    source_trn: str | None = None
    target_trn: str | None = None
    to_topic: str | None = None
    to_bus: str | None = None
    dry_run: bool = False
    after_id: int = 0
    until_id: int | None = None
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class ReplayResult:
    replayed: int
    #: The cursor to pass back as `after_id`: the last event replayed (or `after_id`).
    last_replayed_id: int
    #: The window's upper id, to pass back unchanged.
    until_id: int
    #: Nothing is left in the window after `last_replayed_id`.
    done: bool

    def wire(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "last_replayed_id": self.last_replayed_id,
            "until_id": self.until_id,
            "done": self.done,
        }


async def replay(
    storage: Storage, emit: Emit, request: ReplayRequest, *, until_id: int
) -> ReplayResult:
    """Replay one call's share of the window (see the module docstring).

    Pages come from the log reader (storage/reader.py), bounded in count and
    bytes like every internal read of the log. A page is emitted in one transaction and awaited before the next is read,
    so a call holds at most one page and its copies. When a page fails after
    others were stored (the bus shutting down, storage gone), the call answers
    with what it stored: the next call starts after it and meets the error
    itself, so a resume is always exact.
    """
    started = time.monotonic()
    reader = LogReader(storage)
    match = EventQuery(
        topic=request.topic,
        source_trn=request.source_trn,
        target_trn=request.target_trn,
        from_ts=request.since_ts,
        to_ts=request.until_ts,
    )
    cursor, replayed = request.after_id, 0
    while replayed < request.limit:
        try:
            page = await reader.page(cursor, up_to=until_id, match=match)
            events = page[: request.limit - replayed]
            if events and not request.dry_run:
                await emit([_copy(event, request.to_topic) for event in events])
        except Exception:
            if replayed == 0:
                raise
            return ReplayResult(replayed, cursor, until_id, done=False)
        if not events:
            return ReplayResult(replayed, cursor, until_id, done=True)
        replayed += len(events)
        cursor = events[-1].event_id
        if time.monotonic() - started > CALL_BUDGET_S:
            break
    return ReplayResult(replayed, cursor, until_id, done=cursor >= until_id)


def _copy(event: Event, to_topic: str | None) -> EmitParams:
    # Built without validation: every field comes from an event the bus stored, and
    # `to_topic` was validated with the params.
    return EmitParams.model_construct(
        topic=to_topic or event.topic,
        payload=event.payload,
        metadata={**(event.metadata or {}), "replay_of": event.event_id},
        source_trn=event.source_trn,
        target_trn=event.target_trn,
        correlation_id=event.correlation_id,
    )
