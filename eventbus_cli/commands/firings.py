"""`eventbus firings`: what the rules did, and the dead letters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from ..options import BusOption, ConfigOption, JsonOption, TokenOption, UrlOption
from ..output import Output, err_console, format_ts
from ..runner import run_client, usage
from ..targets import resolve_target
from .tail import Tally

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

COLUMNS = [
    ("firing_id", "firing"), ("rule_id", "rule"), ("event_id", "event"), ("status_text", "status"),
    ("attempts", "tries"), ("duration", "took"), ("started", "started (UTC)"), ("outcome", "result / error"),
]
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "pending": "cyan"}


def _row(firing: dict[str, Any]) -> dict[str, Any]:
    status = firing["status"]
    outcome = firing["error"] if firing.get("error") else firing.get("result")
    return {
        **firing,
        "status_text": Text(status, style=STATUS_STYLE.get(status, "")),
        "duration": f"{firing['duration_ms']} ms" if firing.get("duration_ms") is not None else "-",
        "started": format_ts(firing.get("started_at")),
        "outcome": outcome,
    }


def firings(
    rule: Annotated[str | None, typer.Option("--rule", "-r", help="Only this rule's firings.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only dead letters (firings that exhausted retries).")] = False,
    since: Annotated[int, typer.Option("--since", help="Exclusive firing_id cursor.", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.", min=1, max=10_000)] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then print firings as they finish, until Ctrl+C.")] = False,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List rule firings: status (ok / failed / skipped / pending), attempts, timing, result or error.

    Examples:

      eventbus firings

      eventbus firings --failed --rule fetch-on-push

      eventbus firings --follow --json | jq -c 'select(.status != "ok")'
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)
    status = "failed" if failed else None
    tally = Tally(noun="firing")

    def show(rows: list[dict[str, Any]], title: str | None = None) -> None:
        out.table(rows if out.json_mode else [_row(f) for f in rows], COLUMNS, title=title)

    async def main(client: EventBusClient) -> None:
        listed = await client.list_firings(rule_id=rule, status=status, since=since, limit=limit)
        show(listed, f"{target.name}: firings" + (" (dead letters)" if failed else ""))
        if not follow:
            return
        sub = await client.subscribe_firings(rule_id=rule)
        if not out.json_mode:
            err_console.print("[dim]following firings (Ctrl+C to stop)[/]")
        async for firing in sub:
            if status is None or firing["status"] == status:
                show([firing])
                tally.add(firing["firing_id"])

    try:
        run_client(target, main)
    except KeyboardInterrupt:
        err_console.print(f"[dim]stopped: {tally}[/]")
