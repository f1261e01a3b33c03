"""`eventbus replay`: the bus emits stored events again, in order (`replay_events`).

The bus does the work, so events its rules made and buses with an allow-list
replay like any other. The window is fixed once, at start: relative times
become absolute ones, and the first call fixes the newest event id, so the
copies (newer than that) are never replayed themselves. Each call replays up
to `PER_CALL` events and reports where it got to; whatever ends the command
early (Ctrl+C, an error, a lost connection) prints a resume line with
absolute `--since`/`--until`, `--after-id` and `--until-id`: run later, it
replays exactly what is left.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventbus_cli.completion import complete_bus_id
from eventbus_cli.errors import UsageError
from eventbus_cli.options import (
    BusOption,
    ConfigOption,
    JsonOption,
    SourceTrnFilter,
    TargetTrnFilter,
    TokenOption,
    UrlOption,
)
from eventbus_cli.output import Output, err_console, format_ts
from eventbus_cli.runner import run, usage
from eventbus_cli.targets import resolve_target
from eventbus_cli.times import TIME_FORMS, parse_time_ms

if TYPE_CHECKING:
    from eventbus_client import EventBusClient, ReplayResult

#: Events a call replays: progress moves once per call.
PER_CALL = 1_000
#: Events a dry-run call counts.
COUNT_PER_CALL = 10_000
CONFIRM_ABOVE = 1_000
DRY_RUN_SHOWN = 20
#: The flags a resume line sets itself.
WINDOW_FLAGS = ("--since", "--until", "--after-id", "--until-id")


@dataclass
class Window:
    """What to replay, fixed at start; `after_id` moves as calls succeed."""

    since_ts: int
    until_ts: int
    topic: str
    source_trn: str | None
    target_trn: str | None
    to_topic: str | None
    to_bus: str | None
    after_id: int
    until_id: int | None  # None until the first call has fixed it

    def params(self) -> dict[str, Any]:
        return {
            "since_ts": self.since_ts,
            "until_ts": self.until_ts,
            "topic": self.topic,
            "source_trn": self.source_trn,
            "target_trn": self.target_trn,
            "to_topic": self.to_topic,
            "to_bus": self.to_bus,
        }


@dataclass
class _Progress:
    total: int = 0
    done: int = 0
    started: bool = False  # past counting and confirming: stopping now leaves something to resume
    abandoned: bool = False  # a call was in flight when we stopped waiting for it


def replay(
    since: Annotated[
        str,
        typer.Option(
            "--since", metavar="TIME", help=f"Replay events from this time: {TIME_FORMS}."
        ),
    ],
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="TIME", help="Up to this time (same forms; default: now)."),
    ] = None,
    topic: Annotated[
        str,
        typer.Option("--topic", "-t", metavar="PATTERN", help="Only topics matching this pattern."),
    ] = ">",
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    to_topic: Annotated[
        str | None,
        typer.Option("--to-topic", metavar="TOPIC", help="Emit the copies on this topic instead."),
    ] = None,
    to_bus: Annotated[
        str | None,
        typer.Option(
            "--to-bus",
            metavar="ID",
            autocompletion=complete_bus_id,
            help="Emit the copies on this bus of the same server (it must list the source bus in accept_from_buses).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; emit nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help=f"Do not ask above {CONFIRM_ABOVE:,} events.")
    ] = False,
    after_id: Annotated[
        int,
        typer.Option(
            "--after-id",
            metavar="ID",
            help="Only events after this id (a resume line sets it).",
            min=0,
        ),
    ] = 0,
    until_id: Annotated[
        int | None,
        typer.Option(
            "--until-id",
            metavar="ID",
            min=0,
            help="Only events up to this id (a resume line sets it: the newest event when the replay began).",
        ),
    ] = None,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Have the bus re-emit stored events, oldest first, with metadata.replay_of set; rules fire again.

    Shows progress per call (a bar on a terminal). Asks before replaying more
    than 1,000 events unless --yes. Ctrl+C lets the call in flight finish; then
    it, or any error, prints a resume line with absolute times that replays
    exactly what is left, now or later.

    Examples:

      eventbus replay --since 1h --topic 'orders.>' --dry-run

      eventbus replay --since 2026-11-28T09:00:00Z --until 2026-11-28T10:00:00Z --yes

      eventbus replay --since 7d --source-trn trn:user:alice: --to-topic audit.replayed --to-bus workflow
    """

    def check() -> Window:
        now = time.time_ns() // 1_000_000  # one instant for both: relative times are resolved once
        since_ts = parse_time_ms(since, "--since", now_ms=now)
        until_ts = parse_time_ms(until, "--until", now_ms=now) if until is not None else now
        if until_ts < since_ts:
            raise UsageError(
                f"--until {until} ({format_ts(until_ts)}) is before --since {since} ({format_ts(since_ts)}): "
                "nothing can match; swap them"
            )
        return Window(
            since_ts, until_ts, topic, source_trn, target_trn, to_topic, to_bus, after_id, until_id
        )

    window = usage(check)
    source = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)
    progress = _Progress()

    async def main() -> None:
        from eventbus_client import connect

        async with await connect(source.url, token=source.token) as client:
            count = await _count(client, window)
            if dry_run:
                await _show_dry_run(client, window, count, out)
                return
            if count == 0:
                out.message("nothing to replay")
                return
            _confirm(count, yes)
            progress.started, progress.total = True, count
            await _replay(client, window, out, progress)

    try:
        run(source, main)
    except KeyboardInterrupt:
        _stopped(window, progress, "stopped")
        raise typer.Exit(130) from None
    except typer.Exit as exit_:
        if exit_.exit_code:
            _stopped(window, progress, "stopped by the error above")
        raise


