"""The one error tree (DESIGN.md §3 error codes) and its wire translation."""

from __future__ import annotations

from typing import Any

import pytest

from eventbus_core import errors
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

# DESIGN.md §3, in the table's order: code, class, retryable.
DESIGN_CODES = [
    (-32700, ParseError, False),
    (-32600, InvalidRequest, False),
    (-32601, MethodNotFound, False),
    (-32602, InvalidParams, False),
    (-32603, InternalError, True),  # "maybe"
    (-32001, SourceNotAllowed, False),
    (-32002, NotFound, False),
    (-32003, RulesDisabled, False),
    (-32004, AlreadyExists, False),
    (-32005, Overloaded, True),
    (-32006, Unauthorized, False),
    (-32007, MessageTooLarge, False),
    (-32008, StorageUnavailable, True),
    (-32009, ReservedTopic, False),
]
BY_CODE_IDS = [f"{code}-{cls.__name__}" for code, cls, _ in DESIGN_CODES]


def _wire_classes() -> list[type[EventBusError]]:
    found = []
    for name in errors.__all__:
        value = getattr(errors, name)
        if (
            isinstance(value, type)
            and issubclass(value, EventBusError)
            and value not in (EventBusError, ConnectionLost)
        ):
            found.append(value)
    return found


def test_every_design_code_has_exactly_one_class() -> None:
    wire = _wire_classes()
    assert sorted(cls.code for cls in wire) == sorted(code for code, _, _ in DESIGN_CODES)
    assert len({cls.code for cls in wire}) == len(wire)


@pytest.mark.parametrize(("code", "cls", "retryable"), DESIGN_CODES, ids=BY_CODE_IDS)
def test_class_for_code(code: int, cls: type[EventBusError], retryable: bool) -> None:
    assert cls.code == code
    assert error_class_for(code) is cls
    assert cls.retryable is retryable
    assert issubclass(cls, EventBusError)
    assert cls().message == cls.default_message


def test_connection_lost_never_crosses_the_wire() -> None:
    assert ConnectionLost.code not in {code for code, _, _ in DESIGN_CODES}
    assert error_class_for(ConnectionLost.code) is EventBusError
    assert ConnectionLost.retryable


@pytest.mark.parametrize("code", [0, -32000, -32099, -32010, 1, 404])
def test_unknown_code_maps_to_the_base_class(code: int) -> None:
    assert error_class_for(code) is EventBusError


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="no-data"),
        pytest.param([{"loc": ["topic"], "msg": "must not be empty"}], id="validation-items"),
        pytest.param({"retry_after_ms": 100}, id="object"),
        pytest.param("text", id="string"),
        pytest.param(0, id="falsy-number"),
        pytest.param([], id="empty-list"),
    ],
)
@pytest.mark.parametrize(("code", "cls", "retryable"), DESIGN_CODES, ids=BY_CODE_IDS)
def test_round_trip_preserves_class_message_and_data(
    code: int, cls: type[EventBusError], retryable: bool, data: Any
) -> None:
    original = cls(f"something about {code}", data)
    wire = to_error_object(original)
    assert wire["code"] == code and wire["message"] == f"something about {code}"
    assert ("data" in wire) is (data is not None)
    rebuilt = from_error_object(wire)
    assert type(rebuilt) is cls
    assert rebuilt.code == code
    assert rebuilt.message == original.message
    assert rebuilt.data == data
    assert str(rebuilt) == original.message


def test_to_error_object_is_plain_json() -> None:
    assert to_error_object(NotFound("no rule 'x'")) == {"code": -32002, "message": "no rule 'x'"}


def test_unknown_code_keeps_the_code_through_a_round_trip() -> None:
    rebuilt = from_error_object(
        {"code": -32042, "message": "new in a later version", "data": {"x": 1}}
    )
    assert type(rebuilt) is EventBusError
    assert rebuilt.code == -32042
    assert rebuilt.message == "new in a later version" and rebuilt.data == {"x": 1}
    assert to_error_object(rebuilt) == {
        "code": -32042,
        "message": "new in a later version",
        "data": {"x": 1},
    }
    # The class attribute is not touched for everyone else.
    assert EventBusError.code == -32603


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(None, id="null"),
        pytest.param("boom", id="string"),
        pytest.param(42, id="number"),
        pytest.param(["code", -32002], id="array"),
    ],
)
def test_malformed_error_object_becomes_an_internal_error(error: Any) -> None:
    rebuilt = from_error_object(error)
    assert isinstance(rebuilt, InternalError)
    assert "malformed error object" in rebuilt.message
    assert repr(error) in rebuilt.message


@pytest.mark.parametrize(
    ("error", "cls", "message"),
    [
        pytest.param({"code": -32002}, NotFound, NotFound.default_message, id="no-message"),
        pytest.param(
            {"code": -32002, "message": ""}, NotFound, NotFound.default_message, id="empty-message"
        ),
        pytest.param({"code": -32002, "message": 7}, NotFound, "7", id="message-not-a-string"),
        pytest.param({"message": "no code"}, EventBusError, "no code", id="no-code"),
        pytest.param({"code": "-32002", "message": "m"}, EventBusError, "m", id="code-as-string"),
        pytest.param({}, EventBusError, EventBusError.default_message, id="empty-object"),
    ],
)
def test_incomplete_error_objects_still_give_an_exception(
    error: dict[str, Any], cls: type[EventBusError], message: str
) -> None:
    rebuilt = from_error_object(error)
    assert type(rebuilt) is cls
    assert rebuilt.message == message


def test_default_message_and_repr() -> None:
    exc = Overloaded()
    assert exc.message == Overloaded.default_message and exc.data is None
    assert repr(exc) == f"Overloaded({Overloaded.default_message!r}, code=-32005)"


def test_errors_are_exceptions_callers_can_catch_by_base() -> None:
    with pytest.raises(EventBusError) as info:
        raise from_error_object({"code": -32009, "message": "reserved"})
    assert isinstance(info.value, ReservedTopic)


def test_module_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    for code, cls, _ in DESIGN_CODES:
        assert cls.__name__ in doc and str(code) in doc
