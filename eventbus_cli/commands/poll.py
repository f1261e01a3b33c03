"""`eventbus poll [PATTERN]`: read stored events after a cursor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from eventbus_cli.options import (
    BusOption,
    ConfigOption,
    CorrelationIdFilter,
    EventFormat,
    EventFormatOption,
    JsonOption,
    SourceTrnFilter,
    TargetTrnFilter,
    TokenOption,
    TopicArgument,
    UrlOption,
)
from eventbus_cli.output import Output
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import resolve_target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient


def poll(
    pattern: TopicArgument = ">",
    since: Annotated[
        int, typer.Option("--since", metavar="EVENT_ID", help="Exclusive event_id cursor.", min=0)
    ] = 0,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", metavar="N", help="At most this many events.", min=1, max=10_000
        ),
    ] = 100,
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    correlation_id: CorrelationIdFilter = None,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
    format_: EventFormatOption = None,
) -> None:
    """Print stored events after --since (a table on a terminal, NDJSON when piped).

    Examples:

      eventbus poll

      eventbus poll 'repo.>' --since 120 --limit 50

      eventbus poll --source-trn trn:user: --json | jq .payload

      eventbus poll 'orders.>' --format cloudevents
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(
        json_mode=True
        if json_out or format_ is EventFormat.json
        else False
        if format_ is EventFormat.table
        else None
    )

    async def main(client: EventBusClient) -> None:
        params = {
            "topic": pattern,
            "since": since,
            "limit": limit,
            "source_trn": source_trn,
            "target_trn": target_trn,
            "correlation_id": correlation_id,
        }
        result = await client.call(
            "poll_events", {k: v for k, v in params.items() if v is not None}
        )
        if format_ is EventFormat.cloudevents:
            out.cloudevents(
                result["events"], bus_id=target.bus_id or str((await client.bus_info())["id"])
            )
            return
        out.events(result["events"], title=f"{target.name}: {pattern} after {since}")
        if not out.json_mode:
            out.console.print(
                f"[dim]{len(result['events'])} events · next --since {result['next_since']}[/]"
            )

    run_client(target, main)