async def _count(client: EventBusClient, window: Window) -> int:
    """How many events the window holds (dry-run calls); the first call fixes `until_id`."""
    count, cursor = 0, window.after_id
    while True:
        result = await client.replay_events(
            **window.params(),
            dry_run=True,
            after_id=cursor,
            until_id=window.until_id,
            limit=COUNT_PER_CALL,
        )
        window.until_id = result.until_id
        count, cursor = count + result.replayed, result.last_replayed_id
        if result.done:
            return count


async def _show_dry_run(client: EventBusClient, window: Window, count: int, out: Output) -> None:
    assert window.until_id is not None
    page = await client.poll(
        window.topic,
        since=window.after_id,
        limit=DRY_RUN_SHOWN,
        source_trn=window.source_trn,
        target_trn=window.target_trn,
        from_ts=window.since_ts,
        to_ts=window.until_ts,
    )
    shown = [e.model_dump(mode="json") for e in page.events if e.event_id <= window.until_id]
    if out.json_mode:
        out.json_line({"would_replay": count, "first": shown})
        return
    out.events(
        shown,
        title=f"would replay {count:,} events"
        + (f" (first {len(shown)})" if count > len(shown) else ""),
    )


def _confirm(count: int, yes: bool) -> None:
    if yes or count <= CONFIRM_ABOVE:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{count:,} events to replay: pass --yes to confirm (no terminal to ask on)"
        )
    if not typer.confirm(f"Replay {count:,} events?"):
        raise typer.Exit(1)


async def _replay(client: EventBusClient, window: Window, out: Output, progress: _Progress) -> None:
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from eventbus_core.errors import ConnectionLost

    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8} ev/s"),
        TimeRemainingColumn(),
    )
    on_terminal = err_console.is_terminal and not out.json_mode
    with Progress(*columns, console=err_console, disable=not on_terminal) as bar:
        task = bar.add_task("replay", total=progress.total, rate="-")
        done = False
        while not done:
            call = asyncio.ensure_future(
                client.replay_events(
                    **window.params(),
                    after_id=window.after_id,
                    until_id=window.until_id,
                    limit=PER_CALL,
                )
            )
            try:
                result = await asyncio.shield(call)
            except asyncio.CancelledError:
                # Ctrl+C: let the call in flight land, so the resume point is exact.
                progress.abandoned = True
                _advance(window, progress, await call)
                progress.abandoned = False
                raise
            except ConnectionLost as exc:
                # Lost while the call was out: the bus may have replayed some of it.
                progress.abandoned = not exc.message.startswith("cannot connect")
                raise
            _advance(window, progress, result)
            done = result.done
            elapsed = bar.tasks[task].elapsed or 0
            bar.update(
                task,
                completed=progress.done,
                rate=f"{progress.done / elapsed:,.0f}" if elapsed else "-",
            )
            if not on_terminal and result.replayed:
                err_console.print(
                    f"replayed {progress.done:,} of {progress.total:,} events (up to #{window.after_id})"
                )
    if out.json_mode:
        out.json_line({"replayed": progress.done, "last_replayed_id": window.after_id})
    else:
        out.console.print(f"replayed [bold]{progress.done:,}[/] events (up to #{window.after_id})")


def _advance(window: Window, progress: _Progress, result: ReplayResult) -> None:
    progress.done += result.replayed
    window.after_id = result.last_replayed_id


def _stopped(window: Window, progress: _Progress, why: str) -> None:
    """What a replay that ended early says: how far it got, and the line that finishes it."""
    if not progress.started:
        if why == "stopped":
            err_console.print("[yellow]stopped[/] before replaying anything.")
        return
    err_console.print(
        f"[yellow]{why}[/] after replaying {progress.done:,} of {progress.total:,} events."
    )
    if progress.abandoned:
        err_console.print(
            f"[yellow]warning:[/] the call in flight was abandoned: up to {PER_CALL:,} events after "
            f"#{window.after_id} may have been replayed already and would be replayed again."
        )
    err_console.print(f"resume with: {resume_command(window)}", markup=False)


def resume_command(window: Window, argv: list[str] | None = None) -> str:
    """This command line again, with the window in absolute terms and moved past what is done."""
    args: list[str] = []
    skip_next = False
    for arg in sys.argv[1:] if argv is None else argv:
        if skip_next:
            skip_next = False
        elif arg in WINDOW_FLAGS:
            skip_next = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in WINDOW_FLAGS)):
            args.append(arg)
    if "--yes" not in args and "-y" not in args:
        args.append("--yes")  # the whole was confirmed already; the rest is smaller
    args += [
        "--since",
        _iso(window.since_ts),
        "--until",
        _iso(window.until_ts),
        "--after-id",
        str(window.after_id),
    ]
    if window.until_id is not None:
        args += ["--until-id", str(window.until_id)]
    return shlex.join(["eventbus", *args])


def _iso(timestamp_ms: int) -> str:
    """ISO-8601 in UTC to the millisecond: exact, and `--since` reads it back (epoch ms
    beyond the years ISO-8601 can say)."""
    try:
        moment = datetime.fromtimestamp(timestamp_ms // 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return str(timestamp_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"
