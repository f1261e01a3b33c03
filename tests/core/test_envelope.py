"""EmitParams: what a client may send to `emit_event` (DESIGN.md §4)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from eventbus_core.codec import dumps, loads
from eventbus_core.envelope import DELIVERY_FIELDS, EmitParams, EventEnvelope
from eventbus_core.event import Event, now_ms


def errors_of(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        EmitParams.model_validate(data)
    return [(e["loc"], e["msg"]) for e in info.value.errors(include_url=False)]


def test_minimal_event() -> None:
    params = EmitParams.model_validate({"topic": "repo.pushed"})
    assert params.topic == "repo.pushed"
    assert params.payload is None and params.timestamp is None and params.metadata is None
    assert params.source_trn is None and params.target_trn is None
    assert params.correlation_id is None and params.idempotency_key is None


def test_full_event_from_the_design() -> None:
    data = {
        "topic": "repo.pushed",
        "payload": {"repo": "acme/api", "branch": "main"},
        "timestamp": 1764300000123,
        "metadata": {"trace": "..."},
        "source_trn": "trn:user:alice:tool:openapi:github-api:v1.0",
        "target_trn": "trn:org:acme:repo:api:v1",
        "correlation_id": "c-7f3a",
        "idempotency_key": "k-1",
    }
    assert EmitParams.model_validate(data).model_dump(exclude_none=True) == data


@pytest.mark.parametrize(
    "payload",
    [None, 0, -1.5, "text", True, [], [1, "a", None], {}, {"nested": {"x": [1, 2]}}, "ü✓"],
    ids=[
        "null",
        "zero",
        "float",
        "string",
        "bool",
        "empty-list",
        "list",
        "empty-object",
        "object",
        "unicode",
    ],
)
def test_payload_is_any_json_value(payload: Any) -> None:
    assert EmitParams.model_validate({"topic": "a", "payload": payload}).payload == payload


@pytest.mark.parametrize("event_id", [42, None, "x", -1], ids=["int", "null", "string", "negative"])
def test_event_id_is_accepted_and_ignored(event_id: Any) -> None:
    params = EmitParams.model_validate({"topic": "a", "event_id": event_id})
    assert "event_id" not in params.model_dump()
    assert "event_id" not in params.model_dump_json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("duplicate", True, id="duplicate"),
        pytest.param("Topic", "a", id="case-matters"),
        pytest.param("payloads", 1, id="typo"),
        pytest.param("replace", True, id="rule-field"),
    ],
)
def test_unknown_field_is_rejected(field: str, value: Any) -> None:
    assert errors_of({"topic": "a", field: value}) == [((field,), "Extra inputs are not permitted")]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        pytest.param("", "topic must not be empty", id="empty"),
        pytest.param("a b", "token 1 ('a b')", id="space"),
        pytest.param("a..b", "token 2 is empty", id="empty-token"),
        pytest.param("a.*", "wildcards", id="wildcard"),
        pytest.param(">", "wildcards", id="gt"),
        pytest.param("x" * 256, "the limit is 255", id="too-long"),
    ],
)
def test_bad_topic_says_why(topic: str, reason: str) -> None:
    [(loc, msg)] = errors_of({"topic": topic})
    assert loc == ("topic",)
    assert reason in msg


@pytest.mark.parametrize("topic", [None, 1, ["a"]], ids=["null", "number", "list"])
def test_topic_must_be_a_string(topic: Any) -> None:
    [(loc, _)] = errors_of({"topic": topic})
    assert loc == ("topic",)


def test_topic_is_required() -> None:
    assert errors_of({"payload": 1}) == [(("topic",), "Field required")]


@pytest.mark.parametrize("field", ["source_trn", "target_trn"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("user:alice", "must start with 'trn:'", id="no-scheme"),
        pytest.param("trn:user", "at least two segments", id="one-segment"),
        pytest.param("trn:user:*", "segment 2 ('*')", id="pattern-is-not-a-trn"),
        pytest.param("trn:user:alice@sha256:zz", "'@algo:hex'", id="bad-hash"),
    ],
)
def test_bad_trn_says_why(field: str, value: str, reason: str) -> None:
    [(loc, msg)] = errors_of({"topic": "a", field: value})
    assert loc == (field,)
    assert "invalid TRN" in msg and reason in msg


@pytest.mark.parametrize("field", ["source_trn", "target_trn"])
def test_trn_fields_take_a_valid_trn_or_null(field: str) -> None:
    assert (
        getattr(EmitParams.model_validate({"topic": "a", field: "trn:user:alice"}), field)
        == "trn:user:alice"
    )
    assert getattr(EmitParams.model_validate({"topic": "a", field: None}), field) is None


@pytest.mark.parametrize(
    "timestamp", [0, 1, 1764300000123, 2**53], ids=["zero", "one", "now-ish", "big"]
)
def test_timestamp_is_integer_milliseconds(timestamp: int) -> None:
    assert EmitParams.model_validate({"topic": "a", "timestamp": timestamp}).timestamp == timestamp


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-1764300000123, id="very-negative"),
        pytest.param(1.5, id="fractional"),
        pytest.param(True, id="bool"),
        pytest.param("1764300000123", id="numeric-string"),
        pytest.param("2025-01-01T00:00:00Z", id="iso-string"),
        pytest.param([1], id="list"),
    ],
)
def test_bad_timestamp_is_rejected(timestamp: Any) -> None:
    [(loc, _)] = errors_of({"topic": "a", "timestamp": timestamp})
    assert loc == ("timestamp",)


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [({}, True), ({"trace": "x"}, True), (None, True), ([], False), ("x", False), (1, False)],
    ids=["empty-object", "object", "null", "list", "string", "number"],
)
def test_metadata_is_an_object_or_null(metadata: Any, ok: bool) -> None:
    data = {"topic": "a", "metadata": metadata}
    if ok:
        assert EmitParams.model_validate(data).metadata == metadata
    else:
        [(loc, _)] = errors_of(data)
        assert loc == ("metadata",)


@pytest.mark.parametrize("field", ["correlation_id", "idempotency_key"])
@pytest.mark.parametrize(
    ("value", "ok"),
    [("c-1", True), (None, True), ("x" * 255, True), ("x" * 256, False), (1, False)],
    ids=["string", "null", "255", "256", "number"],
)
def test_string_fields(field: str, value: Any, ok: bool) -> None:
    data = {"topic": "a", field: value}
    if ok:
        assert getattr(EmitParams.model_validate(data), field) == value
    else:
        [(loc, _)] = errors_of(data)
        assert loc == (field,)


def test_every_problem_is_reported_at_once() -> None:
    locs = {
        loc for loc, _ in errors_of({"topic": "", "source_trn": "x", "timestamp": -1, "extra": 1})
    }
    assert locs == {("topic",), ("source_trn",), ("timestamp",), ("extra",)}


def test_emit_params_are_frozen() -> None:
    params = EmitParams.model_validate({"topic": "a"})
    with pytest.raises(ValidationError):
        params.topic = "b"  # type: ignore[misc]


def test_event_encodes_to_the_envelope_wire_form() -> None:
    event = Event(7, "a.b", {"x": 1}, 1000, None, "trn:user:alice", None, "c-1")
    wire = loads(dumps(event))
    assert wire == {
        "event_id": 7,
        "topic": "a.b",
        "payload": {"x": 1},
        "timestamp": 1000,
        "metadata": None,
        "source_trn": "trn:user:alice",
        "target_trn": None,
        "correlation_id": "c-1",
    }
    assert EventEnvelope.model_validate(wire).model_dump() == wire


def test_now_ms_is_milliseconds() -> None:
    assert 1_700_000_000_000 < now_ms() < 10_000_000_000_000


def test_every_shape_of_an_event_has_the_one_field_list() -> None:
    from eventbus_core.event import EVENT_FIELDS, NEW_EVENT_FIELDS, NewEvent

    assert tuple(EventEnvelope.model_fields) == EVENT_FIELDS  # what the client reads
    assert set(EmitParams.model_fields) == {
        *NEW_EVENT_FIELDS,
        "event_id",
        *DELIVERY_FIELDS,
    }  # what a client emits
    event = NewEvent(topic="t", payload={"a": 1}, timestamp=5, source_trn="trn:user:a:b:c").stored(
        9
    )
    assert tuple(event.as_dict()) == EVENT_FIELDS
    assert EventEnvelope.model_validate(event.as_dict()).model_dump() == event.as_dict()
    assert event.rule_view() == {
        "event_id": 9,
        "topic": "t",
        "payload": {"a": 1},
        "timestamp": 5,
        "source_trn": "trn:user:a:b:c",
    }
