"""`eventbus poll [PATTERN]`: read stored events after a cursor."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from ..options import (
    BusOption,
    ConfigOption,
    JsonOption,
    SourceTrnFilter,
    TargetTrnFilter,
    TokenOption,
    UrlOption,
)
from ..output import Output
from ..runner import fail, run
from ..targets import resolve_target


def poll(
    pattern: Annotated[str, typer.Argument(help="Topic pattern: * one token, > the rest.")] = ">",
    since: Annotated[int, typer.Option("--since", help="Exclusive event_id cursor.", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many events.", min=1, max=10_000)] = 100,
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print stored events after --since (a table on a terminal, NDJSON when piped).

    Examples:

      eventbus poll

      eventbus poll 'repo.>' --since 120 --limit 50

      eventbus poll --source-trn trn:user: --json | jq .payload
    """
    try:
        target = resolve_target(url, bus, config, token)
    except UsageError as exc:
        raise fail(str(exc), 2) from None
    out = Output(json_mode=json_out or None)

    async def main() -> None:
        from eventbus_client import connect

        async with await connect(target.url, token=target.token) as client:
            result = await client.call(
                "poll_events",
                {
                    k: v
                    for k, v in {
                        "topic": pattern,
                        "since": since,
                        "limit": limit,
                        "source_trn": source_trn,
                        "target_trn": target_trn,
                        "correlation_id": correlation_id,
                    }.items()
                    if v is not None
                },
            )
        out.events(result["events"], title=f"{target.name}: {pattern} after {since}")
        if not out.json_mode:
            out.console.print(f"[dim]{len(result['events'])} events · next --since {result['next_since']}[/]")

    run(target, main)
