"""Options shared by every command that talks to a bus, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="EVENTBUS_URL", help="Bus address, tcp://host:port.", show_default=False),
]
BusOption = Annotated[
    str | None,
    typer.Option("--bus", "-b", help="Bus id, looked up in --config (default: the first bus).", show_default=False),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="EVENTBUS_CONFIG",
        help="Config file (default: ./event_buses.json).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="EVENTBUS_TOKEN", help="Token for buses with auth.", show_default=False),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print JSON (NDJSON for lists); the default when piped."),
]
SourceTrnFilter = Annotated[
    str | None, typer.Option("--source-trn", help="Only events whose source matches this TRN pattern/prefix.")
]
TargetTrnFilter = Annotated[
    str | None, typer.Option("--target-trn", help="Only events whose target matches this TRN pattern/prefix.")
]
