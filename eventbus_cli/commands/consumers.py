"""`eventbus consumers …`, `eventbus consume`, `eventbus dead-letters` (docs/consumers.md)."""

from __future__ import annotations

import shlex
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from eventbus_cli.commands.emit import parse_json_arg
from eventbus_cli.errors import EXIT_CODES_HELP, UsageError
from eventbus_cli.help_format import PlainCommand, PlainGroup
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
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import resolve_target

if TYPE_CHECKING:
    from eventbus_client import ConsumerMessage, EventBusClient

consumers_app = typer.Typer(
    cls=PlainGroup,
    help="Manage the durable consumers of a bus: add, ls, info, rm (work shared by a pool of workers).",
    no_args_is_help=True,
    epilog=EXIT_CODES_HELP,
)
command = partial(consumers_app.command, cls=PlainCommand, epilog=EXIT_CODES_HELP)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The consumer's name.")]

COLUMNS = [
    ("name", "name"),
    ("topic", "topic"),
    ("pending", "pending"),
    ("ack_pending", "ack pending"),
    ("waiting", "waiting"),
    ("acked", "acked"),
    ("redelivered", "redelivered"),
    ("dead", "dead"),
]


def _row(consumer: dict[str, Any]) -> dict[str, Any]:
    return {**consumer, **consumer["stats"]}


def _start(value: str) -> str | dict[str, int]:
    """`new`, `all`, `after:ID` or `from:TIME` (a time as --since takes it)."""
    if value in ("new", "all"):
        return value
    kind, _, rest = value.partition(":")
    if kind == "after" and rest.isdigit():
        return {"after_id": int(rest)}
    if kind == "from" and rest:
        from eventbus_cli.times import parse_time_ms

        return {"from_ts": parse_time_ms(rest, "--start from:")}
    raise UsageError(
        f"--start {value}: expected new, all, after:EVENT_ID or from:TIME (e.g. from:1h)"
    )


@command("add")
def add(
    name: NameArgument,
    topic: Annotated[
        str, typer.Option("--topic", "-t", help="Topic pattern: * one token, > the rest.")
    ] = ">",
    source_trn: SourceTrnFilter = None,
    target_trn: TargetTrnFilter = None,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern", metavar="JSON", help="An EventBridge pattern the events must match too."
        ),
    ] = None,
    start: Annotated[
        str,
        typer.Option(
            "--start", metavar="WHERE", help="new (from now on), all, after:EVENT_ID or from:TIME."
        ),
    ] = "new",
    ack_wait: Annotated[
        int, typer.Option("--ack-wait-ms", metavar="MS", help="How long a lease lasts.", min=100)
    ] = 30_000,
    max_deliver: Annotated[
        int,
        typer.Option("--max-deliver", metavar="N", help="Deliveries before a dead letter.", min=1),
    ] = 5,
    backoff: Annotated[
        str | None,
        typer.Option(
            "--backoff-ms", metavar="MS,…", help="Waits before redeliveries, e.g. 1000,5000,30000."
        ),
    ] = None,
    max_ack_pending: Annotated[
        int,
        typer.Option(
            "--max-ack-pending",
            metavar="N",
            help="Events leased at once, all workers together.",
            min=1,
        ),
    ] = 1000,
    replace: Annotated[
        bool, typer.Option("--replace", help="Change the consumer if it exists.")
    ] = False,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a durable consumer: a named cursor whose events are leased to one worker at a time.

    Examples:

      eventbus consumers add resize --topic 'images.>' --max-deliver 3 --backoff-ms 1000,10000

      eventbus consumers add audit --start all --pattern '{"payload": {"size": [{"numeric": [">", 100]}]}}'
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    def options() -> dict[str, Any]:
        backoff_ms = [int(part) for part in backoff.split(",")] if backoff else None
        return {
            "topic": topic,
            "source_trn": source_trn,
            "target_trn": target_trn,
            "pattern": parse_json_arg(pattern, "--pattern") if pattern is not None else None,
            "start": _start(start),
            "ack_wait_ms": ack_wait,
            "max_deliver": max_deliver,
            "backoff_ms": backoff_ms,
            "max_ack_pending": max_ack_pending,
            "replace": replace,
        }

    def checked() -> dict[str, Any]:
        try:
            return options()
        except ValueError:
            raise UsageError(
                f"--backoff-ms {backoff}: expected milliseconds separated by commas"
            ) from None

    given = usage(checked)

    async def create(client: EventBusClient) -> None:
        created = await client.create_consumer(name, **given)
        if out.json_mode:
            out.json_line({"name": name, "created": created})
        else:
            out.console.print(
                f"{'created' if created else 'changed'} consumer [bold]{escape(name)}[/] on {escape(target.name)}"
            )

    run_client(target, create)


