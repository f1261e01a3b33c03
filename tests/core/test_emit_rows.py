"""emit_rows: the emit hot path's validator against the model it stands in for.

Whatever `new_event` accepts, `EmitParams` accepts too, as the same event;
whatever it leaves to the model, the model decides (and words the error).
And it does accept what a client usually sends, or it would save nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from eventbus_core import emit_rows
from eventbus_core.emit_rows import MAX_EMIT_EVENTS, new_event, new_events
from eventbus_core.envelope import EmitParams
from eventbus_core.event import NewEvent
from eventbus_core.params import EmitEventsParams
from tests.emit_strategies import batches, events, valid_events

NOW = 1_764_300_000_000


def model_row(params: Any) -> NewEvent | None:
    """What the model makes of `params`: the row of an immediate emit, else None."""
    try:
        event = EmitParams.model_validate(params)
    except ValidationError:
        return None
    if event.delayed:
        return None
    return NewEvent(
        event.topic,
        event.payload,
        event.timestamp if event.timestamp is not None else NOW,
        event.metadata,
        event.source_trn,
        event.target_trn,
        event.correlation_id,
        event.idempotency_key,
    )


@settings(max_examples=1500, deadline=None)
@given(events)
def test_what_the_fast_path_accepts_the_model_accepts_as_the_same_event(params: Any) -> None:
    row = new_event(params, NOW)
    if row is not None:
        assert model_row(params) == row


@settings(max_examples=300, deadline=None)
@given(valid_events)
def test_a_valid_immediate_event_takes_the_fast_path(params: dict[str, Any]) -> None:
    row = new_event(params, NOW)
    assert row is not None
    assert row == model_row(params)
    assert row.payload is params.get("payload")  # the decoded value, not a copy


@settings(max_examples=600, deadline=None)
@given(batches)
def test_a_batch_takes_the_fast_path_only_when_the_model_takes_every_event(params: Any) -> None:
    rows = new_events(params, NOW)
    if rows is None:
        return
    request = EmitEventsParams.model_validate(params)  # raises if the fast path was wrong
    assert [model_row(e.model_dump()) for e in request.events] == rows


def test_the_fast_path_leaves_delayed_and_unknown_fields_to_the_model() -> None:
    for params in (
        {"topic": "a", "deliver_at": 5},
        {"topic": "a", "delay_ms": None},
        {"topic": "a", "topik": 1},
        {"topic": "a", "timestamp": True},
        {"topic": "a", "timestamp": 1.0},
        {"topic": "a", "source_trn": "trn:user:*"},
        {"topic": "_sys.x"} | {"correlation_id": ""},
    ):
        assert new_event(params, NOW) is None, params


def test_a_batch_over_the_limit_is_left_to_the_model() -> None:
    params = {"events": [{"topic": "a"}] * (MAX_EMIT_EVENTS + 1)}
    assert new_events(params, NOW) is None
    with pytest.raises(ValidationError):
        EmitEventsParams.model_validate(params)
    assert new_events({"events": [{"topic": "a"}] * MAX_EMIT_EVENTS}, NOW) is not None


def test_names_found_valid_are_remembered_within_a_bound() -> None:
    for i in range(emit_rows._KNOWN_MAX + 10):
        assert new_event({"topic": f"t{i}", "source_trn": f"trn:user:u{i}"}, NOW) is not None
    assert len(emit_rows._known_topics) <= emit_rows._KNOWN_MAX
    assert len(emit_rows._known_trns) <= emit_rows._KNOWN_MAX
    assert "t5000" not in emit_rows._known_topics or "t0" not in emit_rows._known_topics


def test_a_remembered_name_does_not_let_a_wrong_type_through() -> None:
    assert new_event({"topic": "a"}, NOW) is not None
    assert new_event({"topic": ["a"]}, NOW) is None
    assert new_event({"topic": "a", "source_trn": {"trn:user:a": 1}}, NOW) is None
