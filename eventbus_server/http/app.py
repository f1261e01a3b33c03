"""The routes of a bus's HTTP side, and its token.

    GET  /healthz   200 while the process runs                  (no token)
    GET  /readyz    200, or 503 with the reason (storage, writer) (no token)
    GET  /metrics   Prometheus text (metrics.py)                (token unless metrics_public)
    POST /events    CloudEvents in (ingest.py)                  (token)
    GET  /events    Server-Sent Events out (sse.py)             (token)

Every route is an adapter over the bus's verbs (DESIGN §14, STYLE "Adapters at
the edge"): `submit` for CloudEvents, `subscribe_sse` for the stream,
`metrics`/`readiness` for the rest. A bus error keeps its JSON-RPC error
object as the body (`{"error": {code, message, data?}}`) under its status
(answers.py); a wrong token waits WRONG_TOKEN_DELAY_S, as on the TCP side.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventbus_core.errors import EventBusError, Unauthorized
from eventbus_server.bus import Bus
from eventbus_server.http.answers import error_response, json_response
from eventbus_server.http.ingest import post_events
from eventbus_server.http.metrics import MetricsEndpoint
from eventbus_server.http.sse import EventStreams

__all__ = ["WRONG_TOKEN_DELAY_S", "build_app"]

#: A wrong bearer token is answered this late (as a wrong `authenticate` is).
WRONG_TOKEN_DELAY_S = 0.1

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
                return error_response(
                    Unauthorized(f"bus {bus.id!r} requires Authorization: Bearer <token>")
                )
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
        Route(
            "/metrics", guarded(metrics.handle, public=config.http.metrics_public), methods=["GET"]
        ),
        Route("/events", guarded(ingest), methods=["POST"]),
        Route("/events", guarded(streams.handle), methods=["GET"]),
    ]
    return Starlette(routes=routes)
