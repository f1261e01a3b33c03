"""`eventbus ui`: the live dashboard (Textual; eventbus_cli/ui/)."""

from __future__ import annotations

from typing import Annotated

import typer

from eventbus_cli.options import ConfigOption, TokenOption
from eventbus_cli.runner import usage
from eventbus_cli.targets import Target, bus_urls, default_config_path, resolve_target


def ui(
    bus: Annotated[
        list[str] | None,
        typer.Option("--bus", "-b", help="Show only this bus of --config (repeatable)."),
    ] = None,
    url: Annotated[
        list[str] | None,
        typer.Option("--url", help="Show the bus at tcp://host:port (repeatable)."),
    ] = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """A live dashboard: buses, topics with rates, the event stream, rule firings,
    rules, durable consumers and schedules.

    Without --bus or --url it shows every bus of the config. Keys: ? help (all
    of them), / filter (escape leaves it), p pause, enter details, 1-5 tabs,
    r retries a failed firing or redrives dead letters, space switches a rule
    or a schedule on/off, q quit.

    Examples:

      eventbus ui

      eventbus ui --bus global

      eventbus ui --url tcp://10.0.0.5:4010 --url tcp://10.0.0.6:4010
    """

    def targets() -> list[Target]:
        if url:
            return [resolve_target(u, None, None, token) for u in url]
        found = bus_urls(config or default_config_path())
        if bus:
            found = [resolve_target(None, b, config, token) for b in bus]
        return [Target(t.url, t.bus_id, token or t.token) for t in found]

    chosen = usage(targets)
    # Textual is imported only here: no other command pays for it.
    from eventbus_cli.ui.app import DashboardApp
    from eventbus_cli.ui.model import BusView

    DashboardApp([BusView(t.name, t.url, t.token) for t in chosen]).run()
