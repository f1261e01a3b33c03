"""Runs every configured bus in one process, and stops them cleanly.

`startup()` opens each bus's storage (migrations run there) and binds its
port (and its HTTP port, DESIGN §14); `shutdown()` stops accepting, drains
every emit queue (so every queued emit is committed and acknowledged),
answers what is pending, and closes storage. SIGINT/SIGTERM trigger
shutdown; a second signal forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from eventbus_core.config import BusConfig, Config
from eventbus_core.errors import EventBusError
from eventbus_server import gc_tuning, tracing
from eventbus_server.bus import Bus
from eventbus_server.connection import Connection
from eventbus_server.logs import configure_logging

if TYPE_CHECKING:
    from eventbus_server.http import HttpServer

__all__ = ["EventBusApp", "run", "serve"]

log = logging.getLogger("eventbus")


class _Running:
    """One bus with its listening server (the bus keeps its connections)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.server: asyncio.base_events.Server | None = None
        self.http: HttpServer | None = None
        if bus.config.http is not None:
            # uvicorn and Starlette load only for a bus with http.
            from eventbus_server.http import HttpServer

            self.http = HttpServer(bus)


def _ssl_context(config: BusConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls.cert, config.tls.key)
    return context


class EventBusApp:
    def __init__(self, config: Config, *, bus_ids: Sequence[str] | None = None) -> None:
        buses = config.buses if not bus_ids else tuple(config.bus(bus_id) for bus_id in bus_ids)
        self.config = config
        # One mapping shared by every bus, so a rule can emit on a sibling bus.
        peers: dict[str, Bus] = {}
        self._running = []
        for bus_config in buses:
            bus = Bus(bus_config, peers=peers)
            peers[bus.id] = bus
            self._running.append(_Running(bus))
        self.should_exit = asyncio.Event()

    @property
    def buses(self) -> dict[str, Bus]:
        return {r.bus.id: r.bus for r in self._running}

    def address(self, bus_id: str) -> tuple[str, int]:
        """The bound (host, port) of a bus, useful when the config says port 0."""
        for running in self._running:
            if running.bus.id == bus_id and running.server is not None:
                host, port = running.server.sockets[0].getsockname()[:2]
                return host, port
        raise KeyError(bus_id)

    def url(self, bus_id: str) -> str:
        host, port = self.address(bus_id)
        return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"

    def http_url(self, bus_id: str) -> str:
        """`http://host:port` of a bus's HTTP side (KeyError when it has none)."""
        for running in self._running:
            if running.bus.id == bus_id and running.http is not None:
                return running.http.url
        raise KeyError(bus_id)

    async def startup(self) -> None:
        """Open every bus's storage, then bind its port; a failure closes what was opened."""
        loop = asyncio.get_running_loop()
        try:
            for running in self._running:
                bus = running.bus
                await bus.start()
                running.server = await loop.create_server(
                    lambda bus=bus: Connection(bus),
                    bus.config.host,
                    bus.config.port,
                    ssl=_ssl_context(bus.config),
                    reuse_address=True,
                    backlog=1024,
                )
                if running.http is not None:
                    await running.http.start()
                host, port = self.address(bus.id)
                log.info(
                    "bus=%s listen=%s:%d storage=%s rules=%s allowed_sources=%s",
                    bus.id,
                    host,
                    port,
                    bus.config.storage_description(),
                    "on" if bus.config.enable_rules else "off",
                    ",".join(bus.config.allowed_sources)
                    if bus.config.allowed_sources is not None
                    else "*",
                )
        except BaseException:
            await self.shutdown()
            raise

    async def shutdown(self) -> None:
        """Stop accepting → drain emit queues → answer pending calls → close storage."""
        for running in self._running:
            # Stop accepting first: no new connections while we drain.
            if running.server is not None:
                running.server.close()
            if running.http is not None:
                running.http.begin_stop()  # event streams end; POSTs in flight get their commits
            for connection in running.bus.connections():
                connection.stop_reading()
        for running in self._running:
            # Rules first, on every bus: a firing may still emit on a sibling bus.
            await running.bus.stop_rules()
        for running in self._running:
            # Every emit already queued is committed and acknowledged before storage closes.
            await running.bus.stop()
            await asyncio.gather(
                *(c.finish() for c in running.bus.connections()), return_exceptions=True
            )
            if running.http is not None:
                await running.http.stop()
            if running.server is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await running.server.wait_closed()
        log.info("stopped buses=%s", ",".join(r.bus.id for r in self._running))

    async def serve(
        self, *, handle_signals: bool = True, ready: Callable[[EventBusApp], None] | None = None
    ) -> None:
        """Start, run until `should_exit` is set (by a signal or a test), then shut down."""
        if handle_signals:
            # Before startup: a signal during it (after the first bus listens) still shuts down cleanly.
            self._install_signal_handlers()
        await self.startup()
        if ready is not None:
            ready(self)
        try:
            await self.should_exit.wait()
        finally:
            await self.shutdown()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.should_exit.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received: shutting down (again to force)", signal.Signals(signum).name)
            self.should_exit.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)


async def serve(
    config: Config,
    *,
    bus_ids: Sequence[str] | None = None,
    handle_signals: bool = True,
    ready: Callable[[EventBusApp], None] | None = None,
) -> None:
    await EventBusApp(config, bus_ids=bus_ids).serve(handle_signals=handle_signals, ready=ready)


def run(
    config: Config,
    *,
    bus_ids: Sequence[str] | None = None,
    log_level: str = "INFO",
    log_format: str = "text",
    ready: Callable[[EventBusApp], None] | None = None,
) -> int:
    """Serve until a signal; the process's exit status. `ready(app)` once every bus listens.

    Spans are recorded when the OTEL_* variables configure OpenTelemetry (tracing.py)."""
    configure_logging(log_level, log_format)

    def started(app: EventBusApp) -> None:
        # This process is a server from now on: what startup made lives as long as it does.
        gc_tuning.tune_for_serving()
        if ready is not None:
            ready(app)

    tracing.configure_from_env()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config, bus_ids=bus_ids, ready=started))
    except (OSError, EventBusError) as exc:
        # Cannot bind a port, cannot open storage: one line, no traceback.
        log.error("cannot start: %s", exc)
        return 1
    return 0
