"""A real MCP tool server written with the SDK (its FastMCP, named MCPServer in mcp 2),
for rules to call: `python -m tests.mcp.tool_server` serves stdio; `http_server()`
serves Streamable HTTP on 127.0.0.1 and an ephemeral port.

Tools:
    echo(**anything)   → {"arguments", "meta", "pid"}: what it got, and which process answered
    add(a: int, b: int) → {"sum": a + b}: a tool with a schema to break
    fail(reason: str)  → isError, with the reason as its text
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("eventbus-test-tools", log_level="WARNING")


@server.tool(structured_output=True)
def echo(ctx: Context, repo: str = "", note: str = "", count: int = 0) -> dict[str, Any]:
    """What the tool got: its arguments and the request's _meta."""
    meta = dict(ctx.request_context.meta or {})
    meta = {
        key: value for key, value in meta.items() if not key.startswith("io.modelcontextprotocol/")
    }
    print(f"echo called with repo={repo!r}", file=sys.stderr, flush=True)  # reaches the bus log
    return {
        "arguments": {"repo": repo, "note": note, "count": count},
        "meta": meta,
        "pid": os.getpid(),
    }


@server.tool(structured_output=True)
def add(a: int, b: int) -> dict[str, int]:
    """a + b."""
    return {"sum": a + b}


@server.tool()
def fail(reason: str = "no reason") -> str:
    """Always an isError result."""
    raise ToolError(f"failed on purpose: {reason}")


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    """This server over Streamable HTTP on 127.0.0.1; its /mcp URL until the block ends."""
    import uvicorn

    app = server.streamable_http_app()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    try:
        while not running.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = running.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        running.should_exit = True
        await task


if __name__ == "__main__":
    server.run("stdio")
