"""JSON-RPC 2.0 messages, sans-IO: the one place they are built and parsed.

Serving (the bus): `parse_message` turns one received line into a
`Message`: the calls to run and the error replies that are already known
(parse errors, invalid request objects, batches over `max_batch`, integers
the codec cannot keep exactly, strings holding U+0000). The connection runs
the calls and writes the replies; whether the replies go back as one array
(a batch) or one object is decided here. `notification_frame` builds the
bytes around a pre-encoded value, so fan-out encodes an event once for all
its subscribers.

Calling (the client, the `jsonrpc` tool invoker): `request` builds a call,
`parse_incoming` sorts what comes back into `Reply` and `Notification`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eventbus_core.codec import MAX_NESTING, DecodeError, deeper_than, dumps, loads
from eventbus_core.errors import (
    EventBusError,
    InvalidParams,
    InvalidRequest,
    ParseError,
    to_error_object,
)
from eventbus_core.locations import format_loc
from eventbus_core.numbers import INT64_MAX, INT64_MIN

__all__ = [
    "NO_ID",
    "Call",
    "Message",
    "Notification",
    "Reply",
    "error_reply",
    "notification",
    "notification_frame",
    "parse_incoming",
    "parse_message",
    "request",
    "result_reply",
]

VERSION = "2.0"

#: What orjson decodes exactly; it turns integers outside this range into floats.
EXACT_MIN, EXACT_MAX = INT64_MIN, 2**64 - 1
#: A run of 19 digits is the shortest integer literal orjson may turn into a float.
#: Found by mapping every digit to "0" and the rest to " " (bytes.translate runs in
#: C at ~1 GB/s; a regex for it took 0.7 ms on a 72 KB batch of 1,000 events).
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGITS = b"0" * 19


class _NoId:
    """Marks a notification: a call with no `id` member at all."""

    def __repr__(self) -> str:
        return "NO_ID"


NO_ID: Any = _NoId()


@dataclass(slots=True)
class Call:
    method: str
    params: Any
    id: Any = NO_ID

    @property
    def is_notification(self) -> bool:
        return self.id is NO_ID


@dataclass(slots=True)
class Message:
    """One parsed line: `calls` to run, `replies` already decided."""

    is_batch: bool = False
    calls: list[Call] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)


def result_reply(call_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": call_id, "result": result}


def error_reply(call_id: Any, exc: EventBusError) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": call_id, "error": to_error_object(exc)}


def request(method: str, params: Any, call_id: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": VERSION, "method": method, "id": call_id}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "method": method, "params": params}


def notification_frame(method: str, fixed: dict[str, Any], last_key: str) -> tuple[bytes, bytes]:
    """The bytes before and after the value of `last_key` in the line of a notification
    whose params are `fixed` plus `last_key`: `head + encoded_value + tail` is the line."""
    head, _ = merged_notification_frame(method, fixed)
    return head + dumps(last_key) + b":", b"}}\n"


def merged_notification_frame(method: str, fixed: dict[str, Any]) -> tuple[bytes, bytes]:
    """The bytes before and after the members of an encoded JSON object that become the
    params together with `fixed`: `head + encoded_object[1:] + tail` is the line (the
    object's own `{` is dropped, and its `}` closes the params)."""
    params = b",".join(dumps(key) + b":" + dumps(value) for key, value in fixed.items())
    head = b'{"jsonrpc":"2.0","method":' + dumps(method) + b',"params":{' + params
    return head + (b"," if params else b""), b"}\n"


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one call: `error` is the error object, or None for a result."""

    id: Any
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any


def parse_incoming(message: Any) -> Iterator[Reply | Notification]:
    """What a caller received (one decoded line), item by item; items that are
    neither a reply nor a notification are skipped."""
    for item in message if isinstance(message, list) else (message,):
        if not isinstance(item, dict):
            continue
        method = item.get("method")
        if isinstance(method, str):
            yield Notification(method, item.get("params"))
        elif "error" in item:
            error = item["error"]
            yield Reply(
                item.get("id"), error=error if isinstance(error, dict) else {"message": str(error)}
            )
        elif "id" in item:  # a result, even when a lax peer leaves the member out
            yield Reply(item["id"], result=item.get("result"))


def _valid_id(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64_MIN <= value <= INT64_MAX
    return value is None or isinstance(value, str | float)


def _parse_call(
    item: Any, exact: Any = None, *, may_hold_nul: bool = False
) -> Call | dict[str, Any]:
    """A Call, or the error reply for an invalid request object.

    `exact` is the same item decoded with exact integers, when the line holds
    integer literals too long for orjson to keep (see `_exact_items`).
    `may_hold_nul`: the line has a `\\u0000` escape somewhere (see `_nul_paths`).
    """
    if not isinstance(item, dict):
        return error_reply(None, InvalidRequest("invalid request: expected a JSON object"))
    call_id = item.get("id", NO_ID)
    if isinstance(exact, dict) and _inexact(exact.get("id")):
        return error_reply(
            None, InvalidRequest('invalid request: an integer "id" must be within int64')
        )
    reply_id = call_id if call_id is not NO_ID and _valid_id(call_id) else None
    if item.get("jsonrpc") != VERSION:
        return error_reply(reply_id, InvalidRequest('invalid request: "jsonrpc" must be "2.0"'))
    if call_id is not NO_ID and not _valid_id(call_id):
        if isinstance(call_id, int) and not isinstance(call_id, bool):
            return error_reply(
                None, InvalidRequest('invalid request: an integer "id" must be within int64')
            )
        return error_reply(
            None, InvalidRequest('invalid request: "id" must be a string, number or null')
        )
    method = item.get("method")
    if not isinstance(method, str):
        return error_reply(reply_id, InvalidRequest('invalid request: "method" must be a string'))
    params = item.get("params")
    if "params" in item and not isinstance(params, dict | list):
        return error_reply(
            reply_id, InvalidRequest('invalid request: "params" must be an object or array')
        )
    if isinstance(exact, dict):
        inexact = next(_inexact_paths(exact.get("params"), []), None)
        if inexact is not None:
            msg = (
                f"integer {inexact[1]} is outside the range the bus keeps exactly (-2^63 to 2^64-1)"
            )
            error = _invalid_param(method, inexact[0], msg)
            return error_reply(reply_id, error) if call_id is not NO_ID else _DROPPED
    if may_hold_nul:
        nul = next(_nul_paths(params), None)
        if nul is not None:
            error = _invalid_param(method, *nul)
            return error_reply(reply_id, error) if call_id is not NO_ID else _DROPPED
    return Call(method, params, call_id)


def _invalid_param(method: str, path: list[str | int], msg: str) -> InvalidParams:
    loc = format_loc(path)
    return InvalidParams(
        f"invalid params for {method}: {f'{loc}: ' if loc else ''}{msg}", [{"loc": loc, "msg": msg}]
    )


#: The reply of a notification that cannot run: nothing is sent.
_DROPPED: dict[str, Any] = {}


def parse_message(line: bytes, *, max_batch: int | None = None) -> Message:
    """Parse one line; a batch longer than `max_batch` is one -32600 with id null."""
    try:
        data = loads(line)
    except DecodeError as exc:
        return Message(replies=[error_reply(None, ParseError(f"parse error: {exc}"))])
    if _too_deep(line, data):
        call_id = data.get("id") if isinstance(data, dict) else None
        refusal = InvalidRequest(f"invalid request: nested deeper than {MAX_NESTING} levels")
        return Message(replies=[error_reply(call_id if _valid_id(call_id) else None, refusal)])
    try:
        exact = _exact_items(line, data)
    except RecursionError:  # pragma: no cover - _too_deep refuses such lines first
        return Message(
            replies=[error_reply(None, InvalidRequest("invalid request: nested too deeply"))]
        )
    # JSON can only carry U+0000 as this escape: lines without it cost one scan.
    may_hold_nul = b"\\u0000" in line
    if isinstance(data, list):
        if not data:
            return Message(
                replies=[error_reply(None, InvalidRequest("invalid request: empty batch"))]
            )
        if max_batch is not None and len(data) > max_batch:
            # Checked before any item is looked at: one error, not one per item.
            refusal = InvalidRequest(
                f"invalid request: a batch of {len(data)} items is over the limit of {max_batch}"
            )
            return Message(replies=[error_reply(None, refusal)])
        message = Message(is_batch=True)
        for index, item in enumerate(data):
            parsed = _parse_call(
                item, exact[index] if exact is not None else None, may_hold_nul=may_hold_nul
            )
            if isinstance(parsed, Call):
                message.calls.append(parsed)
            elif parsed is not _DROPPED:
                message.replies.append(parsed)
        return message
    parsed = _parse_call(data, exact, may_hold_nul=may_hold_nul)
    if isinstance(parsed, Call):
        return Message(calls=[parsed])
    return Message(replies=[] if parsed is _DROPPED else [parsed])


# -- nesting ------------------------------------------------------------------------


def _too_deep(line: bytes, data: Any) -> bool:
    # Fewer brackets than the limit cannot nest that deep: the common case costs two counts.
    if line.count(b"[") + line.count(b"{") <= MAX_NESTING:
        return False
    return deeper_than(data, MAX_NESTING)


# -- integers orjson cannot keep ---------------------------------------------------
#
# orjson decodes integers outside -2^63 … 2^64-1 as floats, silently. Such a
# value must not be stored as something else than what the client sent, so
# it is refused. Only a line with a run of 19 or more digits can hold one, so
# only such lines pay for a second, exact decode (stdlib json, Python ints).


class _Huge(int):
    """An integer literal too long even to convert (beyond 40 digits)."""


def _exact_int(text: str) -> int:
    return _Huge(0) if len(text) > 40 else int(text)


def _exact_items(line: bytes, data: Any) -> Any:
    """`data` decoded again with exact integers, or None when it cannot differ."""
    if _LONG_DIGITS not in line.translate(_DIGITS_AS_ZEROS):
        return None
    exact = json.loads(line, parse_int=_exact_int)
    if isinstance(data, list) and not isinstance(exact, list):
        return None
    return exact


def _inexact(value: Any) -> bool:
    if isinstance(value, _Huge):
        return True
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
    )


def _inexact_paths(value: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], Any]]:
    """Where integers outside what the codec keeps exactly sit in `value`, depth first."""
    stack: list[tuple[Any, list[str | int]]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            stack.extend((item, [*where, key]) for key, item in reversed(current.items()))
        elif isinstance(current, list):
            stack.extend(
                (item, [*where, index]) for index, item in reversed(list(enumerate(current)))
            )
        elif isinstance(current, _Huge):
            yield where, "with more than 40 digits"
        elif (
            isinstance(current, int)
            and not isinstance(current, bool)
            and not EXACT_MIN <= current <= EXACT_MAX
        ):
            yield where, current


# -- U+0000 ------------------------------------------------------------------------
#
# PostgreSQL's text and jsonb cannot hold U+0000, so an event, rule or filter
# with one would fail inside a commit that other clients' events share. It is
# refused here, naming its place, on every bus: what one backend takes, all do.

_WHY_NO_NUL = "PostgreSQL storage cannot keep it, so no bus takes it"


def _nul_paths(value: Any) -> Iterator[tuple[list[str | int], str]]:
    """Where strings (or object keys) holding U+0000 sit in `value`, depth first."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            if "\x00" in current:
                yield where, f"U+0000 (NUL) is not allowed in strings: {_WHY_NO_NUL}"
        elif isinstance(current, dict):
            if any("\x00" in key for key in current):
                yield (
                    where,
                    f"an object key holds U+0000 (NUL), which is not allowed: {_WHY_NO_NUL}",
                )
                continue
            stack.extend((item, [*where, key]) for key, item in reversed(current.items()))
        elif isinstance(current, list):
            stack.extend(
                (item, [*where, index]) for index, item in reversed(list(enumerate(current)))
            )
