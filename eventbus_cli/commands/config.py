"""`eventbus config validate|show`: check a config file, print the effective config."""

from __future__ import annotations

import typer

config_app = typer.Typer(help="Check and show event_buses.json.", no_args_is_help=True)
