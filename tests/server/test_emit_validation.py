"""emit_event and emit_events validate on a fast path (eventbus_core.emit_rows) and fall
back to the pydantic models: a differential test against the models alone, the way
the bus validated before it had the fast path.

For any params, the handler either raises the model's very ValidationError (so
the -32602 a client reads, message, `data` and `events[i].field` locations,
is the model's), or hands the bus exactly the events the model would have:
as rows, as checked params, or as a delayed emit to schedule.
"""

from __future__ import annotations

import inspect
from typing import Any
from unittest import mock

from hypothesis import given, settings
from pydantic import ValidationError

from eventbus_core.envelope import EmitParams
from eventbus_core.errors import InvalidParams
from eventbus_core.event import NewEvent
from eventbus_core.locations import invalid_params
from eventbus_core.params import EmitEventsParams
from eventbus_server import rpc
from tests.emit_strategies import batches, events

NOW = 1_764_300_000_000


class RecordingBus:
    """Takes the delayed emits a handler schedules and remembers them."""

    def __init__(self) -> None:
        self.scheduled: list[EmitParams] | None = None

    def schedule(self, events: list[EmitParams], **_: Any) -> object:
        self.scheduled = list(events)
        return object()  # what the handler awaits in a coroutine the test closes unstarted


def _row(e: EmitParams) -> NewEvent:
    return NewEvent(
        e.topic,
        e.payload,
        e.timestamp if e.timestamp is not None else NOW,
        e.metadata,
        e.source_trn,
        e.target_trn,
        e.correlation_id,
        e.idempotency_key,
    )


class Ctx:
    def __init__(self) -> None:
        self.bus = RecordingBus()
        self.size = 0


def run_handler(method: str, params: Any) -> tuple[str, Any]:
    """("error", the ValidationError), ("rows", rows), ("scheduled", params), or
    ("half-delayed", None): a batch refused by the handler itself."""
    ctx = Ctx()
    try:
        with mock.patch.object(rpc, "now_ms", lambda: NOW):
            outcome = rpc.METHODS[method](ctx, params)  # type: ignore[arg-type]
    except ValidationError as exc:
        return "error", exc
    except InvalidParams as exc:
        assert "delayed as a whole or not at all" in exc.message
        return "half-delayed", None
    if inspect.iscoroutine(outcome):
        outcome.close()
    if ctx.bus.scheduled is not None:
        return "scheduled", ctx.bus.scheduled
    if isinstance(outcome, rpc.Commit):
        assert outcome.batch == (method == "emit_events")
        return "rows", outcome.rows
    assert outcome == {"event_ids": []}  # answered at once: an empty batch
    return "rows", []


def model_outcome(method: str, params: Any) -> tuple[str, Any]:
    """The same, by the models alone."""
    try:
        if method == "emit_event":
            checked = [EmitParams.model_validate(params)]
        else:
            checked = EmitEventsParams.model_validate(params).events
    except ValidationError as exc:
        return "error", exc
    delayed = [e.delayed for e in checked]
    if any(delayed):
        return ("scheduled", checked) if all(delayed) else ("half-delayed", None)
    return "rows", [_row(e) for e in checked]


def assert_same(method: str, params: Any) -> None:
    got_kind, got = run_handler(method, params)
    want_kind, want = model_outcome(method, params)
    assert got_kind == want_kind, (params, got, want)
    if got_kind == "error":
        assert got.errors(include_url=False, include_context=False) == want.errors(
            include_url=False, include_context=False
        )
        ours, theirs = invalid_params(method, got), invalid_params(method, want)
        assert (ours.message, ours.data) == (theirs.message, theirs.data)
    else:
        assert got == want


@settings(max_examples=1000, deadline=None)
@given(events)
def test_emit_event_refuses_and_accepts_as_the_model(params: Any) -> None:
    assert_same("emit_event", params)


@settings(max_examples=600, deadline=None)
@given(batches)
def test_emit_events_refuses_and_accepts_as_the_model(params: Any) -> None:
    assert_same("emit_events", params)


def test_a_bad_event_in_a_batch_is_named_by_its_place() -> None:
    params = {"events": [{"topic": "a"}, {"topic": "a..b"}, {"topic": "c", "timestamp": -1}]}
    kind, exc = run_handler("emit_events", params)
    assert kind == "error"
    error = invalid_params("emit_events", exc)
    assert [d["loc"] for d in error.data or []] == ["events[1].topic", "events[2].timestamp"]
    assert error.message.startswith(
        "invalid params for emit_events: events[1].topic: invalid topic 'a..b': token 2 is empty"
    )
