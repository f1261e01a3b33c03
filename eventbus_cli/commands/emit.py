"""`eventbus emit TOPIC`: emit one event."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from eventbus_cli.errors import UsageError
from eventbus_cli.options import BusOption, ConfigOption, JsonOption, TokenOption, UrlOption
from eventbus_cli.output import Output, format_ts
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import Target, resolve_target
from eventbus_cli.times import parse_at_ms, parse_delay_ms

if TYPE_CHECKING:
    from eventbus_client import EventBusClient


def parse_json_arg(value: str, option: str) -> Any:
    """A JSON value from `--option JSON`, `@file.json` or `-` (stdin)."""
    source = option
    if value == "-":
        text, source = sys.stdin.read(), f"{option} - (stdin)"
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
        source = f"{option} @{path}"
    else:
        text = value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def emit(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Topic, e.g. repo.pushed.")],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            metavar="JSON",
            help="JSON payload, @file.json, or - for stdin (default: null).",
        ),
    ] = None,
    source_trn: Annotated[
        str | None, typer.Option("--source-trn", metavar="TRN", help="Who emits (a TRN).")
    ] = None,
    target_trn: Annotated[
        str | None, typer.Option("--target-trn", metavar="TRN", help="Who it is for (a TRN).")
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", metavar="ID", help="Ties related events.")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="JSON object of metadata.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Repeats within the dedup window store nothing.",
        ),
    ] = None,
    delay: Annotated[
        str | None,
        typer.Option(
            "--delay",
            metavar="DURATION",
            help="Deliver this long from now (10m, 2h): the event is stored and appended when due.",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Deliver at this time (ISO-8601 like 2026-12-24T09:00Z, or epoch ms).",
        ),
    ] = None,
    ndjson: Annotated[
        bool,
        typer.Option(
            "--ndjson", help="Emit one event per stdin line (each line a JSON payload), in batches."
        ),
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", metavar="N", help="Events per batch with --ndjson.", min=1, max=10_000
        ),
    ] = 500,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Emit one event and print its event_id once the bus has committed it.

    Examples:

      eventbus emit repo.pushed --payload '{"repo": "acme/api"}' --source-trn trn:user:alice:cli:v1

      eventbus emit build.done --payload @result.json --bus workflow

      echo '{"n": 1}' | eventbus emit jobs.queued --payload - --url tcp://127.0.0.1:4011

      eventbus history --topic 'jobs.>' --json | jq -c .payload | eventbus emit jobs.copied --ndjson

      eventbus emit reminders.due --payload '{"to": "alice"}' --delay 10m

      eventbus emit campaign.start --at 2026-12-24T09:00Z
    """

    def check() -> tuple[Target, Any, Any]:
        target = resolve_target(url, bus, config, token)
        if delay is not None and at is not None:
            raise UsageError("give --delay or --at, not both")
        if ndjson and (delay is not None or at is not None):
            raise UsageError("--delay and --at schedule one event; they cannot go with --ndjson")
        if ndjson and payload is not None:
            raise UsageError("--ndjson reads the payloads from stdin: leave out --payload")
        if ndjson and idempotency_key is not None:
            raise UsageError("--idempotency-key names one event; it cannot go with --ndjson")
        body = None if ndjson or payload is None else parse_json_arg(payload, "--payload")
        meta = parse_json_arg(metadata, "--metadata") if metadata is not None else None
        if meta is not None and not isinstance(meta, dict):
            raise UsageError("--metadata must be a JSON object")
        return target, body, meta

    target, body, meta = usage(check)
    out = Output(json_mode=json_out or None)
    if ndjson:
        common = {
            "source_trn": source_trn,
            "target_trn": target_trn,
            "correlation_id": correlation_id,
            "metadata": meta,
        }
        emit_lines(
            target, topic, {k: v for k, v in common.items() if v is not None}, batch_size, out
        )
        return

    fields: dict[str, Any] = {
        "source_trn": source_trn,
        "target_trn": target_trn,
        "correlation_id": correlation_id,
        "metadata": meta,
        "idempotency_key": idempotency_key,
    }
    if delay is not None or at is not None:
        emit_later(target, topic, body, fields, delay, at, out)
        return

    async def main(client: EventBusClient) -> None:
        result = await client.emit(topic, body, **fields)
        if out.json_mode:
            out.json_line(
                {
                    "event_id": result.event_id,
                    "timestamp": result.timestamp,
                    "duplicate": result.duplicate,
                }
            )
        else:
            note = (
                " [yellow](duplicate: stored earlier, nothing new)[/]" if result.duplicate else ""
            )
            out.console.print(
                f"emitted [bold]{escape(topic)}[/] event_id=[bold cyan]{result.event_id}[/]{note}"
            )

    run_client(target, main)


def emit_later(
    target: Target,
    topic: str,
    body: Any,
    fields: dict[str, Any],
    delay: str | None,
    at: str | None,
    out: Output,
) -> None:
    """`--delay` / `--at`: the bus stores the event now and appends it when due."""
    delay_ms = usage(lambda: parse_delay_ms(delay, "--delay")) if delay is not None else None
    deliver_at = usage(lambda: parse_at_ms(at, "--at")) if at is not None else None

    async def schedule(client: EventBusClient) -> None:
        if deliver_at is not None:
            result = await client.emit(topic, body, **fields, deliver_at=deliver_at)
        else:
            assert delay_ms is not None
            result = await client.emit(topic, body, **fields, delay_ms=delay_ms)
        if out.json_mode:
            out.json_line(
                {
                    "schedule_id": result.schedule_id,
                    "deliver_at": result.deliver_at,
                    "duplicate": result.duplicate,
                }
            )
        else:
            note = (
                " [yellow](duplicate: already pending, nothing new)[/]" if result.duplicate else ""
            )
            out.console.print(
                f"scheduled [bold]{escape(topic)}[/] schedule_id=[bold cyan]{result.schedule_id}[/]"
                f" deliver_at={format_ts(result.deliver_at)}{note}"
            )

    run_client(target, schedule)


def emit_lines(
    target: Target, topic: str, common: dict[str, Any], batch_size: int, out: Output
) -> None:
    """`--ndjson`: every stdin line is a payload; batches of `batch_size`, one transaction each."""
    sent: list[int] = []

    async def main(client: EventBusClient) -> None:
        batch: list[dict[str, Any]] = []
        for number, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                done = f"; the {len(sent)} events before it were emitted" if sent else ""
                raise UsageError(
                    f"stdin line {number} is not valid JSON: {exc.msg} at column {exc.colno}{done}"
                ) from None
            batch.append({"topic": topic, "payload": value, **common})
            if len(batch) == batch_size:
                sent.extend(await client.emit_many(batch))
                batch = []
        if batch:
            sent.extend(await client.emit_many(batch))

    run_client(target, main)
    span = f" (event_id {sent[0]}…{sent[-1]})" if sent else ""
    if out.json_mode:
        out.json_line(
            {
                "emitted": len(sent),
                "first_event_id": sent[0] if sent else None,
                "last_event_id": sent[-1] if sent else None,
            }
        )
    else:
        out.console.print(f"emitted [bold]{len(sent):,}[/] events on [bold]{topic}[/]{span}")
