"""`eventbus tail [PATTERN]`: follow live events, gapless, across reconnects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from eventbus_cli.errors import UsageError
from eventbus_cli.options import (
    BusOption,
    ConfigOption,
    CorrelationIdFilter,
    JsonOption,
    SourceTrnFilter,
    TargetTrnFilter,
    TokenOption,
    TopicArgument,
    UrlOption,
)
from eventbus_cli.output import Output, err_console
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import resolve_target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

#: How often a follow command looks whether its connection dropped or came back.
RECONNECT_CHECK_S = 0.1


def tail(
    pattern: TopicArgument = ">",
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    correlation_id: CorrelationIdFilter = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="EVENT_ID",
            help="Start after this event_id (stored events first).",
            min=0,
        ),
    ] = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Start with the oldest stored event.")
    ] = False,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print events as they are committed, until Ctrl+C.

    Gapless: if the bus restarts or the connection drops, tail says so on
    stderr, reconnects and resumes after the last event it printed, without
    gaps or duplicates.
    Without --since/--from-start it starts with the next event committed.

    Examples:

      eventbus tail

      eventbus tail 'repo.>' --source-trn trn:user:

      eventbus tail --from-start --json | jq .payload

      eventbus tail orders.created --correlation-id c-17 --since 1200
    """

    def check() -> int | None:
        if since is not None and from_start:
            raise UsageError("give either --since N or --from-start, not both")
        return 0 if from_start else since

    start = usage(check)
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)
    tally = Tally()

    async def follow(client: EventBusClient) -> None:
        sub = await client.subscribe(
            pattern, since=start, source_trn=source_trn, target_trn=target_trn
        )
        # On stderr even with --json (stdout stays NDJSON): a script can wait for it.
        err_console.print(f"[dim]following {escape(pattern)} on {target.name} (Ctrl+C to stop)[/]")
        import asyncio

        watch = ConnectionWatch(client, target.name, tally)
        watching = asyncio.get_running_loop().create_task(watch.run())
        try:
            async for event in sub:
                watch.check()
                if correlation_id is not None and event.correlation_id != correlation_id:
                    continue
                out.event_line(event.model_dump(mode="json"))
                tally.add(event.event_id)
        finally:
            watching.cancel()

    try:
        run_client(target, follow)
    except KeyboardInterrupt:
        err_console.print(f"[dim]stopped: {tally}[/]")


class ConnectionWatch:
    """Says on stderr when the connection drops, and when it is back and the follow
    resumes after the last thing printed (`tally`)."""

    def __init__(self, client: EventBusClient, name: str, tally: Tally) -> None:
        self.client, self.name, self.tally = client, name, tally
        self.connected = client.connected

    def check(self) -> None:
        """Say what changed since the last look; called before each line printed, too,
        so `reconnected` comes before the first line after it."""
        now = self.client.connected
        if self.connected and not now:
            err_console.print(f"[yellow]connection to {escape(self.name)} lost; reconnecting…[/]")
        elif not self.connected and now:
            after = f" after #{self.tally.last}" if self.tally.last is not None else ""
            err_console.print(f"[green]reconnected to {escape(self.name)}; resuming{after}[/]")
        self.connected = now

    async def run(self) -> None:
        import asyncio

        # The client reconnects by itself and has no hook for it: look ten times a second.
        while True:
            await asyncio.sleep(RECONNECT_CHECK_S)
            self.check()


@dataclass
class Tally:
    """What a follow command printed, for its one-line summary."""

    noun: str = "event"
    count: int = 0
    first: int | None = None
    last: int | None = None

    def add(self, event_id: int) -> None:
        # Lowest and highest: events come in id order, firings as they finish.
        self.count += 1
        self.first = event_id if self.first is None else min(self.first, event_id)
        self.last = event_id if self.last is None else max(self.last, event_id)

    def __str__(self) -> str:
        noun = self.noun if self.count == 1 else f"{self.noun}s"
        span = f" (#{self.first}…#{self.last})" if self.count else ""
        return f"{self.count} {noun}{span}"
