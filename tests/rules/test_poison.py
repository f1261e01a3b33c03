"""A rule that raises while matching an event does not match it; the engine
moves on, other rules still see the event, and the error is logged once per
rule, not once per event.

Matching should never raise (rules are checked when compiled), so the events
here carry Python values that raise when a test reads them, emitted in
process on a memory bus: over the wire no such value exists. Before, the
engine retried such an event from its cursor forever.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect
from eventbus_core.envelope import EmitParams
from tests.conftest import start_buses

from .conftest import rules_bus, settle


class ExplodingObject(dict[str, Any]):
    """An object whose lookups raise, as a bug in a path would."""

    def get(self, *args: Any) -> Any:
        raise RuntimeError("boom")


def emit_rule(rule_id: str, topic: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "topic": topic,
        **fields,
        "action": {"type": "EmitEvent", "topic": f"{rule_id}.out", "payload": 1},
    }


@pytest.mark.timeout(30)
async def test_a_rule_that_raises_counts_as_no_match_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_buses(tmp_path, rules_bus("memory", tmp_path)) as app:
        bus = app.buses["rules"]
        async with await connect(app.url("rules")) as client:
            # One reads the object through a pattern, one through a condition (which
            # the topic's plan also looks up first, to pick the rules to check).
            await client.register_rule(
                emit_rule("pattern", "in", pattern={"payload": {"o": {"k": ["v"]}}})
            )
            await client.register_rule(emit_rule("path", "in", match_fields={"o.k": "v"}))
            await client.register_rule(emit_rule("other", "in", match_fields={"n": 1}))
            with caplog.at_level(logging.ERROR, logger="eventbus.rules"):
                for _ in range(3):
                    await bus.emit(EmitParams(topic="in", payload={"o": ExplodingObject(), "n": 1}))
                await bus.emit(EmitParams(topic="in", payload={"o": {"k": "v"}, "n": 1}))
                await settle(app)
            fired = {rule["id"]: rule["fired"] for rule in await client.list_rules()}
            stats = (await client.bus_info())["stats"]["firings"]

    # The poison events matched no rule that raised on them, yet `other` saw all four.
    assert fired == {"pattern": 1, "path": 1, "other": 4}
    assert stats["match_errors"] == 6
    logged = [r for r in caplog.records if "raised while matching" in r.getMessage()]
    assert sorted(r.getMessage().split("rule=")[1].split()[0] for r in logged) == [
        "path",
        "pattern",
    ]
    assert all(r.exc_info is not None for r in logged)
