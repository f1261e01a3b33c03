"""`eventbus history`: stored events by topic, TRN, correlation id and time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

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
from ..runner import run_client, usage
from ..targets import resolve_target
from ..times import TIME_FORMS, parse_time_ms

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

#: The bus's page limit; longer histories are read page by page.
PAGE = 10_000


def history(
    topic: Annotated[str, typer.Option("--topic", "-t", help="Topic pattern: * one token, > the rest.")] = ">",
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="Only events with this id.")] = None,
    since: Annotated[str | None, typer.Option("--since", help=f"From this time: {TIME_FORMS}.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this time (same forms).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many events.", min=1)] = 100,
    order: Annotated[str, typer.Option("--order", help="asc (oldest first) or desc (newest first).")] = "asc",
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Query stored events: who sent what, to whom, when.

    TRN filters take a pattern (`trn:user:*:cli:*`) or a prefix ending in ':'
    (`trn:user:`). Times: 30s, 15m, 2h, 7d (ago), ISO-8601, or epoch ms.

    Examples:

      eventbus history --source-trn trn:user:alice: --since 2h

      eventbus history --topic 'orders.>' --target-trn trn:org:acme: --order desc --limit 20

      eventbus history --correlation-id c-17 --json | jq -c '[.event_id, .topic]'

      eventbus history --since 2026-11-28T09:00:00Z --until 2026-11-28T10:00:00Z
    """

    def check() -> tuple[int | None, int | None, Literal["asc", "desc"]]:
        if order not in ("asc", "desc"):
            raise UsageError(f"--order must be asc or desc, not {order!r}")
        from_ts = parse_time_ms(since, "--since") if since is not None else None
        to_ts = parse_time_ms(until, "--until") if until is not None else None
        return from_ts, to_ts, cast(Literal["asc", "desc"], order)

    from_ts, to_ts, direction = usage(check)
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def query(client: EventBusClient) -> None:
        events: list[dict[str, Any]] = []
        cursor = 0
        while len(events) < limit:
            page = await client.poll(
                topic, since=cursor, limit=min(PAGE, limit - len(events)), source_trn=source_trn,
                target_trn=target_trn, correlation_id=correlation_id, from_ts=from_ts, to_ts=to_ts, order=direction,
            )
            events += [event.model_dump(mode="json") for event in page.events]
            if not page.events:
                break
            cursor = page.next_since
        out.events(events, title=f"{target.name}: {topic}")
        if not out.json_mode:
            out.console.print(f"[dim]{len(events)} events[/]")

    run_client(target, query)
