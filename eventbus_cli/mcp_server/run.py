"""Running an `McpAdapter` on a transport: stdio (an agent host spawns it) or Streamable HTTP."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

import uvicorn
from mcp.server.stdio import stdio_server

from eventbus_cli.mcp_server.server import McpAdapter

__all__ = ["is_loopback", "serve_http", "serve_stdio"]

log = logging.getLogger("eventbus.mcp")

#: The Streamable HTTP endpoint's path (DESIGN §12).
MCP_PATH = "/mcp"
#: At shutdown, open requests and SSE streams get this long.
GRACEFUL_SHUTDOWN_S = 2


async def serve_stdio(adapter: McpAdapter) -> None:
    """Serve MCP on this process's stdin and stdout until the host closes stdin."""
    server = adapter.server
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await adapter.aclose()


async def serve_http(
    adapter: McpAdapter, host: str, port: int, *, on_ready: Callable[[str], None]
) -> None:
    """Serve MCP over Streamable HTTP at http://host:port/mcp until SIGINT/SIGTERM; `on_ready(url)` once bound."""
    app = adapter.server.streamable_http_app(
        streamable_http_path=MCP_PATH, host=host, max_sessions=adapter.limits.max_sessions
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        # The bus's HTTP side's choices (eventbus_server/http/server.py): h11, whose
        # request heads are bounded, whatever else is installed.
        http="h11",
        h11_max_incomplete_event_size=65_536,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,  # open SSE streams would hold it forever
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # uvicorn logged why (a port in use, say) and exits
                raise OSError(f"cannot serve on {host}:{port}")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{bound}{MCP_PATH}")
        await serving
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await adapter.aclose()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
