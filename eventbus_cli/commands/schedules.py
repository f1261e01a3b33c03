"""`eventbus schedules …`: recurring schedules of a bus (docs/schedules.md).

A schedule appends its event on every tick of a cron expression (in a time
zone) or of a fixed interval. Delayed one-off events are `eventbus emit
--delay/--at`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from eventbus_cli.commands.emit import parse_json_arg
from eventbus_cli.completion import complete_schedule_id
from eventbus_cli.errors import EXIT_CODES_HELP, UsageError
from eventbus_cli.help_format import PlainCommand, PlainGroup
from eventbus_cli.options import BusOption, ConfigOption, JsonOption, TokenOption, UrlOption
from eventbus_cli.output import Output, cadence, format_ts
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import resolve_target
from eventbus_cli.times import parse_delay_ms

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

schedules_app = typer.Typer(
    cls=PlainGroup,
    help="Manage the recurring schedules of a bus: add, ls, show, rm, enable, disable.",
    no_args_is_help=True,
    epilog=EXIT_CODES_HELP,
)
command = partial(schedules_app.command, cls=PlainCommand, epilog=EXIT_CODES_HELP)

ScheduleIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="SCHEDULE_ID", help="The schedule's id.", autocompletion=complete_schedule_id
    ),
]

SCHEDULE_COLUMNS = [
    ("id", "id"),
    ("enabled", "on"),
    ("cadence", "cadence"),
    ("topic", "topic"),
    ("next", "next tick (UTC)"),
    ("last", "last tick (UTC)"),
    ("ticks", "ticks"),
]


def _row(schedule: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **schedule,
        "cadence": cadence(schedule),
        "topic": schedule["event"].get("topic"),
        "next": format_ts(schedule.get("next_tick")),
        "last": format_ts(schedule.get("last_tick")),
    }


def _event_from_flags(
    topic: str,
    payload: str | None,
    metadata: str | None,
    source_trn: str | None,
    target_trn: str | None,
    correlation_id: str | None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"topic": topic}
    if payload is not None:
        event["payload"] = parse_json_arg(payload, "--payload")
    if metadata is not None:
        meta = parse_json_arg(metadata, "--metadata")
        if not isinstance(meta, dict):
            raise UsageError("--metadata must be a JSON object")
        event["metadata"] = meta
    for key, value in (
        ("source_trn", source_trn),
        ("target_trn", target_trn),
        ("correlation_id", correlation_id),
    ):
        if value is not None:
            event[key] = value
    return event


@command("add")
def add(
    schedule_id: Annotated[
        str, typer.Argument(metavar="SCHEDULE_ID", help="Its id: letters, digits, '.', '_', '-'.")
    ],
    topic: Annotated[
        str,
        typer.Option(
            "--topic", "-t", metavar="TOPIC", help="Topic of the event each tick appends."
        ),
    ],
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron", metavar="EXPR", help="5-field cron expression (or @hourly, @daily, …)."
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every", metavar="DURATION", help="Or a fixed interval: 30s, 5m, 1h (at least 1s)."
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone", "--tz", metavar="ZONE", help="IANA time zone of --cron (default UTC)."
        ),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", metavar="JSON", help="Payload: JSON, @file or -."),
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="JSON object of metadata.")
    ] = None,
    source_trn: Annotated[
        str | None,
        typer.Option(
            "--source-trn", metavar="TRN", help="Source (default trn:eventbus:BUS:schedule:ID)."
        ),
    ] = None,
    target_trn: Annotated[
        str | None, typer.Option("--target-trn", metavar="TRN", help="Who it is for.")
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", metavar="ID", help="Correlation id.")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a schedule with the same id.")
    ] = False,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a recurring schedule: every tick appends one event, with
    metadata.schedule = {id, tick}.

    Examples:

      eventbus schedules add nightly-report --cron '0 2 * * *' --tz Europe/Berlin --topic reports.nightly

      eventbus schedules add heartbeat --every 30s --topic health.ping --payload '{"from": "scheduler"}'

      eventbus schedules add nightly-report --cron '@daily' --topic reports.nightly --replace
    """

    def build() -> tuple[dict[str, Any], dict[str, Any]]:
        if (cron is None) == (every is None):
            raise UsageError("give exactly one of --cron EXPR or --every DURATION")
        if every is not None and timezone is not None:
            raise UsageError("--timezone goes with --cron; --every counts from the epoch")
        cadence: dict[str, Any] = (
            {"cron": cron}
            if cron is not None
            else {"every_ms": parse_delay_ms(every or "", "--every")}
        )
        if timezone is not None:
            cadence["timezone"] = timezone
        return cadence, _event_from_flags(
            topic, payload, metadata, source_trn, target_trn, correlation_id
        )

    cadence, event = usage(build)
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def create(client: EventBusClient) -> None:
        result = await client.create_schedule(
            schedule_id, event, enabled=not disabled, replace=replace, **cadence
        )
        if out.json_mode:
            out.json_line(result)
            return
        verb = "created" if result["created"] else "replaced"
        when = (
            f"next tick {format_ts(result['next_tick'])}"
            if result["next_tick"] is not None
            else "switched off"
        )
        out.console.print(
            f"{verb} schedule [bold]{escape(schedule_id)}[/] on {escape(target.name)}: {when}"
        )

    run_client(target, create)


