"""`eventbus firings`: what the rules did, the dead letters, and `retry` to run them again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from eventbus_cli.commands.tail import ConnectionWatch, Tally
from eventbus_cli.completion import complete_failed_firing_id, complete_rule_id
from eventbus_cli.errors import EXIT_CODES_HELP, UsageError
from eventbus_cli.help_format import PlainCommand, PlainGroup
from eventbus_cli.options import (
    BusOption,
    ConfigOption,
    JsonOption,
    RuleIdOption,
    TokenOption,
    UrlOption,
)
from eventbus_cli.output import Output, compact, err_console, format_ts
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import Target, resolve_target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

firings_app = typer.Typer(
    cls=PlainGroup,
    invoke_without_command=True,
    no_args_is_help=False,
    subcommand_metavar="[retry ...]",
    epilog=EXIT_CODES_HELP,
)

COLUMNS = [
    ("firing_id", "firing"),
    ("rule_id", "rule"),
    ("event_id", "event"),
    ("status_text", "status"),
    ("attempts", "tries"),
    ("duration", "took"),
    ("started", "started (UTC)"),
    ("outcome", "result / error"),
]
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "pending": "cyan"}
#: The most firings `retry_firings` runs again per call; the bus says so by answering it.
RETRY_PAGE = 10_000

FailedOption = Annotated[
    bool, typer.Option("--failed", help="Only dead letters (firings that exhausted retries).")
]


def _row(firing: Mapping[str, Any]) -> dict[str, Any]:
    status = firing["status"]
    outcome = firing["error"] if firing.get("error") else firing.get("result")
    return {
        **firing,
        "status_text": Text(status, style=STATUS_STYLE.get(status, "")),
        "duration": f"{firing['duration_ms']} ms" if firing.get("duration_ms") is not None else "-",
        "started": format_ts(firing.get("started_at")),
        "outcome": outcome,
    }


def firing_line(firing: dict[str, Any]) -> str:
    """One finished firing as one line of markup: id, rule, event, status, tries, time, outcome."""
    status = firing["status"]
    style = STATUS_STYLE.get(status, "")
    took = f", {firing['duration_ms']} ms" if firing.get("duration_ms") is not None else ""
    tries = firing.get("attempts") or 0
    outcome = firing["error"] if firing.get("error") else compact(firing.get("result"), 100)
    return (
        f"[cyan]#{firing['firing_id']}[/] [dim]{format_ts(firing.get('started_at'))}[/] "
        f"[bold]{escape(firing['rule_id'])}[/] event #{firing['event_id']} [{style}]{status}[/]"
        f" [dim]({tries} {'try' if tries == 1 else 'tries'}{took})[/] {escape(str(outcome))}"
    )


@firings_app.callback()
def firings(
    ctx: typer.Context,
    rule: RuleIdOption = None,
    failed: FailedOption = False,
    since: Annotated[
        int, typer.Option("--since", metavar="FIRING_ID", help="Exclusive firing_id cursor.", min=0)
    ] = 0,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", metavar="N", help="At most this many.", min=1, max=10_000),
    ] = 100,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Then print firings as they finish, one line each, until Ctrl+C."
        ),
    ] = False,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List rule firings: status (ok / failed / skipped / pending), attempts, timing, result or error.

    With --follow, each firing that finishes afterwards is one line (NDJSON
    with --json or when piped). `eventbus firings retry` runs dead letters again.

    Examples:

      eventbus firings

      eventbus firings --failed --rule fetch-on-push

      eventbus firings --follow --json | jq -c 'select(.status != "ok")'

      eventbus firings retry --rule fetch-on-push
    """
    if ctx.invoked_subcommand is not None:
        return  # `firings retry`: it reads the target options given here too
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)
    status = "failed" if failed else None
    tally = Tally(noun="firing")

    async def main(client: EventBusClient) -> None:
        listed = await client.list_firings(rule_id=rule, status=status, since=since, limit=limit)
        title = f"{target.name}: firings" + (" (dead letters)" if failed else "")
        out.table(listed if out.json_mode else [_row(f) for f in listed], COLUMNS, title=title)
        if not follow:
            return
        sub = await client.subscribe_firings(rule_id=rule)
        # On stderr even with --json (stdout stays NDJSON): a script can wait for it.
        err_console.print("[dim]following firings (Ctrl+C to stop)[/]")
        import asyncio

        watch = ConnectionWatch(client, target.name, tally)
        watching = asyncio.get_running_loop().create_task(watch.run())
        try:
            async for firing in sub:
                watch.check()
                if status is None or firing["status"] == status:
                    if out.json_mode:
                        out.json_line(firing)
                    else:
                        out.console.print(firing_line(firing), soft_wrap=True)
                    tally.add(firing["firing_id"])
        finally:
            watching.cancel()

    try:
        run_client(target, main)
    except KeyboardInterrupt:
        err_console.print(f"[dim]stopped: {tally}[/]")


