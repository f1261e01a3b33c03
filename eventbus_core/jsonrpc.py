"""JSON-RPC 2.0 messages, sans-IO: parse a line into calls, build replies.

`parse_message` turns one received line into a `Message`: the calls to run
and the error replies that are already known (parse errors, invalid request
objects). The connection runs the calls and writes the replies; whether the
replies go back as one array (a batch) or one object is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import DecodeError, loads
from .errors import EventBusError, InvalidRequest, ParseError, to_error_object

__all__ = [
    "NO_ID",
    "Call",
    "Message",
    "error_reply",
    "notification",
    "parse_message",
    "request",
    "result_reply",
]

VERSION = "2.0"


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


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _parse_call(item: Any) -> Call | dict[str, Any]:
    """A Call, or the error reply for an invalid request object."""
    if not isinstance(item, dict):
        return error_reply(None, InvalidRequest("invalid request: expected a JSON object"))
    call_id = item.get("id", NO_ID)
    reply_id = call_id if call_id is not NO_ID and _valid_id(call_id) else None
    if item.get("jsonrpc") != VERSION:
        return error_reply(reply_id, InvalidRequest('invalid request: "jsonrpc" must be "2.0"'))
    if call_id is not NO_ID and not _valid_id(call_id):
        return error_reply(None, InvalidRequest('invalid request: "id" must be a string, number or null'))
    method = item.get("method")
    if not isinstance(method, str):
        return error_reply(reply_id, InvalidRequest('invalid request: "method" must be a string'))
    params = item.get("params")
    if "params" in item and not isinstance(params, dict | list):
        return error_reply(reply_id, InvalidRequest('invalid request: "params" must be an object or array'))
    return Call(method, params, call_id)


def parse_message(line: bytes) -> Message:
    try:
        data = loads(line)
    except DecodeError as exc:
        return Message(replies=[error_reply(None, ParseError(f"parse error: {exc}"))])
    if isinstance(data, list):
        if not data:
            return Message(replies=[error_reply(None, InvalidRequest("invalid request: empty batch"))])
        message = Message(is_batch=True)
        for item in data:
            parsed = _parse_call(item)
            if isinstance(parsed, Call):
                message.calls.append(parsed)
            else:
                message.replies.append(parsed)
        return message
    parsed = _parse_call(data)
    if isinstance(parsed, Call):
        return Message(calls=[parsed])
    return Message(replies=[parsed])
