"""`eventbus replay`: emit stored events again, in order, in batches.

Each copy keeps the original's payload, source, target and correlation id,
and carries `metadata.replay_of = <original event_id>`; rules fire on it like
on any new event. The events to replay are fixed before the first emit (up
to the newest matching one at that moment), so replaying a topic onto itself
never replays its own copies.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from ..options import BusOption, ConfigOption, JsonOption, SourceTrnFilter, TokenOption, UrlOption
from ..output import Output, err_console
from ..runner import run, usage
from ..targets import resolve_target
from ..times import TIME_FORMS, parse_time_ms

if TYPE_CHECKING:
    from eventbus_client import EventBusClient, EventEnvelope

PAGE = 5_000
BATCH = 500
CONFIRM_ABOVE = 1_000
DRY_RUN_SHOWN = 20


@dataclass
class Selection:
    """Which stored events to replay; `after_id` moves as pages are read."""

    topic: str
    source_trn: str | None
    from_ts: int
    to_ts: int | None
    after_id: int

    async def pages(self, client: EventBusClient, up_to: int | None = None) -> Any:
        cursor = self.after_id
        while True:
            page = await client.poll(
                self.topic, since=cursor, limit=PAGE, source_trn=self.source_trn, from_ts=self.from_ts, to_ts=self.to_ts
            )
            events = [e for e in page.events if up_to is None or e.event_id <= up_to]
            if events:
                yield events
            if len(events) < len(page.events) or not page.events:
                return
            cursor = page.next_since


def replay(
    since: Annotated[str, typer.Option("--since", help=f"Replay events from this time: {TIME_FORMS}.")],
    until: Annotated[str | None, typer.Option("--until", help="Up to this time (same forms).")] = None,
    topic: Annotated[str, typer.Option("--topic", "-t", help="Only topics matching this pattern.")] = ">",
    source_trn: SourceTrnFilter = None,
    to_topic: Annotated[str | None, typer.Option("--to-topic", help="Emit the copies on this topic instead.")] = None,
    to_bus: Annotated[str | None, typer.Option("--to-bus", help="Emit the copies on this bus (from --config).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed; emit nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=f"Do not ask above {CONFIRM_ABOVE:,} events.")] = False,
    after_id: Annotated[
        int, typer.Option("--after-id", help="Skip events up to this id (to resume a stopped replay).", min=0)
    ] = 0,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Re-emit stored events, oldest first, with metadata.replay_of set; rules fire again.

    Shows a progress bar (count, rate, ETA). Asks before replaying more than
    1,000 events unless --yes. Ctrl+C stops after the current batch and
    prints how to resume.

    Examples:

      eventbus replay --since 1h --topic 'orders.>' --dry-run

      eventbus replay --since 2026-11-28T09:00:00Z --until 2026-11-28T10:00:00Z --yes

      eventbus replay --since 7d --source-trn trn:user:alice: --to-topic audit.replayed --to-bus workflow
    """

    def check() -> Selection:
        return Selection(
            topic=topic,
            source_trn=source_trn,
            from_ts=parse_time_ms(since, "--since"),
            to_ts=parse_time_ms(until, "--until") if until is not None else None,
            after_id=after_id,
        )

    selection = usage(check)
    source = usage(lambda: resolve_target(url, bus, config, token))
    destination = usage(lambda: resolve_target(None, to_bus, config, token) if to_bus else source)
    out = Output(json_mode=json_out or None)
    progress = _Progress()

    async def main() -> None:
        from eventbus_client import connect

        async with await connect(source.url, token=source.token) as client:
            count, newest = await _count(client, selection)
            if dry_run:
                await _show_dry_run(client, selection, newest, count, out)
                return
            if count == 0:
                out.message("nothing to replay")
                return
            _confirm(count, yes)
            if destination is source:
                await _replay(client, client, selection, newest, count, to_topic, out, progress)
            else:
                async with await connect(destination.url, token=destination.token) as target_client:
                    await _replay(client, target_client, selection, newest, count, to_topic, out, progress)

    try:
        run(source, main)
    except KeyboardInterrupt:
        err_console.print(f"[yellow]stopped[/] after replaying {progress.done:,} of {progress.total:,} events.")
        if progress.last_id is not None:
            err_console.print(f"resume with: {_resume_command(progress.last_id)}")
        raise typer.Exit(130) from None


