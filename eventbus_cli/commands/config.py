"""`eventbus config validate|show`: check a config file, print the effective config.

Both load the file with the one loader the server uses (`eventbus_core.config`), so
the CLI reports exactly what `eventbus serve` would refuse. The import is lazy:
`eventbus --help` never loads the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from eventbus_cli.errors import EXIT_CODES_HELP, EXIT_USAGE
from eventbus_cli.help_format import PlainCommand, PlainGroup
from eventbus_cli.options import ConfigOption
from eventbus_cli.output import Output, err_console
from eventbus_cli.targets import default_config_path

if TYPE_CHECKING:
    from eventbus_core.config import BusConfig, Config

config_app = typer.Typer(
    cls=PlainGroup,
    help="Check and show event_buses.json.",
    no_args_is_help=True,
    epilog=EXIT_CODES_HELP,
)

PathArgument = Annotated[
    Path | None,
    typer.Argument(
        metavar="PATH",
        help="Config file (default: --config, $EVENTBUS_CONFIG, ./event_buses.json).",
        show_default=False,
    ),
]
Problems = list[tuple[str, str]]


def _load(path: Path | None, config: Path | None) -> tuple[Path, Config | None, Problems]:
    """The config at PATH (else --config, else the default) and its problems, if any."""
    from eventbus_core.config import ConfigError, load_config

    path = path or config or default_config_path()
    try:
        return path, load_config(path), []
    except ConfigError as exc:
        return path, None, exc.problems


def _invalid(path: Path, problems: Problems) -> typer.Exit:
    """Every problem on stderr, one line each; a file-level problem is a single line."""
    if len(problems) == 1 and not problems[0][0]:
        err_console.print(
            f"[bold red]error:[/] {escape(f'{path}: {problems[0][1]}')}", soft_wrap=True
        )
        return typer.Exit(EXIT_USAGE)
    noun = "problem" if len(problems) == 1 else "problems"
    err_console.print(
        f"[bold red]error:[/] invalid config {escape(str(path))}: {len(problems)} {noun}",
        soft_wrap=True,
    )
    for loc, msg in problems:
        err_console.print(escape(f"  {loc}: {msg}" if loc else f"  {msg}"), soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def effective_bus(bus: BusConfig) -> dict[str, Any]:
    """One bus as JSON with every default filled in; no secret in it.

    Paths are absolute, durations in seconds, the storage_url password masked
    as `bus_info` masks it, the token named by `auth_token_env` only.
    """
    from eventbus_core.config import hide_credentials

    data = bus.model_dump(mode="json")
    if bus.storage_url is not None:
        data["storage_url"] = bus.storage_description().removeprefix("postgres:")
    if bus.tls is not None:
        # The server opens TLS files relative to the current directory.
        data["tls"] = {"cert": str(bus.tls.cert.resolve()), "key": str(bus.tls.key.resolve())}
    for route in data["tools"]:
        if route["url"]:
            route["url"] = hide_credentials(route["url"])
        # Header values often carry credentials (Authorization: Bearer …).
        if route["headers"]:
            route["headers"] = dict.fromkeys(route["headers"], "***")
    return data


def _summary(bus: BusConfig) -> str:
    rules = " rules on" if bus.enable_rules else ""
    auth = " auth" if bus.auth_token_env else ""
    return f"{bus.id} :{bus.port} {bus.storage_kind}{rules}{auth}"


def validate(
    path: PathArgument = None,
    config: ConfigOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON report instead of the summary line.")
    ] = False,
) -> None:
    """Check a config file as `eventbus serve` would; list every problem at once.

    Valid: one summary line, exit 0. Invalid: each problem with its location
    (`[1].listen: …`) on stderr, exit 2. --json prints
    {"valid", "path", "problems": [{"loc", "msg"}], "buses"} either way.

    Examples:

      eventbus config validate

      eventbus config validate /etc/eventbus/event_buses.json

      eventbus config validate staging.json --json | jq '.problems[].loc'
    """
    path, loaded, problems = _load(path, config)
    if json_out:
        buses = [effective_bus(bus) for bus in loaded.buses] if loaded else []
        problem_list = [{"loc": loc, "msg": msg} for loc, msg in problems]
        report = {
            "valid": loaded is not None,
            "path": str(path),
            "problems": problem_list,
            "buses": buses,
        }
        Output(json_mode=True).json_line(report)
        if loaded is None:
            raise typer.Exit(EXIT_USAGE)
        return
    if loaded is None:
        raise _invalid(path, problems)
    count = len(loaded.buses)
    listing = ", ".join(_summary(bus) for bus in loaded.buses)
    text = f"{path}: {count} bus{'es' if count != 1 else ''} ({listing})"
    Output(json_mode=False).console.print(f"[green]✓[/] {escape(text)}", soft_wrap=True)


def show(
    path: PathArgument = None,
    config: ConfigOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Plain JSON; the default when piped.")
    ] = False,
) -> None:
    """Print the effective config: every bus with all defaults filled in.

    Paths are absolute and durations in seconds. Secrets are never printed:
    the storage_url password is masked and auth_token_env shows the variable's
    name, not the token. Highlighted on a terminal, plain JSON when piped.
    An invalid config is reported as `validate` reports it (exit 2).

    Examples:

      eventbus config show

      eventbus config show staging.json | jq '.[].storage_path'
    """
    path, loaded, problems = _load(path, config)
    if loaded is None:
        raise _invalid(path, problems)
    Output(json_mode=json_out or None).document([effective_bus(bus) for bus in loaded.buses])


config_app.command(cls=PlainCommand, epilog=EXIT_CODES_HELP)(validate)
config_app.command(cls=PlainCommand, epilog=EXIT_CODES_HELP)(show)