@command("ls")
def list_(
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the consumers with their stats (pending is the lag: matching events not yet handed out).

    Examples:

      eventbus consumers ls

      eventbus consumers ls --json | jq -r 'select(.stats.dead > 0) | .name'
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def show(client: EventBusClient) -> None:
        consumers = await client.list_consumers()
        rows = consumers if out.json_mode else [_row(dict(c)) for c in consumers]
        out.table(rows, COLUMNS, title=f"{target.name}: consumers")

    run_client(target, show)


@command("info")
def info(
    name: NameArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print one consumer, its config and its stats, as JSON.

    Examples:

      eventbus consumers info resize
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def show(client: EventBusClient) -> None:
        out.document(await client.get_consumer(name))

    run_client(target, show)


@command("rm")
def remove(
    name: NameArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete a consumer, its leases and its dead letters (the events stay in the log).

    Examples:

      eventbus consumers rm resize
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def delete(client: EventBusClient) -> None:
        await client.delete_consumer(name)
        if out.json_mode:
            out.json_line({"name": name, "deleted": True})
        else:
            out.console.print(f"deleted consumer [bold]{escape(name)}[/] on {escape(target.name)}")

    run_client(target, delete)


def consume(
    name: NameArgument,
    max_messages: Annotated[
        int | None,
        typer.Option(
            "--max", "-n", metavar="N", help="Stop after N messages (default: until Ctrl+C).", min=1
        ),
    ] = None,
    ack: Annotated[bool, typer.Option("--ack", help="Ack each message once printed.")] = False,
    exec_: Annotated[
        str | None,
        typer.Option(
            "--exec",
            metavar="CMD",
            help="Run CMD per message, the event's JSON on stdin: exit 0 acks, else nack.",
        ),
    ] = None,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Work through a consumer's messages: print them, ack them, or run a command on each.

    Without --ack or --exec the messages are printed and handed back at once
    (nack), so looking does not hold work. With --exec CMD (split like a shell
    would, but run without one) each message's event is written to CMD's stdin
    as JSON; exit 0 acks it, anything else nacks it (it comes back after the
    consumer's backoff); while CMD runs, the lease is extended.

    Examples:

      eventbus consume resize --max 5

      eventbus consume resize --exec 'python resize.py'

      eventbus consume audit --ack --json | jq .event.payload
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    argv = usage(lambda: _argv(exec_, ack)) if exec_ is not None else None
    out = Output(json_mode=json_out or None)
    done = {"ok": 0, "failed": 0}

    async def work(client: EventBusClient) -> None:
        ack_wait_ms = (await client.get_consumer(name))["ack_wait_ms"]
        err_console.print(
            f"[dim]consuming {escape(name)} on {escape(target.name)} (Ctrl+C to stop)[/]"
        )
        while max_messages is None or sum(done.values()) < max_messages:
            left = 100 if max_messages is None else max_messages - sum(done.values())
            batch = await client.fetch(name, max=1 if argv else min(left, 100), wait_ms=5000)
            for message in batch:
                _print(out, message)
                if argv is not None:
                    ok = await _run(argv, message, ack_wait_ms)
                    await (message.ack() if ok else message.nack())
                    done["ok" if ok else "failed"] += 1
                elif ack:
                    await message.ack()
                    done["ok"] += 1
                else:
                    await message.nack(delay_ms=0)
                    done["ok"] += 1

    try:
        run_client(target, work)
    except KeyboardInterrupt:
        pass
    if argv is not None:
        err_console.print(f"[dim]{done['ok']} acked, {done['failed']} nacked[/]")


def _argv(command: str, ack: bool) -> list[str]:
    if ack:
        raise UsageError("give either --ack or --exec, not both")
    argv = shlex.split(command)
    if not argv:
        raise UsageError("--exec: give a command to run")
    return argv


def _print(out: Output, message: ConsumerMessage) -> None:
    event = message.event.model_dump(mode="json")
    if out.json_mode:
        out.json_line(
            {"event": event, "deliveries": message.deliveries, "lease_until": message.lease_until}
        )
    else:
        out.event_line(event)


async def _run(argv: list[str], message: ConsumerMessage, ack_wait_ms: int) -> bool:
    """Run the command on one message, extending its lease while it runs; True on exit 0."""
    import asyncio

    try:
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise UsageError(f"--exec {shlex.join(argv)}: {exc.strerror or exc}") from None
    data = message.event.model_dump_json().encode()
    waiting = asyncio.ensure_future(process.communicate(data))
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=ack_wait_ms / 2000)
        if done:
            break
        await message.extend()
    return process.returncode == 0


def dead_letters(
    name: NameArgument,
    redrive: Annotated[
        bool,
        typer.Option("--redrive", help="Send them back to the consumer (deliveries start over)."),
    ] = False,
    event_ids: Annotated[
        list[int] | None,
        typer.Option("--event-id", metavar="EVENT_ID", help="Only these (repeat it); default all."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", metavar="N", help="At most this many listed.", min=1, max=1000
        ),
    ] = 100,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List a consumer's dead letters (events that failed max_deliver times, or were termed), or redrive them.

    Examples:

      eventbus dead-letters resize

      eventbus dead-letters resize --redrive

      eventbus dead-letters resize --redrive --event-id 4182
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def main(client: EventBusClient) -> None:
        if redrive:
            count = await client.redrive(name, event_ids)
            if out.json_mode:
                out.json_line({"consumer": name, "redriven": count})
            else:
                out.console.print(
                    f"redrove {count:,} dead letter{'s' if count != 1 else ''} of [bold]{escape(name)}[/]"
                )
            return
        dead = await client.list_dead_letters(name, limit=limit)
        if event_ids:
            dead = [d for d in dead if d["event_id"] in event_ids]
        rows = [
            {
                **d,
                "topic": (d["event"] or {}).get("topic", "(pruned)"),
                "died": format_ts(d["dead_at"]),
            }
            for d in dead
        ]
        out.table(
            dead if out.json_mode else rows,
            [
                ("event_id", "event"),
                ("topic", "topic"),
                ("deliveries", "deliveries"),
                ("reason", "reason"),
                ("died", "died (UTC)"),
            ],
            title=f"{target.name}: dead letters of {name}",
        )

    run_client(target, main)
