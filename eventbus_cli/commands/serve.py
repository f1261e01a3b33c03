"""`eventbus serve`: run the buses of a config file in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_USAGE
from ..options import ConfigOption
from ..output import err_console
from ..targets import default_config_path


def serve(
    config: ConfigOption = None,
    bus: Annotated[
        list[str] | None, typer.Option("--bus", "-b", help="Run only this bus (repeatable).", show_default=False)
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run every bus of the config (or just --bus ones), each on its own port.

    Stops cleanly on Ctrl+C / SIGTERM: stops accepting, commits and acknowledges
    every queued event, closes storage. A second Ctrl+C exits at once.

    Examples:

      eventbus serve

      eventbus serve --config /etc/eventbus/event_buses.json --bus global
    """
    # Imported here so `eventbus --help` and client commands never load the server.
    from eventbus_server.app import run
    from eventbus_server.config import ConfigError, load_config

    path: Path = config or default_config_path()
    try:
        loaded = load_config(path)
        for bus_id in bus or ():
            loaded.bus(bus_id)
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] invalid config {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyError as exc:
        err_console.print(f"[bold red]error:[/] {exc.args[0]}")
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(run(loaded, bus_ids=bus, log_level=log_level))
