"""`eventbus mcp`: the bus as an MCP server (DESIGN §12). Loaded only by that command."""

from .run import serve_http, serve_stdio
from .server import McpAdapter, McpLimits

__all__ = ["McpAdapter", "McpLimits", "serve_http", "serve_stdio"]
