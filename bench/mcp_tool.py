"""The tool `bench.mcp` calls, three ways: as a `python` route's function, and as an MCP
server (the SDK's MCPServer) over stdio (`python -m bench.mcp_tool`) or Streamable HTTP
(`python -m bench.mcp_tool --http`: 127.0.0.1, a free port, printed as `port=N` on stderr).

Each answers the wall clock at the moment it was called, in ns."""

from __future__ import annotations

import sys
import time
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("eventbus-bench", log_level="WARNING")


def called(call: dict[str, Any]) -> dict[str, int]:
    """The `python` route's function."""
    return {"called_at_ns": time.time_ns()}


@server.tool(name="called", structured_output=True)
def called_tool(n: int = 0) -> dict[str, int]:
    """When the call arrived."""
    return {"called_at_ns": time.time_ns()}


def serve_http() -> None:
    import anyio
    import uvicorn

    async def main() -> None:
        config = uvicorn.Config(
            server.streamable_http_app(), host="127.0.0.1", port=0, log_level="warning"
        )
        running = uvicorn.Server(config)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(running.serve)
            while not running.started:
                await anyio.sleep(0.01)
            print(
                f"port={running.servers[0].sockets[0].getsockname()[1]}",
                file=sys.stderr,
                flush=True,
            )

    anyio.run(main)


if __name__ == "__main__":
    if "--http" in sys.argv:
        serve_http()
    else:
        server.run("stdio")
