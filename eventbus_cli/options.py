"""Options shared by every command that talks to a bus, declared once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from eventbus_cli.completion import complete_bus_id, complete_rule_id

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="EVENTBUS_URL",
        metavar="URL",
        help="Bus address, tcp://host:port or tls://host:port.",
        show_default=False,
    ),
]
BusOption = Annotated[
    str | None,
    typer.Option(
        "--bus",
        "-b",
        metavar="ID",
        help="Bus id, looked up in --config (default: the first bus).",
        show_default=False,
        autocompletion=complete_bus_id,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="EVENTBUS_CONFIG",
        metavar="PATH",
        help="Config file (default: ./event_buses.json).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="EVENTBUS_TOKEN",
        metavar="TOKEN",
        help="Token for buses with auth.",
        show_default=False,
    ),
]


class EventFormat(StrEnum):
    table = "table"
    json = "json"
    cloudevents = "cloudevents"


EventFormatOption = Annotated[
    EventFormat | None,
    typer.Option(
        "--format",
        help="table, json (NDJSON), or cloudevents (one structured CloudEvent 1.0 per line).",
        case_sensitive=False,
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print JSON (NDJSON for lists); the default when piped."),
]
SourceTrnFilter = Annotated[
    str | None,
    typer.Option(
        "--source-trn",
        metavar="TRN",
        help="Only events whose source matches this TRN pattern/prefix.",
    ),
]
TargetTrnFilter = Annotated[
    str | None,
    typer.Option(
        "--target-trn",
        metavar="TRN",
        help="Only events whose target matches this TRN pattern/prefix.",
    ),
]
CorrelationIdFilter = Annotated[
    str | None,
    typer.Option("--correlation-id", metavar="ID", help="Only events with this correlation id."),
]
TopicArgument = Annotated[
    str, typer.Argument(metavar="PATTERN", help="Topic pattern: * one token, > the rest.")
]
RuleIdArgument = Annotated[
    str, typer.Argument(metavar="RULE_ID", help="The rule's id.", autocompletion=complete_rule_id)
]
RuleIdOption = Annotated[
    str | None,
    typer.Option(
        "--rule",
        "-r",
        metavar="RULE_ID",
        help="Only this rule's firings.",
        autocompletion=complete_rule_id,
    ),
]
