"""`eventbus serve`: run the buses of a config file in this process."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eventbus_cli.completion import complete_bus_id
from eventbus_cli.errors import EXIT_USAGE
from eventbus_cli.options import ConfigOption
from eventbus_cli.output import err_console
from eventbus_cli.targets import default_config_path

if TYPE_CHECKING:
    from eventbus_server.app import EventBusApp


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def serve(
    config: ConfigOption = None,
    bus: Annotated[
        list[str] | None,
        typer.Option(
            "--bus",
            "-b",
            metavar="ID",
            help="Run only this bus (repeatable).",
            show_default=False,
            autocompletion=complete_bus_id,
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="How much the log says.", case_sensitive=False)
    ] = LogLevel.info,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="text (key=value lines) or json (one object per line).",
            case_sensitive=False,
        ),
    ] = LogFormat.text,
) -> None:
    """Run every bus of the config (or just --bus ones), each on its own port.

    Stops cleanly on Ctrl+C / SIGTERM: stops accepting, commits and acknowledges
    every queued event, closes storage. A second Ctrl+C exits at once.

    Examples:

      eventbus serve

      eventbus serve --config /etc/eventbus/event_buses.json --bus global

      OTEL_TRACES_EXPORTER=console eventbus serve --log-format json
    """
    # Imported here so `eventbus --help` and client commands never load the server.
    from eventbus_core.config import ConfigError, load_config
    from eventbus_server.app import run

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
    raise typer.Exit(
        # With JSON logs stderr is for machines: the log's own lines say where each bus listens.
        run(
            loaded,
            bus_ids=bus,
            log_level=log_level.value,
            log_format=log_format.value,
            ready=print_banner if log_format is LogFormat.text else None,
        )
    )


def print_banner(app: EventBusApp) -> None:
    """Which buses run where, once all of them listen (stderr, like the log)."""
    from rich.table import Table

    table = Table(
        title=f"eventbus serving {len(app.buses)} bus{'es' if len(app.buses) != 1 else ''}",
        header_style="bold",
    )
    for column in ("bus", "address", "http", "storage", "rules", "auth", "sources"):
        table.add_column(column, overflow="fold")
    for bus_id, bus in app.buses.items():
        config = bus.config
        table.add_row(
            bus_id,
            app.url(bus_id),
            app.http_url(bus_id) if config.http is not None else "-",
            config.storage_description(),
            "on" if config.enable_rules else "off",
            "token" if config.auth_token_env else "-",
            ", ".join(config.allowed_sources) if config.allowed_sources is not None else "any",
        )
    err_console.print(table)
    err_console.print("[dim]Ctrl+C stops (a second Ctrl+C exits at once)[/]")
