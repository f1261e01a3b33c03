"""The one error tree shared by server, client and CLI.

Every error a bus can answer is a subclass of `EventBusError` carrying the
JSON-RPC `code` of DESIGN.md §3. The server raises them, `to_error_object`
turns them into the wire form, and the client's `from_error_object` turns the
wire form back into the same class, so callers catch the same exceptions on
both sides of the socket.

    EventBusError
    ├── ParseError                 -32700
    ├── InvalidRequest             -32600
    ├── MethodNotFound             -32601
    ├── InvalidParams              -32602  (data: [{loc, msg}, ...])
    ├── InternalError              -32603
    ├── SourceNotAllowed           -32001
    ├── NotFound                   -32002
    ├── RulesDisabled              -32003
    ├── AlreadyExists              -32004
    ├── Overloaded                 -32005  (retryable)
    ├── Unauthorized               -32006
    ├── MessageTooLarge            -32007
    ├── StorageUnavailable         -32008  (retryable)
    └── ReservedTopic              -32009

`ConnectionLost` is the client's own: the socket closed or could not be opened.
It never crosses the wire.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AlreadyExists",
    "ConnectionLost",
    "EventBusError",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MessageTooLarge",
    "MethodNotFound",
    "NotFound",
    "Overloaded",
    "ParseError",
    "ReservedTopic",
    "RulesDisabled",
    "SourceNotAllowed",
    "StorageUnavailable",
    "Unauthorized",
    "error_class_for",
    "from_error_object",
    "to_error_object",
]


class EventBusError(Exception):
    """Base of every error a bus answers with; `code` is its JSON-RPC code."""

    code: ClassVar[int] = -32603
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "error"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class ParseError(EventBusError):
    code = -32700
    default_message = "parse error: the line is not valid JSON"


class InvalidRequest(EventBusError):
    code = -32600
    default_message = "invalid request"


class MethodNotFound(EventBusError):
    code = -32601
    default_message = "method not found"


class InvalidParams(EventBusError):
    code = -32602
    default_message = "invalid params"


class InternalError(EventBusError):
    code = -32603
    retryable = True
    default_message = "internal error"


class SourceNotAllowed(EventBusError):
    code = -32001
    default_message = "source not allowed"


class NotFound(EventBusError):
    code = -32002
    default_message = "not found"


class RulesDisabled(EventBusError):
    code = -32003
    default_message = "rules are disabled on this bus"


class AlreadyExists(EventBusError):
    code = -32004
    default_message = "already exists"


class Overloaded(EventBusError):
    code = -32005
    retryable = True
    default_message = "overloaded: back off and retry"


class Unauthorized(EventBusError):
    code = -32006
    default_message = "unauthorized: call authenticate with the bus token first"


class MessageTooLarge(EventBusError):
    code = -32007
    default_message = "message too large"


class StorageUnavailable(EventBusError):
    code = -32008
    retryable = True
    default_message = "storage unavailable: retry later"


class ReservedTopic(EventBusError):
    code = -32009
    default_message = "reserved topic: the _sys. prefix belongs to the bus"


class ConnectionLost(EventBusError):
    """The client could not reach the bus, or the connection dropped."""

    code = 0
    retryable = True
    default_message = "connection lost"


_BY_CODE: dict[int, type[EventBusError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        SourceNotAllowed,
        NotFound,
        RulesDisabled,
        AlreadyExists,
        Overloaded,
        Unauthorized,
        MessageTooLarge,
        StorageUnavailable,
        ReservedTopic,
    )
}


def error_class_for(code: int) -> type[EventBusError]:
    """The class for a wire code; unknown codes map to the base class."""
    return _BY_CODE.get(code, EventBusError)


def to_error_object(exc: EventBusError) -> dict[str, Any]:
    """The JSON-RPC `error` member for `exc`."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    return error


def from_error_object(error: Any) -> EventBusError:
    """Rebuild the exception a server raised from its JSON-RPC `error` member."""
    if not isinstance(error, dict):
        return InternalError(f"malformed error object from the bus: {error!r}")
    code = error.get("code")
    cls = error_class_for(code) if isinstance(code, int) else EventBusError
    exc = cls(str(error.get("message") or cls.default_message), error.get("data"))
    if cls is EventBusError and isinstance(code, int):
        exc.code = code  # type: ignore[misc]  # keep an unknown code visible
    return exc
