"""Tool invokers: how a firing reaches the tool its TRN names (DESIGN.md §7, §12).

`invoke.ToolRouter` picks the route whose `match` the tool id fits and calls
it by kind: `http`, `jsonrpc`, `command`, `python` (invoke.py) or `mcp`
(mcp.py, with its own bounded stdio transport in mcp_stdio.py). Every call
is bounded in time and in the size of its reply.
"""