@command("ls")
def ls(
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the schedules with their next and last ticks.

    Examples:

      eventbus schedules ls

      eventbus schedules ls --json | jq -r 'select(.enabled | not) | .id'
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def show(client: EventBusClient) -> None:
        schedules = await client.list_schedules()
        rows = schedules if out.json_mode else [_row(s) for s in schedules]
        out.table(rows, SCHEDULE_COLUMNS, title=f"{target.name}: schedules")

    run_client(target, show)


@command("show")
def show(
    schedule_id: ScheduleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print one schedule as JSON.

    Examples:

      eventbus schedules show nightly-report
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def get(client: EventBusClient) -> None:
        out.document(await client.get_schedule(schedule_id))

    run_client(target, get)


@command("rm")
def rm(
    schedule_id: ScheduleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete a schedule (the events it appended stay in the log).

    Examples:

      eventbus schedules rm nightly-report
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def delete(client: EventBusClient) -> None:
        await client.delete_schedule(schedule_id)
        if out.json_mode:
            out.json_line({"id": schedule_id, "deleted": True})
        else:
            out.console.print(
                f"deleted schedule [bold]{escape(schedule_id)}[/] on {escape(target.name)}"
            )

    run_client(target, delete)


def _set_enabled(
    schedule_id: str, enabled: bool, target_args: tuple[Any, ...], json_out: bool
) -> None:
    target = usage(lambda: resolve_target(*target_args))
    out = Output(json_mode=json_out or None)

    async def switch(client: EventBusClient) -> None:
        schedule = await client.set_schedule_enabled(schedule_id, enabled)
        if out.json_mode:
            out.json_line(
                {"id": schedule_id, "enabled": enabled, "next_tick": schedule["next_tick"]}
            )
        elif enabled:
            out.console.print(
                f"enabled schedule [bold]{escape(schedule_id)}[/] on {escape(target.name)}:"
                f" next tick {format_ts(schedule['next_tick'])}"
            )
        else:
            out.console.print(
                f"disabled schedule [bold]{escape(schedule_id)}[/] on {escape(target.name)}"
            )

    run_client(target, switch)


@command("enable")
def enable(
    schedule_id: ScheduleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Switch a schedule on: it ticks next at its first tick from now (the ticks it
    missed while off are not caught up).

    Examples:

      eventbus schedules enable nightly-report
    """
    _set_enabled(schedule_id, True, (url, bus, config, token), json_out)


@command("disable")
def disable(
    schedule_id: ScheduleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Switch a schedule off (it stays, with its counters).

    Examples:

      eventbus schedules disable nightly-report
    """
    _set_enabled(schedule_id, False, (url, bus, config, token), json_out)
