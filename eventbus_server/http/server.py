"""A bus's HTTP side on its own port: Starlette routes served by uvicorn, in the
bus's process and event loop (DESIGN §14).

Why uvicorn and Starlette: `eventbus mcp --http` already serves Streamable
HTTP with them (the MCP SDK brings both), so one stack serves every HTTP
endpoint of the project, on uvloop like the TCP side.

Why uvicorn's h11 parser and not httptools: httptools answered 1.4-1.5x more
sequential requests a second (paired A/B on this 2-core machine: POST /events
2,858 vs 1,956/s, GET /healthz 4,413 vs 3,160/s), but uvicorn puts no bound
on a request head with it: 20 MB of header lines were taken in (RSS +13 MB)
where h11 answers 400 at MAX_HEAD_BYTES. A bus is shared infrastructure, so
the bounded parser; batches (application/cloudevents-batch+json) are where
ingest throughput comes from anyway (bench/http.py).

The socket is bound here, before uvicorn starts, so a port in use fails
`startup()` with an OSError like the TCP port does. uvicorn's own signal
handling is off: the app's handlers stop everything, this included.

Limits: at most `max_connections` HTTP connections at once (503 beyond,
uvicorn's `limit_concurrency`), request heads of at most 64 KiB, idle
keep-alive connections closed after 5 s, bodies bounded in ingest.py,
streams in sse.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from eventbus_server.bus import Bus
from eventbus_server.http.app import build_app
from eventbus_server.http.sse import EventStreams

__all__ = ["HttpServer"]

log = logging.getLogger("eventbus.http")

#: At shutdown, requests still running (a POST waiting for its commit) get this long.
GRACEFUL_SHUTDOWN_S = 5
#: The largest request head (request line and headers).
MAX_HEAD_BYTES = 65_536


class _Embedded(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the app's signal handlers stop the bus and, through it, this server


class _QuietEndOfStream(logging.Filter):
    """A dropped event stream ends its response unfinished on purpose; uvicorn calls that an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietEndOfStream())  # once per process


class HttpServer:
    """The HTTP side of one bus; `start()` binds and serves, `stop()` ends it."""

    def __init__(self, bus: Bus) -> None:
        assert bus.config.http is not None
        self.bus = bus
        self.config = bus.config.http
        self.streams = EventStreams(bus)
        self._server: _Embedded | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._socket is not None
        host, port = self._socket.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def start(self) -> None:
        self._socket = _bind(self.config.host, self.config.port)
        limits = self.bus.config
        config = uvicorn.Config(
            build_app(self.bus, self.streams),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            http="h11",  # see the module docstring
        )
        self._server = _Embedded(config)
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket]), name=f"http:{self.bus.id}"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(
                    f"bus {self.bus.id}: the HTTP server on {self.config.listen} did not start"
                )
            await asyncio.sleep(0.005)
        log.info("bus=%s http=%s", self.bus.id, self.url)

    def begin_stop(self) -> None:
        """Stop accepting; end every event stream (requests in flight finish)."""
        self.streams.end_all()
        if self._server is not None:
            self._server.should_exit = True

    async def stop(self) -> None:
        self.begin_stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound now (so a taken port fails startup, named)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it a response's head and body wait for a delayed ACK (40 ms each).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen for HTTP on {host}:{port}: {exc.strerror}"
        ) from None
    return sock
