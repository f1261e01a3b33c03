"""Tab completion of values (DESIGN §9): bus ids from the config, rule ids,
schedule ids and dead-letter firing ids from the bus. (`--order` and `--log-level` are choices,
which complete by themselves.)

Each completer reads the options typed so far (`--config`, `--url`, `--bus`,
`--token`, `--rule`), on the command or on its group, to know where to look.
A completer never fails and never hangs: a config it cannot read or a bus it
cannot reach within ASK_TIMEOUT_S completes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import typer

from eventbus_cli.targets import bus_ids, default_config_path, resolve_target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

__all__ = [
    "complete_bus_id",
    "complete_failed_firing_id",
    "complete_rule_id",
    "complete_schedule_id",
]

#: How long one Tab may wait for the bus.
ASK_TIMEOUT_S = 2.0
#: Dead letters offered at most (the newest).
FIRINGS_OFFERED = 200


def _typed(ctx: typer.Context, name: str) -> Any:
    """The value of option `name` typed so far, on this command or a group above it."""
    context: Any = ctx
    while context is not None:
        value = context.params.get(name)
        if value not in (None, [], ()):
            return value
        context = context.parent
    return None


def complete_bus_id(ctx: typer.Context, incomplete: str) -> list[str]:
    config = _typed(ctx, "config") or default_config_path()
    return [bus_id for bus_id in bus_ids(config) if bus_id.startswith(incomplete)]


def _ask(
    ctx: typer.Context, question: Callable[[EventBusClient], Awaitable[list[Any]]]
) -> list[Any]:
    import asyncio

    bus = _typed(ctx, "bus")
    try:
        target = resolve_target(
            _typed(ctx, "url"),
            bus[0] if isinstance(bus, list) else bus,
            _typed(ctx, "config"),
            _typed(ctx, "token"),
        )

        async def asked() -> list[Any]:
            from eventbus_client import connect

            async with await connect(
                target.url, token=target.token, timeout_s=ASK_TIMEOUT_S
            ) as client:
                async with asyncio.timeout(ASK_TIMEOUT_S):
                    return await question(client)

        return asyncio.run(asked())
    except Exception:  # completion must never print a traceback into the shell
        return []


def complete_rule_id(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    rules = _ask(ctx, lambda client: client.list_rules())
    return [
        (rule["id"], rule.get("description") or f"on {rule.get('topic', '>')}")
        for rule in rules
        if rule["id"].startswith(incomplete)
    ]


def complete_schedule_id(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    schedules = _ask(ctx, lambda client: client.list_schedules())
    return [
        (s["id"], f"{s.get('cron') or str(s.get('every_ms')) + ' ms'} → {s['event'].get('topic')}")
        for s in schedules
        if s["id"].startswith(incomplete)
    ]


def complete_failed_firing_id(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    rule = _typed(ctx, "rule")
    firings = _ask(
        ctx,
        lambda client: client.list_firings(
            rule_id=rule, status="failed", limit=FIRINGS_OFFERED, order="desc"
        ),
    )
    return [
        (str(f["firing_id"]), f"{f['rule_id']}: {f.get('error') or 'failed'}"[:80])
        for f in firings
        if str(f["firing_id"]).startswith(incomplete)
    ]