async def _count(client: EventBusClient, selection: Selection) -> tuple[int, int | None]:
    """How many events match now, and the newest of them (the replay stops there)."""
    count, newest = 0, None
    async for events in selection.pages(client):
        count += len(events)
        newest = events[-1].event_id
    return count, newest


async def _show_dry_run(
    client: EventBusClient, selection: Selection, newest: int | None, count: int, out: Output
) -> None:
    shown: list[dict[str, Any]] = []
    async for events in selection.pages(client, newest):
        shown += [e.model_dump(mode="json") for e in events[: DRY_RUN_SHOWN - len(shown)]]
        if len(shown) >= DRY_RUN_SHOWN:
            break
    if out.json_mode:
        out.json_line({"would_replay": count, "first": shown})
        return
    out.events(shown, title=f"would replay {count:,} events" + (f" (first {len(shown)})" if count > len(shown) else ""))


def _confirm(count: int, yes: bool) -> None:
    if yes or count <= CONFIRM_ABOVE:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{count:,} events to replay: pass --yes to confirm (no terminal to ask on)")
    if not typer.confirm(f"Replay {count:,} events?"):
        raise typer.Exit(1)


@dataclass
class _Progress:
    total: int = 0
    done: int = 0
    last_id: int | None = None

    def advance(self, batch: list[EventEnvelope]) -> None:
        self.done += len(batch)
        self.last_id = batch[-1].event_id


async def _replay(
    source: EventBusClient,
    target: EventBusClient,
    selection: Selection,
    newest: int | None,
    count: int,
    to_topic: str | None,
    out: Output,
    progress: _Progress,
) -> None:
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress.total = count
    columns = (
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8} ev/s"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, disable=out.json_mode or not err_console.is_terminal) as bar:
        task = bar.add_task("replay", total=count, rate="-")
        async for events in selection.pages(source, newest):
            for start in range(0, len(events), BATCH):
                batch = events[start : start + BATCH]
                sending = asyncio.ensure_future(target.emit_many([_copy(event, to_topic) for event in batch]))
                try:
                    await asyncio.shield(sending)
                except asyncio.CancelledError:
                    # Ctrl+C: let the batch in flight land, so the resume point is exact.
                    await sending
                    progress.advance(batch)
                    raise
                progress.advance(batch)
                elapsed = bar.tasks[task].elapsed or 0
                bar.update(task, advance=len(batch), rate=f"{progress.done / elapsed:,.0f}" if elapsed else "-")
    if out.json_mode:
        out.json_line({"replayed": progress.done, "last_replayed_id": progress.last_id})
    else:
        out.console.print(f"replayed [bold]{progress.done:,}[/] events (up to #{progress.last_id})")


def _copy(event: EventEnvelope, to_topic: str | None) -> dict[str, Any]:
    copy: dict[str, Any] = {
        "topic": to_topic or event.topic,
        "payload": event.payload,
        "metadata": {**(event.metadata or {}), "replay_of": event.event_id},
    }
    for field in ("source_trn", "target_trn", "correlation_id"):
        value = getattr(event, field)
        if value is not None:
            copy[field] = value
    return copy


def _resume_command(last_id: int) -> str:
    """This command line again, with --after-id moved to the last replayed event."""
    args: list[str] = []
    skip_next = False
    for arg in sys.argv[1:]:
        if skip_next:
            skip_next = False
        elif arg == "--after-id":
            skip_next = True
        elif not arg.startswith("--after-id="):
            args.append(arg)
    return shlex.join(["eventbus", *args, "--after-id", str(last_id)])
