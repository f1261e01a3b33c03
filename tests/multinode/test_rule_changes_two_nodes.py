"""Rule changes between two `eventbus serve` processes on one PostgreSQL bus
(DESIGN.md §8): a change on one node reaches the other's rule book through
NOTIFY, and the node that made it does not reload for its own notice (it
applied the change already; reloading 10,000 rules per registration was
most of what registering cost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect

from .test_two_nodes import BUS, collect, two_nodes, wait_until

pytestmark = pytest.mark.slow

OWN_RULES = 20


def _copy_rule(rule_id: str, topic: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "topic": topic,
        "action": {"type": "EmitEvent", "topic": f"out.{rule_id}", "payload": "{{ $.payload }}"},
    }


async def _stats(bus: EventBusClient) -> dict[str, Any]:
    stats: dict[str, Any] = dict((await bus.bus_info())["stats"])
    return stats


async def test_a_rule_change_reaches_the_other_node_and_its_own_node_does_not_reload(
    tmp_path: Path,
) -> None:
    async with (
        two_nodes(tmp_path, enable_rules=True) as (a, b),
        await connect(a.url(BUS)) as on_a,
        await connect(b.url(BUS)) as on_b,
    ):
        # Each node reloads once when its listener connects (it catches up): let that pass.
        for bus in (on_a, on_b):
            assert await wait_until(lambda bus=bus: _reloaded(bus, at_least=1))
        reloads_a = (await _stats(on_a))["rule_reloads"]

        await on_a.register_rule(_copy_rule("copy", "in.x"))
        await on_a.register_rule(_copy_rule("keep", "in.x"))
        for i in range(OWN_RULES - 2):
            await on_a.register_rule(_copy_rule(f"other-{i}", f"other{i}.x"))
        assert await wait_until(lambda: _indexed(on_b, OWN_RULES))

        # a's rule fires on b's event.
        out = await on_b.subscribe("out.>")
        first = await on_b.emit("in.x", {"n": 1})
        fired = await collect(out, 2)
        assert sorted((e.topic, e.payload["n"]) for e in fired) == [
            ("out.copy", 1),
            ("out.keep", 1),
        ]

        # A change on b reaches a in one reload. a's own 20 notices came before b's
        # (PostgreSQL delivers notices in commit order), and made none.
        await on_b.register_rule(_copy_rule("from-b", "from.b"))
        assert await wait_until(lambda: _indexed(on_a, OWN_RULES + 1))
        assert (await _stats(on_a))["rule_reloads"] == reloads_a + 1

        # A delete on a stops the rule on b too.
        await on_a.delete_rule("copy")
        assert await wait_until(lambda: _indexed(on_b, OWN_RULES))
        await on_b.emit("in.x", {"n": 2})
        [kept] = await collect(out, 1)
        assert (kept.topic, kept.payload["n"]) == ("out.keep", 2)
        # Neither node holds "copy" any more, so whichever takes n=2 later cannot fire it.
        firings = await on_b.list_firings(rule_id="copy")
        assert [f["event_id"] for f in firings] == [first.event_id]


async def _reloaded(bus: EventBusClient, *, at_least: int) -> bool:
    return bool((await _stats(bus)).get("rule_reloads", 0) >= at_least)


async def _indexed(bus: EventBusClient, rules: int) -> bool:
    """Whether the node's own rule book (not storage) holds `rules` enabled rules."""
    return bool((await _stats(bus)).get("rules_enabled") == rules)
