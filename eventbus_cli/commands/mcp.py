"""`eventbus mcp`: serve the bus to AI agents over MCP (stdio, or Streamable HTTP with --http)."""

from __future__ import annotations

from typing import Annotated

import typer

from eventbus_cli.errors import UsageError
from eventbus_cli.options import BusOption, ConfigOption, TokenOption, UrlOption
from eventbus_cli.output import err_console
from eventbus_cli.runner import run, usage
from eventbus_cli.targets import resolve_target


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--http {value}: expected HOST:PORT (e.g. --http 127.0.0.1:8931)")
    return host, int(port)


def mcp(
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            help="Serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio (port 0: any free port).",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Serve the bus as an MCP server: tools (emit_event, poll_events, list_topics,
    wait_for_event, list_rules, register_rule, test_rule, list_firings) and topics as
    resources an agent can subscribe to. It is a client of the bus, local or remote.

    Over stdio (the default) an agent host starts it; nothing but MCP is written
    to stdout. With --http it serves Streamable HTTP at /mcp and prints the URL on
    stderr; it has no authentication of its own, so keep it on 127.0.0.1.

    Examples:

      eventbus mcp --bus global

      eventbus mcp --url tcp://127.0.0.1:4010 --http 127.0.0.1:8931
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    address = usage(lambda: _listen(http)) if http is not None else None

    async def main() -> None:
        import logging

        from eventbus_cli.mcp_server import McpAdapter, serve_http, serve_stdio
        from eventbus_cli.mcp_server.run import is_loopback
        from eventbus_client import connect

        # The log goes to stderr: stdout is the MCP channel when serving stdio.
        logging.basicConfig(
            level=logging.WARNING, format="eventbus mcp: %(levelname)s %(name)s: %(message)s"
        )
        async with await connect(target.url, token=target.token) as client:
            bus_id = target.bus_id or str((await client.bus_info())["id"])
            adapter = McpAdapter(client, bus_id)
            if address is None:
                await serve_stdio(adapter)
                return
            host, port = address
            if not is_loopback(host):
                err_console.print(
                    f"[yellow]warning:[/] --http {host}: anyone who reaches it uses bus {bus_id} as this command does"
                )
            await serve_http(adapter, host, port, on_ready=lambda where: _ready(bus_id, where))

    run(target, main)


def _ready(bus_id: str, where: str) -> None:
    err_console.print(f"eventbus mcp: bus {bus_id} at {where}", markup=False, highlight=False)


__all__ = ["mcp"]
