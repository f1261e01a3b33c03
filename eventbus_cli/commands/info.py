"""`eventbus topics` and `eventbus info`: what a bus holds and how it is doing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventbus_cli.errors import EXIT_UNREACHABLE
from eventbus_cli.options import BusOption, ConfigOption, JsonOption, TokenOption, UrlOption
from eventbus_cli.output import Output, format_ts
from eventbus_cli.runner import run, run_client, usage
from eventbus_cli.targets import Target, bus_urls, default_config_path, resolve_target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

import typer


def topics(
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the topics of a bus with their event counts and last event.

    Examples:

      eventbus topics

      eventbus topics --bus workflow --json | jq -r .topic
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def show(client: EventBusClient) -> None:
        topics = sorted(await client.list_topics(), key=lambda t: t["last_event_id"], reverse=True)
        rows = [{**topic, "last_time": format_ts(topic["last_timestamp"])} for topic in topics]
        out.table(
            rows,
            [
                ("topic", "topic"),
                ("count", "events"),
                ("last_event_id", "last id"),
                ("last_time", "last event (UTC)"),
            ],
            title=f"{target.name}: {len(rows)} topics",
        )

    run_client(target, show)


def info(
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show bus_info and stats: of one bus, or of every bus in the config.

    Without --bus or --url, every bus of --config is asked; one that cannot be
    reached is shown as such (and the exit code is 3).

    Examples:

      eventbus info

      eventbus info --bus global --json | jq .stats
    """
    if url or bus:
        targets = [usage(lambda: resolve_target(url, bus, config, token))]
    else:
        targets = usage(lambda: bus_urls(config or default_config_path()))
        targets = [Target(t.url, t.bus_id, token or t.token) for t in targets]
    out = Output(json_mode=json_out or None)

    async def gather() -> list[dict[str, Any]]:
        import asyncio

        return list(await asyncio.gather(*(_ask(target) for target in targets)))

    rows = run(targets[0] if len(targets) == 1 else None, gather)
    if out.json_mode or (len(rows) == 1 and "error" not in rows[0]):
        for row in rows:
            out.document(row)
    else:
        out.table([_summary(row) for row in rows], SUMMARY_COLUMNS, title="buses")
    if any(row.get("reachable") is False for row in rows):
        raise typer.Exit(EXIT_UNREACHABLE)


SUMMARY_COLUMNS = [
    ("id", "bus"),
    ("url", "address"),
    ("state", "state"),
    ("storage", "storage"),
    ("rules", "rules"),
    ("last_event_id", "last id"),
    ("topics", "topics"),
    ("subscriptions", "subs"),
    ("connections", "conns"),
    ("uptime", "uptime"),
]


async def _ask(target: Target) -> dict[str, Any]:
    from eventbus_client import connect
    from eventbus_core.errors import ConnectionLost, EventBusError

    try:
        async with await connect(target.url, token=target.token) as client:
            return {"url": target.url, "reachable": True, **await client.bus_info()}
    except ConnectionLost as exc:
        return {"id": target.bus_id, "url": target.url, "reachable": False, "error": exc.message}
    except EventBusError as exc:
        return {
            "id": target.bus_id,
            "url": target.url,
            "reachable": True,
            "error": f"{exc.message} ({exc.code})",
        }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    if "error" in row:
        state = "unreachable" if not row["reachable"] else "error"
        return {"id": row["id"], "url": row["url"], "state": f"{state}: {row['error']}"}
    stats = row["stats"]
    return {
        "id": row["id"],
        "url": row["url"],
        "state": "up",
        "storage": row["storage"],
        "rules": "on" if row["enable_rules"] else "off",
        "last_event_id": stats["last_event_id"],
        "topics": stats["topics"],
        "subscriptions": stats["subscriptions"],
        "connections": stats["connections"],
        "uptime": f"{row['uptime_s']:.0f}s",
    }
