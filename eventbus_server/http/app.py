"""The routes of a bus's HTTP side, and the one place an error becomes an HTTP answer.

    GET  /healthz   200 while the process runs                  (no token)
    GET  /readyz    200, or 503 with the reason (storage, writer) (no token)
    GET  /metrics   Prometheus text (metrics.py)                (token unless metrics_public)
    POST /events    CloudEvents in (ingest.py)                  (token)
    GET  /events    Server-Sent Events out (sse.py)             (token)

Every route is an adapter over the bus's verbs (DESIGN §14, STYLE "Adapters at
the edge"): `submit` for CloudEvents, `subscribe_sse` for the stream,
`metrics`/`readiness` for the rest. A bus error keeps its JSON-RPC error
object as the body (`{"error": {code, message, data?}}`) under the status
below; a wrong token waits WRONG_TOKEN_DELAY_S, as on the TCP side.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from eventbus_server.bus import Bus
from eventbus_server.http.ingest import post_events
from eventbus_server.http.metrics import MetricsEndpoint
from eventbus_server.http.sse import EventStreams

__all__ = ["WRONG_TOKEN_DELAY_S", "build_app", "error_response", "json_response"]

#: A wrong bearer token is answered this late (as a wrong `authenticate` is).
WRONG_TOKEN_DELAY_S = 0.1

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


Handler = Callable[[Request], Awaitable[Response]]


def build_app(bus: Bus, streams: EventStreams) -> Starlette:
    """The ASGI app of one bus's HTTP side."""
    config = bus.config
    token = config.auth_token.get_secret_value().encode() if config.auth_token is not None else None
    metrics = MetricsEndpoint(bus)

    def guarded(handler: Handler, *, public: bool = False) -> Handler:
        if token is None or public:
            return handler

        async def check_token(request: Request) -> Response:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                if request.method == "POST":
                    bus.note_rejected("unauthorized")
                return error_response(Unauthorized(f"bus {bus.id!r} requires Authorization: Bearer <token>"))
            if not hmac.compare_digest(given.strip().encode(), token):
                await asyncio.sleep(WRONG_TOKEN_DELAY_S)
                if request.method == "POST":
                    bus.note_rejected("unauthorized")
                return error_response(Unauthorized(f"wrong token for bus {bus.id!r}"))
            return await handler(request)

        return check_token

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "bus": bus.id})

    async def readyz(request: Request) -> Response:
        reason = await bus.readiness()
        if reason is None:
            return json_response({"status": "ready", "bus": bus.id})
        return json_response({"status": "not ready", "bus": bus.id, "reason": reason}, 503)

    async def ingest(request: Request) -> Response:
        try:
            return json_response(await post_events(bus, request), 202)
        except EventBusError as exc:
            return error_response(exc)

    assert config.http is not None
    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", guarded(metrics.handle, public=config.http.metrics_public), methods=["GET"]),
        Route("/events", guarded(ingest), methods=["POST"]),
        Route("/events", guarded(streams.handle), methods=["GET"]),
    ]
    return Starlette(routes=routes)
