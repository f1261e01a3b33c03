"""`eventbus mcp`: the bus as an MCP server (DESIGN §12). Loaded only by that command."""

from eventbus_cli.mcp_server.run import serve_http, serve_stdio
from eventbus_cli.mcp_server.server import McpAdapter, McpLimits

__all__ = ["McpAdapter", "McpLimits", "serve_http", "serve_stdio"]
