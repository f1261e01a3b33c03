"""`RuleEngine` (eventbus_server/rules/engine.py) in process, through a `Bus` with rules on.

The bus is built and called directly (no server, no client), over real
storage, with `python` tool routes to tests/rules/python_tools.py: the
engine's claims, cursor, retries, dead letters and redrive are read back
from storage and from the engine's stats. `wait_idle()` is the only wait (`settle`).
The same behaviour over the wire is in test_firings.py; a real kill -9 is in
test_crash_resume.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.config import parse_config
from eventbus_core.envelope import EmitParams
from eventbus_server.bus import Bus
from eventbus_server.storage import SqliteStorage
from eventbus_server.storage.base import Firing, FiringQuery, FiringSelection, NewEvent
from tests.subscriber import RecordingSubscriber

from . import python_tools
from .conftest import rules_bus

T0 = 1_795_900_000_000
ECHO = "trn:user:test:python:echo:v1"
FLAKY = "trn:user:test:python:flaky:v1"


@contextlib.asynccontextmanager
async def rules_on(tmp_path: Path, kind: str = "memory", **overrides: Any) -> AsyncIterator[Bus]:
    raw = {"listen": "127.0.0.1:0", **rules_bus(kind, tmp_path, **overrides)}
    bus = Bus(parse_config([raw], base_dir=tmp_path).buses[0])
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rule(rule_id: str, topic: str, tool: str = ECHO, **fields: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "topic": topic,
        **fields,
        "action": {"type": "InvokeTool", "tool_id": tool, "input": "{{ $.payload }}"},
    }


async def settle(bus: Bus) -> None:
    """Every event so far matched and every firing finished (a hang fails in 10 s, not 60)."""
    async with asyncio.timeout(10):
        await bus.wait_idle()


async def firings(bus: Bus) -> list[Firing]:
    return await bus.list_firings(FiringQuery(limit=1000))


def engine_stats(bus: Bus) -> dict[str, int]:
    return bus.info()["stats"]["firings"]  # type: ignore[typeddict-item]


async def test_a_matching_event_is_claimed_once_and_finishes_ok_with_its_result(
    tmp_path: Path, kind: str
) -> None:
    async with rules_on(tmp_path, kind) as bus:
        peer = RecordingSubscriber()
        bus.subscribe_firings(None, peer).start()
        await bus.register_rule(
            rule("big", "orders.*", match_fields={"total": {"numeric": [">=", 100]}}), replace=False
        )
        hit = await bus.emit(EmitParams(topic="orders.new", payload={"id": "o-1", "total": 250}))
        await bus.emit(EmitParams(topic="orders.new", payload={"id": "o-2", "total": 5}))
        await bus.emit(EmitParams(topic="users.new", payload={"total": 900}))
        await settle(bus)

        (firing,) = await firings(bus)
        (call,) = python_tools.CALLS
        assert (firing.rule_id, firing.event_id, firing.firing_id) == (
            "big",
            hit.event_id,
            call["firing_id"],
        )
        assert (firing.status, firing.attempts, firing.error) == ("ok", 1, None)
        assert firing.result == {"echo": {"id": "o-1", "total": 250}, "tool": ECHO}
        assert call["event"]["event_id"] == hit.event_id
        stats = engine_stats(bus)
        assert (stats["matched"], stats["ok"], stats["failed"], stats["running"]) == (1, 1, 0, 0)
        assert (await bus.get_rule("big")).fired == 1
        # Told to rule_fired subscribers once it is recorded.
        assert peer.firing_ids() == [firing.firing_id]
        assert peer.lines[0]["params"]["status"] == "ok"


async def test_a_restart_reruns_a_pending_firing_under_its_id_and_refires_nothing_finished(
    tmp_path: Path,
) -> None:
    async with rules_on(tmp_path, "sqlite") as bus:
        await bus.register_rule(rule("echo", "t"), replace=False)
        done = await bus.emit(EmitParams(topic="t", payload="done"))
        quiet = await bus.emit(EmitParams(topic="other", payload="matches nothing"))
        await settle(bus)
        (finished,) = await firings(bus)
    # A clean stop saved the cursor, past the event that matched nothing too.
    storage = SqliteStorage(tmp_path / "rules.db")
    await storage.open()
    assert await storage.load_cursor() == quiet.event_id
    # What a crash mid-firing leaves: the event committed and its firing claimed (the
    # claim moved the cursor past it), the tool never reached or cut off.
    (cut_off,) = await storage.append([NewEvent("t", "cut off", T0)])
    (pending,) = await storage.claim_firings([("echo", cut_off.event_id)], cut_off.event_id)
    await storage.close()
    python_tools.reset()

    async with rules_on(tmp_path, "sqlite") as bus:
        await settle(bus)
        after = {firing.event_id: firing for firing in await firings(bus)}
        assert [call["firing_id"] for call in python_tools.CALLS] == [
            pending.firing_id
        ]  # only the pending one ran
        assert after[cut_off.event_id].firing_id == pending.firing_id
        assert after[cut_off.event_id].status == "ok" and after[cut_off.event_id].result == {
            "echo": "cut off",
            "tool": ECHO,
        }
        assert after[done.event_id] == finished  # untouched
        assert len(after) == 2 and (await bus.get_rule("echo")).fired == 2


async def test_a_rule_that_raises_while_matching_counts_match_errors_and_the_engine_moves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding(dict[str, Any]):
        """An object whose lookups raise, as a bug in a path would (only in process: no wire form)."""

        def get(self, *args: Any) -> Any:
            raise RuntimeError("boom")

    async with rules_on(tmp_path) as bus:
        await bus.register_rule(rule("reads-o", "in", match_fields={"o.k": "v"}), replace=False)
        await bus.register_rule(rule("reads-n", "in", match_fields={"n": 1}), replace=False)
        with caplog.at_level(logging.ERROR, logger="eventbus.rules"):
            poison = await bus.emit(EmitParams(topic="in", payload={"o": Exploding(), "n": 1}))
            fine = await bus.emit(EmitParams(topic="in", payload={"o": {"k": "v"}, "n": 1}))
            await settle(bus)
        fired = sorted((f.rule_id, f.event_id) for f in await firings(bus))

    assert fired == [
        ("reads-n", poison.event_id),
        ("reads-n", fine.event_id),
        ("reads-o", fine.event_id),
    ]
    assert engine_stats(bus)["match_errors"] == 1
    (logged,) = [r for r in caplog.records if "raised while matching" in r.getMessage()]
    assert f"rule=reads-o raised while matching event={poison.event_id}" in logged.getMessage()


async def test_a_failing_tool_is_retried_per_its_policy_then_dead_lettered_logged_and_redriven(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus.rules")
    python_tools.reset(fail_first=99)
    async with rules_on(tmp_path, kind, retry={"attempts": 4, "backoff_ms": 1}) as bus:
        await bus.register_rule(rule("bus-policy", "t", FLAKY), replace=False)
        await bus.register_rule(
            rule("own-policy", "t", FLAKY, retry={"attempts": 2, "backoff_ms": 1}), replace=False
        )
        event = await bus.emit(EmitParams(topic="t", payload=1))
        await settle(bus)

        dead = {f.rule_id: f for f in await firings(bus)}
        assert {r: (f.status, f.attempts) for r, f in dead.items()} == {
            "bus-policy": ("failed", 4),
            "own-policy": ("failed", 2),
        }
        assert dict(python_tools.PER_FIRING) == {
            dead["bus-policy"].firing_id: 4,
            dead["own-policy"].firing_id: 2,
        }
        assert dead["bus-policy"].error.endswith("raised RuntimeError: try 4 failed on purpose")
        assert engine_stats(bus)["failed"] == 2
        assert (await bus.get_rule("bus-policy")).failed == 1
        # A dead letter is logged once, at WARNING, with what an operator needs to find it.
        (line,) = [
            r
            for r in caplog.records
            if "rule=bus-policy" in r.getMessage() and "failed after" in r.getMessage()
        ]
        assert line.levelno == logging.WARNING
        assert (
            f"event={event.event_id} firing={dead['bus-policy'].firing_id} failed after 4 attempts"
            in line.getMessage()
        )

        python_tools.STATE["fail_first"] = 0  # the tool is fixed
        assert (
            await bus.retry_firings(FiringSelection(firing_ids=(dead["bus-policy"].firing_id,)))
            == 1
        )
        await settle(bus)
        again = {f.rule_id: f for f in await firings(bus)}
        redriven = again["bus-policy"]
        assert (redriven.firing_id, redriven.status, redriven.attempts) == (
            dead["bus-policy"].firing_id,
            "ok",
            5,
        )
        assert redriven.result == {"tries": 5}
        assert again["own-policy"] == dead["own-policy"]  # not selected: still a dead letter
        rule_now = await bus.get_rule("bus-policy")
        assert (rule_now.fired, rule_now.failed) == (1, 0)
        assert (
            await bus.retry_firings(FiringSelection(firing_ids=(redriven.firing_id,))) == 0
        )  # ok now: nothing to redrive


async def test_events_after_the_saved_cursor_are_matched_at_start(tmp_path: Path) -> None:
    """A crash after events committed but before the engine claimed them (or saved its cursor)."""
    async with rules_on(tmp_path, "sqlite") as bus:
        await bus.register_rule(rule("echo", "t"), replace=False)
        await bus.emit(EmitParams(topic="other", payload=0))
        await settle(bus)
    storage = SqliteStorage(tmp_path / "rules.db")
    await storage.open()
    unmatched = await storage.append([NewEvent("t", i, T0) for i in range(3)])
    assert await storage.load_cursor() < unmatched[0].event_id
    await storage.close()

    async with rules_on(tmp_path, "sqlite") as bus:
        await settle(bus)  # nothing else commits to wake the engine
        assert sorted(f.event_id for f in await firings(bus)) == [e.event_id for e in unmatched]
