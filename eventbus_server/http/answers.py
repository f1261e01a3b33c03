"""The one place a bus error becomes an HTTP answer: its status, and its JSON-RPC
error object as the body (`{"error": {code, message, data?}}`), so an HTTP
client reads what a TCP client would."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from eventbus_core.codec import dumps
from eventbus_core.errors import (
    EventBusError,
    InvalidParams,
    InvalidRequest,
    MessageTooLarge,
    NotFound,
    Overloaded,
    ParseError,
    ReservedTopic,
    SourceNotAllowed,
    StorageUnavailable,
    Unauthorized,
    to_error_object,
)

__all__ = ["error_response", "json_response"]

_STATUS: dict[type[EventBusError], int] = {
    ParseError: 400,
    InvalidRequest: 400,
    InvalidParams: 400,
    ReservedTopic: 400,
    Unauthorized: 401,
    SourceNotAllowed: 403,
    NotFound: 404,
    MessageTooLarge: 413,
    Overloaded: 429,
    StorageUnavailable: 503,
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: EventBusError) -> Response:
    """A bus error as HTTP: its status, and its error object as the body."""
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
    headers: dict[str, str] = {}
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="eventbus"'
    elif status in (429, 503):
        headers["retry-after"] = "1"
    return json_response({"error": to_error_object(exc)}, status, headers)