def _group_target(
    ctx: typer.Context, url: str | None, bus: str | None, config: Any, token: str | None
) -> Target:
    """The target from retry's own options, else from those given to `firings` before it."""
    given = ctx.parent.params if ctx.parent is not None else {}
    return resolve_target(
        url or given.get("url"),
        bus or given.get("bus"),
        config or given.get("config"),
        token or given.get("token"),
    )


@firings_app.command("retry", cls=PlainCommand, epilog=EXIT_CODES_HELP)
def retry(
    ctx: typer.Context,
    firing_ids: Annotated[
        list[int] | None,
        typer.Argument(
            metavar="FIRING_ID",
            help="These dead letters (default: every one, of --rule if given).",
            autocompletion=complete_failed_firing_id,
            show_default=False,
        ),
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule",
            "-r",
            metavar="RULE_ID",
            help="Every dead letter of this rule.",
            autocompletion=complete_rule_id,
        ),
    ] = None,
    failed: Annotated[
        bool,
        typer.Option("--failed", help="Firings that ended failed, the dead letters (the default)."),
    ] = True,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run dead letters again (same firing_id; attempts continue) and say how many.

    Each firing runs again as if it had just been made, through the rule's
    retry policy, and is recorded as before: follow it with `eventbus firings
    --follow`. The bus takes at most 10,000 a call; retry asks again until
    every dead letter (of --rule, or of the bus) has run once more.

    Examples:

      eventbus firings retry 1207 1210

      eventbus firings retry --rule fetch-on-push

      eventbus firings retry --json | jq .retried
    """

    def check() -> Target:
        if firing_ids and rule:
            raise UsageError("give FIRING_IDs or --rule, not both")
        return _group_target(ctx, url, bus, config, token)

    target = usage(check)
    out = Output(json_mode=json_out or None)
    del failed  # the one status the CLI redrives: failed

    async def main(client: EventBusClient) -> int:
        if firing_ids:
            total = 0
            for start in range(0, len(firing_ids), RETRY_PAGE):
                total += await client.retry_firings(firing_ids[start : start + RETRY_PAGE])
            return total
        # A dead letter that fails again at once is failed again: ask no more often than
        # there were dead letters when we started, so it cannot go round for ever.
        rules = await client.list_rules()
        budget = sum(r.get("failed", 0) for r in rules if rule is None or r["id"] == rule)
        total = 0
        while True:
            retried = await client.retry_firings(rule_id=rule)
            total += retried
            if retried < RETRY_PAGE or total >= budget:
                return total

    retried = run_client(target, main)
    if out.json_mode:
        out.json_line({"retried": retried})
        return
    which = f" of rule {escape(rule)}" if rule else ""
    noun = "dead letter" if retried == 1 else "dead letters"
    line = f"running {retried:,} {noun}{which} again on {escape(target.name)}"
    if firing_ids and retried < len(firing_ids):
        line += f" [yellow]({len(firing_ids) - retried:,} of the {len(firing_ids):,} given are not dead letters)[/]"
    out.console.print(line)
