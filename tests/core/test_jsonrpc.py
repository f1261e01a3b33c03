"""JSON-RPC 2.0 message parsing and replies, sans-IO (DESIGN.md §3, JSON-RPC 2.0 §7)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventbus_core.codec import dumps
from eventbus_core.errors import InvalidParams, NotFound
from eventbus_core.jsonrpc import (
    NO_ID,
    Call,
    Message,
    error_reply,
    notification,
    parse_message,
    request,
    result_reply,
)


def parse(value: Any) -> Message:
    return parse_message(value if isinstance(value, bytes) else dumps(value))


def codes(message: Message) -> list[int]:
    return [reply["error"]["code"] for reply in message.replies]


# --- examples of the JSON-RPC 2.0 specification, section 7 -----------------


def test_spec_call_with_positional_params() -> None:
    message = parse(b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
    assert message == Message(calls=[Call("subtract", [42, 23], 1)])


def test_spec_call_with_named_params() -> None:
    message = parse(
        b'{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}'
    )
    assert message.calls == [Call("subtract", {"subtrahend": 23, "minuend": 42}, 3)]
    assert not message.is_batch and message.replies == []


def test_spec_notification() -> None:
    message = parse(b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
    [call] = message.calls
    assert call.is_notification and call.id is NO_ID
    assert message.replies == []


def test_spec_notification_without_params() -> None:
    [call] = parse(b'{"jsonrpc": "2.0", "method": "foobar"}').calls
    assert call == Call("foobar", None, NO_ID)
    assert call.is_notification


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(
            b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', id="spec-invalid-json"
        ),
        pytest.param(
            b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method"]',
            id="spec-invalid-json-batch",
        ),
        pytest.param(b"", id="empty-line"),
        pytest.param(b"\xff", id="invalid-utf8"),
        pytest.param(b"{'jsonrpc': '2.0'}", id="single-quotes"),
    ],
)
def test_invalid_json_is_one_parse_error_with_null_id(line: bytes) -> None:
    message = parse_message(line)
    assert not message.is_batch and message.calls == []
    [reply] = message.replies
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None
    assert reply["error"]["code"] == -32700
    assert reply["error"]["message"].startswith("parse error")


def test_spec_invalid_request_object() -> None:
    message = parse(b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert not message.is_batch and message.calls == []
    [reply] = message.replies
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert "method" in reply["error"]["message"]


def test_spec_empty_array_is_one_invalid_request_not_in_an_array() -> None:
    message = parse(b"[]")
    assert not message.is_batch
    assert message.calls == []
    [reply] = message.replies
    assert isinstance(reply, dict)
    assert reply["id"] is None and reply["error"]["code"] == -32600


@pytest.mark.parametrize(
    ("line", "count"),
    [
        pytest.param(b"[1]", 1, id="spec-one-number"),
        pytest.param(b"[1,2,3]", 3, id="spec-three-numbers"),
        pytest.param(b'["a", null, true, [], [1]]', 5, id="scalars-and-arrays"),
    ],
)
def test_spec_batch_of_non_objects_is_an_array_of_invalid_requests(line: bytes, count: int) -> None:
    message = parse(line)
    assert message.is_batch and message.calls == []
    assert codes(message) == [-32600] * count
    assert all(reply["id"] is None for reply in message.replies)


def test_spec_mixed_batch() -> None:
    message = parse(
        b"["
        b'{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
        b'{"foo": "boo"},'
        b'{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        b'{"jsonrpc": "2.0", "method": "get_data", "id": "9"}'
        b"]"
    )
    assert message.is_batch
    assert [(c.method, c.id) for c in message.calls] == [
        ("sum", "1"),
        ("notify_hello", NO_ID),
        ("subtract", "2"),
        ("foo.get", "5"),
        ("get_data", "9"),
    ]
    assert [c.is_notification for c in message.calls] == [False, True, False, False, False]
    [reply] = message.replies
    assert reply["id"] is None and reply["error"]["code"] == -32600


def test_spec_all_notification_batch_needs_no_reply() -> None:
    message = parse(
        b'[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]'
    )
    assert message.is_batch
    assert message.replies == []
    assert [c.method for c in message.calls] == ["notify_sum", "notify_hello"]
    assert all(c.is_notification for c in message.calls)


def test_invalid_item_in_a_batch_keeps_its_id_when_the_id_is_valid() -> None:
    message = parse(
        [{"jsonrpc": "2.0", "method": 7, "id": "x"}, {"jsonrpc": "2.0", "method": "ping", "id": 1}]
    )
    assert message.is_batch
    assert [r["id"] for r in message.replies] == ["x"]
    assert [c.id for c in message.calls] == [1]


def test_a_single_object_is_not_a_batch() -> None:
    assert not parse({"jsonrpc": "2.0", "method": "ping", "id": 1}).is_batch


def test_a_batch_of_one_is_a_batch() -> None:
    message = parse([{"jsonrpc": "2.0", "method": "ping", "id": 1}])
    assert message.is_batch and [c.id for c in message.calls] == [1]


# --- ids --------------------------------------------------------------------

VALID_IDS = [
    pytest.param(0, id="zero"),
    pytest.param(None, id="null"),
    pytest.param("", id="empty-string"),
    pytest.param("abc", id="string"),
    pytest.param("ü✓", id="unicode-string"),
    pytest.param("1", id="numeric-string"),
    pytest.param(-7, id="negative"),
    pytest.param(1.5, id="float"),
    pytest.param(2**63 - 1, id="int64-max"),
    pytest.param(10**15, id="big"),
]


@pytest.mark.parametrize("call_id", VALID_IDS)
def test_id_of_any_json_scalar_type_is_preserved(call_id: Any) -> None:
    [call] = parse({"jsonrpc": "2.0", "method": "ping", "id": call_id}).calls
    assert call.id == call_id and type(call.id) is type(call_id)
    assert not call.is_notification
    reply = result_reply(call.id, "pong")
    assert reply["id"] == call_id and type(reply["id"]) is type(call_id)


def test_id_null_is_a_request_not_a_notification() -> None:
    [call] = parse(b'{"jsonrpc": "2.0", "method": "ping", "id": null}').calls
    assert call.id is None
    assert not call.is_notification


def test_missing_id_is_a_notification() -> None:
    [call] = parse(b'{"jsonrpc": "2.0", "method": "ping"}').calls
    assert call.is_notification


@pytest.mark.parametrize(
    "call_id",
    [
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param({"a": 1}, id="object"),
        pytest.param({}, id="empty-object"),
        pytest.param([1], id="array"),
        pytest.param([], id="empty-array"),
    ],
)
def test_non_scalar_or_bool_id_is_an_invalid_request_with_null_id(call_id: Any) -> None:
    message = parse({"jsonrpc": "2.0", "method": "ping", "id": call_id})
    assert message.calls == []
    [reply] = message.replies
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert '"id"' in reply["error"]["message"]


# --- request object validation ----------------------------------------------

INVALID_REQUESTS = [
    pytest.param({"method": "ping", "id": 1}, 1, '"jsonrpc"', id="missing-jsonrpc"),
    pytest.param({"jsonrpc": "1.0", "method": "ping", "id": 1}, 1, '"jsonrpc"', id="version-1.0"),
    pytest.param(
        {"jsonrpc": 2.0, "method": "ping", "id": 1}, 1, '"jsonrpc"', id="version-as-number"
    ),
    pytest.param(
        {"jsonrpc": "2.0 ", "method": "ping", "id": 1}, 1, '"jsonrpc"', id="version-with-space"
    ),
    pytest.param({"jsonrpc": None, "method": "ping", "id": 2}, 2, '"jsonrpc"', id="version-null"),
    pytest.param({"jsonrpc": "2.0", "id": 1}, 1, '"method"', id="missing-method"),
    pytest.param({"jsonrpc": "2.0", "method": None, "id": 1}, 1, '"method"', id="method-null"),
    pytest.param({"jsonrpc": "2.0", "method": ["ping"], "id": 1}, 1, '"method"', id="method-array"),
    pytest.param({"jsonrpc": "2.0", "method": 1}, None, '"method"', id="method-number-no-id"),
    pytest.param(
        {"jsonrpc": "2.0", "method": "ping", "params": "bar", "id": 1},
        1,
        '"params"',
        id="params-string",
    ),
    pytest.param(
        {"jsonrpc": "2.0", "method": "ping", "params": 1, "id": 1},
        1,
        '"params"',
        id="params-number",
    ),
    pytest.param(
        {"jsonrpc": "2.0", "method": "ping", "params": True, "id": 1},
        1,
        '"params"',
        id="params-bool",
    ),
    pytest.param(
        {"jsonrpc": "2.0", "method": "ping", "params": None, "id": 1},
        1,
        '"params"',
        id="params-null",
    ),
    pytest.param(
        {"jsonrpc": "2.0", "method": "ping", "params": 1}, None, '"params"', id="params-bad-no-id"
    ),
    pytest.param({}, None, '"jsonrpc"', id="empty-object"),
]


@pytest.mark.parametrize(("obj", "reply_id", "names"), INVALID_REQUESTS)
def test_invalid_request_object(obj: dict[str, Any], reply_id: Any, names: str) -> None:
    message = parse(obj)
    assert message.calls == []
    [reply] = message.replies
    assert reply["error"]["code"] == -32600
    assert reply["id"] == reply_id
    assert names in reply["error"]["message"]


@pytest.mark.parametrize(
    "value", [1, "ping", None, True, 1.5], ids=["int", "str", "null", "bool", "float"]
)
def test_a_json_scalar_is_an_invalid_request(value: Any) -> None:
    message = parse(value)
    assert not message.is_batch and message.calls == []
    assert codes(message) == [-32600]
    assert message.replies[0]["id"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1}, id="object"),
        pytest.param({}, {}, id="empty-object"),
        pytest.param([1, 2], [1, 2], id="array"),
        pytest.param([], [], id="empty-array"),
    ],
)
def test_params_object_or_array_is_passed_through(params: Any, expected: Any) -> None:
    [call] = parse({"jsonrpc": "2.0", "method": "m", "params": params, "id": 1}).calls
    assert call.params == expected


def test_missing_params_is_none() -> None:
    [call] = parse({"jsonrpc": "2.0", "method": "ping", "id": 1}).calls
    assert call.params is None


def test_extra_members_are_tolerated() -> None:
    [call] = parse({"jsonrpc": "2.0", "method": "ping", "id": 1, "extra": True}).calls
    assert call == Call("ping", None, 1)


# --- building messages -------------------------------------------------------


def test_result_reply() -> None:
    assert result_reply(7, {"ok": True}) == {"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}


def test_result_reply_with_null_result_keeps_the_member() -> None:
    assert result_reply("a", None) == {"jsonrpc": "2.0", "id": "a", "result": None}


def test_error_reply_carries_code_message_and_data() -> None:
    data = [{"loc": ["topic"], "msg": "bad"}]
    assert error_reply(3, InvalidParams("invalid params", data)) == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": -32602, "message": "invalid params", "data": data},
    }


def test_error_reply_without_data_omits_it() -> None:
    reply = error_reply(None, NotFound("no rule 'x'"))
    assert reply == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32002, "message": "no rule 'x'"},
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            {"a": 1},
            {"jsonrpc": "2.0", "method": "m", "id": 1, "params": {"a": 1}},
            id="with-params",
        ),
        pytest.param(None, {"jsonrpc": "2.0", "method": "m", "id": 1}, id="without-params"),
    ],
)
def test_request(params: Any, expected: dict[str, Any]) -> None:
    assert request("m", params, 1) == expected


def test_request_round_trips_through_the_parser() -> None:
    [call] = parse(request("emit_event", {"topic": "a"}, "r-1")).calls
    assert call == Call("emit_event", {"topic": "a"}, "r-1")


def test_notification_round_trips_through_the_parser() -> None:
    message = notification("event", {"subscription": "s1", "event": {"event_id": 1}})
    assert "id" not in message
    [call] = parse(message).calls
    assert call.is_notification and call.method == "event"


def test_no_id_repr_is_readable() -> None:
    assert repr(NO_ID) == "NO_ID"


# --- limits: batch length, integers, nesting (DESIGN.md §3 "Limits") ------------


def test_a_batch_over_max_batch_is_one_error_with_null_id() -> None:
    line = b"[" + b",".join([b"1"] * 524_000) + b"]"
    message = parse_message(line, max_batch=1000)
    assert message.calls == [] and not message.is_batch
    [reply] = message.replies
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert "524000 items is over the limit of 1000" in reply["error"]["message"]


def test_a_batch_at_max_batch_runs() -> None:
    calls = [{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(3)]
    assert len(parse(calls).calls) == 3
    assert len(parse_message(dumps(calls), max_batch=3).calls) == 3


@pytest.mark.parametrize(
    "raw_id",
    [
        b"9223372036854775808",
        b"18446744073709551615",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"1" * 60,
    ],
)
def test_an_integer_id_outside_int64_is_invalid_request(raw_id: bytes) -> None:
    message = parse_message(b'{"jsonrpc": "2.0", "method": "ping", "id": ' + raw_id + b"}")
    [reply] = message.replies
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert "int64" in reply["error"]["message"]


@pytest.mark.parametrize("raw_id", [b"9223372036854775807", b"-9223372036854775808", b"0"])
def test_an_integer_id_within_int64_is_echoed_exactly(raw_id: bytes) -> None:
    [call] = parse_message(b'{"jsonrpc": "2.0", "method": "ping", "id": ' + raw_id + b"}").calls
    assert call.id == int(raw_id) and isinstance(call.id, int)


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"payload": 18446744073709551616}', "payload"),
        (b'{"payload": {"a": [1, -9223372036854775809]}}', "payload.a[1]"),
        (b'{"payload": {"n": ' + b"9" * 60 + b"}}", "payload.n"),
    ],
)
def test_integers_the_codec_cannot_keep_exactly_are_refused_by_path(raw: bytes, loc: str) -> None:
    line = b'{"jsonrpc": "2.0", "method": "emit_event", "id": 7, "params": ' + raw + b"}"
    [reply] = parse_message(line).replies
    assert reply["id"] == 7 and reply["error"]["code"] == -32602
    [item] = reply["error"]["data"]
    assert item["loc"] == loc and "outside the range the bus keeps exactly" in item["msg"]


def test_integers_up_to_u64_and_long_digit_strings_are_kept() -> None:
    line = b'{"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"a": 18446744073709551615, "b": -9223372036854775808, "s": "123456789012345678901234567890", "f": 0.12345678901234567890}}'
    [call] = parse_message(line).calls
    assert call.params["a"] == 2**64 - 1 and call.params["b"] == -(2**63)
    assert call.params["s"] == "123456789012345678901234567890"


def test_a_notification_with_an_inexact_integer_gets_no_reply_and_does_not_run() -> None:
    message = parse_message(
        b'{"jsonrpc": "2.0", "method": "e", "params": {"a": 18446744073709551616}}'
    )
    assert message.calls == [] and message.replies == []


def test_inexact_integers_in_a_batch_fail_only_their_item() -> None:
    line = (
        b'[{"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"a": 1}},'
        b' {"jsonrpc": "2.0", "method": "e", "id": 2, "params": {"a": 99999999999999999999}}]'
    )
    message = parse_message(line)
    assert [c.id for c in message.calls] == [1]
    assert [(r["id"], r["error"]["code"]) for r in message.replies] == [(2, -32602)]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_request_nested_deeper_than_the_limit_is_refused() -> None:
    from eventbus_core.codec import MAX_NESTING

    ok = {"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"payload": nested(MAX_NESTING - 2)}}
    assert len(parse(ok).calls) == 1
    deep = (
        b'{"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"payload": '
        + b"[" * 1000
        + b"]" * 1000
        + b"}}"
    )
    [reply] = parse_message(deep).replies
    assert reply["id"] == 1 and reply["error"]["code"] == -32600
    assert f"nested deeper than {MAX_NESTING} levels" in reply["error"]["message"]


def test_many_brackets_inside_strings_are_not_nesting() -> None:
    line = dumps({"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"s": "[" * 5000}})
    assert len(parse_message(line).calls) == 1


@pytest.mark.parametrize(
    ("params", "loc", "what"),
    [
        (b'{"topic": "a", "payload": {"x": [1, "a\\u0000b"]}}', "payload.x[1]", "in strings"),
        (b'{"topic": "a", "correlation_id": "\\u0000"}', "correlation_id", "in strings"),
        (b'{"topic": "a", "metadata": {"k\\u0000": 1}}', "metadata", "object key"),
        (b'{"id": "r", "description": "\\u0000", "action": {}}', "description", "in strings"),
    ],
)
def test_strings_with_nul_are_refused_by_path(params: bytes, loc: str, what: str) -> None:
    # Found by tests/hostile/test_fuzz.py: PostgreSQL failed the whole group commit on one.
    line = b'{"jsonrpc": "2.0", "method": "emit_event", "id": 3, "params": ' + params + b"}"
    [reply] = parse_message(line).replies
    assert reply["id"] == 3 and reply["error"]["code"] == -32602
    [item] = reply["error"]["data"]
    assert item["loc"] == loc and "U+0000" in item["msg"] and what in item["msg"]


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    [call] = parse_message(
        b'{"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"s": "\\\\u0000"}}'
    ).calls
    assert call.params == {"s": "\\u0000"}


def test_a_nul_fails_only_its_batch_item_and_a_notification_with_one_does_not_run() -> None:
    line = (
        b'[{"jsonrpc": "2.0", "method": "e", "id": 1, "params": {"s": "ok"}},'
        b' {"jsonrpc": "2.0", "method": "e", "id": 2, "params": {"s": "\\u0000"}},'
        b' {"jsonrpc": "2.0", "method": "e", "params": {"s": "\\u0000"}}]'
    )
    message = parse_message(line)
    assert [c.id for c in message.calls] == [1]
    assert [(r["id"], r["error"]["code"]) for r in message.replies] == [(2, -32602)]


# -- the calling side -------------------------------------------------------------


def test_a_notification_frame_around_a_pre_encoded_value_is_the_notification() -> None:
    from eventbus_core.jsonrpc import notification, notification_frame

    head, tail = notification_frame("event", {"subscription": "sub-1"}, "event")
    line = head + b'{"event_id":7}' + tail
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == notification(
        "event", {"subscription": "sub-1", "event": {"event_id": 7}}
    )
    head, tail = notification_frame("tick", {}, "at")
    assert json.loads(head + b"5" + tail) == notification("tick", {"at": 5})


def test_parse_incoming_sorts_replies_and_notifications() -> None:
    from eventbus_core.jsonrpc import Notification, Reply, parse_incoming, request

    assert request("ping", None, 3) == {"jsonrpc": "2.0", "method": "ping", "id": 3}
    items = list(
        parse_incoming(
            [
                {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}},
                {"jsonrpc": "2.0", "method": "event", "params": {"x": 1}},
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}},
                {"jsonrpc": "2.0", "id": 2, "error": "a peer that sends a string"},
                {"jsonrpc": "2.0", "id": 4},
                5,
                {"neither": True},
            ]
        )
    )
    assert items == [
        Reply(1, result={"ok": True}),
        Notification("event", {"x": 1}),
        Reply(None, error={"code": -32700, "message": "parse error"}),
        Reply(2, error={"message": "a peer that sends a string"}),
        Reply(4, result=None),
    ]
