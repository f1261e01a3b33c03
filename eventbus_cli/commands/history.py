"""`eventbus history`: stored events by topic, TRN, correlation id and time."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventbus_cli.errors import UsageError
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
    UrlOption,
)
from eventbus_cli.output import Output, err_console, format_ts
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import resolve_target
from eventbus_cli.times import TIME_FORMS, parse_time_ms

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

#: The bus's page limit; longer histories are read page by page.
PAGE = 10_000


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


def history(
    topic: Annotated[
        str,
        typer.Option(
            "--topic", "-t", metavar="PATTERN", help="Topic pattern: * one token, > the rest."
        ),
    ] = ">",
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    correlation_id: CorrelationIdFilter = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help=f"From this time: {TIME_FORMS}.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", help="Up to this time (same forms).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", help="At most this many events.", min=1)
    ] = 100,
    order: Annotated[
        Order, typer.Option("--order", help="asc (oldest first) or desc (newest first).")
    ] = Order.asc,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
    format_: EventFormatOption = None,
) -> None:
    """Query stored events: who sent what, to whom, when.

    TRN filters take a pattern (`trn:user:*:cli:*`) or a prefix ending in ':'
    (`trn:user:`). Times: 30s, 15m, 2h, 7d (ago), ISO-8601, or epoch ms.
    When more events match than --limit, it says so (on stderr with --json).

    Examples:

      eventbus history --source-trn trn:user:alice: --since 2h

      eventbus history --topic 'orders.>' --target-trn trn:org:acme: --order desc --limit 20

      eventbus history --correlation-id c-17 --json | jq -c '[.event_id, .topic]'

      eventbus history --since 2026-11-28T09:00:00Z --until 2026-11-28T10:00:00Z
    """

    def check() -> tuple[int | None, int | None]:
        from_ts = parse_time_ms(since, "--since") if since is not None else None
        to_ts = parse_time_ms(until, "--until") if until is not None else None
        if from_ts is not None and to_ts is not None and to_ts < from_ts:
            raise UsageError(
                f"--until {until} ({format_ts(to_ts)}) is before --since {since} ({format_ts(from_ts)}): "
                "nothing can match; swap them"
            )
        return from_ts, to_ts

    from_ts, to_ts = usage(check)
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(
        json_mode=True
        if json_out or format_ is EventFormat.json
        else False
        if format_ is EventFormat.table
        else None
    )

    async def query(client: EventBusClient) -> None:
        # One event past --limit tells whether more match, without counting them all.
        wanted = limit + 1
        events: list[dict[str, Any]] = []
        cursor = 0
        while len(events) < wanted:
            page = await client.poll(
                topic,
                since=cursor,
                limit=min(PAGE, wanted - len(events)),
                source_trn=source_trn,
                target_trn=target_trn,
                correlation_id=correlation_id,
                from_ts=from_ts,
                to_ts=to_ts,
                order=order.value,
            )
            events += [event.model_dump(mode="json") for event in page.events]
            if not page.events:
                break
            cursor = page.next_since
        more = len(events) > limit
        events = events[:limit]
        if format_ is EventFormat.cloudevents:
            out.cloudevents(events, bus_id=target.bus_id or str((await client.bus_info())["id"]))
        else:
            out.events(events, title=f"{target.name}: {topic}")
        summary = f"{len(events):,} event{'' if len(events) == 1 else 's'}"
        if more:
            which = "oldest" if order is Order.asc else "newest"
            summary = f"the {which} {summary}; more match: raise --limit (e.g. --limit {limit * 10}) or narrow --since/--until"
        if not out.json_mode and format_ is not EventFormat.cloudevents:
            out.console.print(f"[dim]{summary}[/]")
        elif more:
            err_console.print(f"[dim]{summary}[/]")

    run_client(target, query)
