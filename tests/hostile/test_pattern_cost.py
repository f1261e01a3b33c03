"""Hostile rules and events against a real server: matching never stalls.

Before: the wildcard `*a*a*a*a*b` against 400 `a`s froze every bus of the
process for 48 s (a backtracking regex on the event loop), and an event
whose matching raised was re-read from the engine's cursor forever. Here a
second bus answers `ping` throughout, and its worst latency is asserted
against a generous bound (the old code took minutes), under a timeout so a
regression fails instead of hanging.

Matching runs on the engine, whatever the storage; what the storage changes is
where a restarted engine finds the events after its cursor. The last test
does the issue's attack in a server process on memory, SQLite and PostgreSQL,
and on the two stores restarts with the poison events after the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_core.codec import MAX_NESTING
from eventbus_core.errors import InvalidParams
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.wire import RawPeer

from .conftest import (
    HostileServer,
    assert_clean_log,
    assert_pings_answered,
    hostile_server,
    victim_bus,
)
from .conftest import pinging as hostile_pinging

#: Worst `ping` latency on the other bus while one bus matches: generous, a liveness bound.
PING_BOUND_S = 1.0
#: Past this a test that is stuck in C code ends the whole run (see `hard_deadline`).
HARD_DEADLINE_S = 45

RULES_BUS = {"id": "rules", "enable_rules": True, "persist": False}
OTHER_BUS = {"id": "other", "persist": False}


def emit_rule(rule_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "topic": "t",
        **fields,
        "action": {"type": "EmitEvent", "topic": "t.out", "payload": 1},
    }


class PingWatch:
    """Pings a bus back to back and keeps the slowest answer."""

    def __init__(self, client: EventBusClient) -> None:
        self.client = client
        self.worst_s = 0.0
        self.pings = 0
        self._first = asyncio.Event()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            assert await self.client.ping() == "pong"
            self.worst_s = max(self.worst_s, time.monotonic() - started)
            self.pings += 1
            self._first.set()

    async def started(self) -> None:
        await self._first.wait()


@contextlib.asynccontextmanager
async def pinging(app: EventBusApp) -> AsyncIterator[PingWatch]:
    """Ping the other bus for as long as the block runs."""
    async with await connect(app.url("other")) as other:
        watch = PingWatch(other)
        task = asyncio.create_task(watch.run())
        await watch.started()
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture(autouse=True)
def hard_deadline(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """A watchdog for what pytest-timeout cannot stop: a regex backtracking in C
    holds the GIL, so neither its signal nor its thread gets to run. The
    faulthandler thread needs no GIL: it dumps every stack and exits the run."""
    with capsys.disabled():
        stderr = os.dup(2)  # the terminal's, not the capture's (lost at exit)
    faulthandler.dump_traceback_later(HARD_DEADLINE_S, exit=True, file=stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        os.close(stderr)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, RULES_BUS, OTHER_BUS) as running:
        yield running


async def fired(client: EventBusClient) -> dict[str, int]:
    return {rule["id"]: rule["fired"] for rule in await client.list_rules()}


@pytest.mark.timeout(30)
async def test_a_backtracking_wildcard_against_a_long_string_does_not_stall_the_process(
    app: EventBusApp,
) -> None:
    async with await connect(app.url("rules")) as bus:
        await bus.register_rule(
            emit_rule("r", pattern={"payload": {"s": [{"wildcard": "*a*a*a*a*b"}]}})
        )
        async with pinging(app) as watch:
            await bus.emit("t", {"s": "a" * 100_000})
            await app.buses["rules"].wait_idle()
        assert await fired(bus) == {"r": 0}
        assert await bus.list_firings() == []
    assert watch.worst_s < PING_BOUND_S, f"ping took {watch.worst_s:.2f}s while the rule matched"


@pytest.mark.timeout(30)
async def test_a_heavy_batch_gives_other_connections_their_turn(app: EventBusApp) -> None:
    # 300 rules times 1,000 events in one batch, each pair a JSONPath lookup
    # (jsonpath-ng, some microseconds): seconds of matching, which without
    # turns would hold every connection of the process.
    rules, events = 300, 1000
    async with await connect(app.url("rules")) as bus:
        for index in range(rules):
            await bus.register_rule(
                emit_rule(f"r{index}", match_fields={"$.payload['s']": {"wildcard": f"*x{index}*"}})
            )
        async with pinging(app) as watch:
            await bus.emit_many(
                [{"topic": "t", "payload": {"s": "a" * 200}} for _ in range(events)]
            )
            await app.buses["rules"].wait_idle()
        assert set((await fired(bus)).values()) == {0}
    assert watch.worst_s < PING_BOUND_S, (
        f"ping took {watch.worst_s:.2f}s during the batch ({watch.pings} pings)"
    )


def deep(depth: int, inner: str, *, opening: str, closing: str) -> str:
    return opening * depth + inner + closing * depth


@pytest.mark.timeout(30)
async def test_deeply_nested_events_do_not_stop_later_events_from_firing(app: EventBusApp) -> None:
    # The bus refuses requests nested deeper than MAX_NESTING (200) at the door; 1,015
    # levels (the JSON parser takes 1,024) once got past Python's recursion limit in a
    # recursive walk, and the engine retried the event forever. At the deepest the
    # door lets in, every rule still matches and later events still fire.
    async with await connect(app.url("rules")) as bus:
        await bus.register_rule(emit_rule("deep-array", pattern={"payload": {"a": [1]}}))
        await bus.register_rule(emit_rule("descendants", match_fields={"$..x": 7}))
        await bus.register_rule(emit_rule("later", match_fields={"n": 2}))
        # The client cannot encode deep nesting (its JSON encoder stops at 255), so: raw lines.
        peer = await RawPeer.open(app.address("rules"))
        try:
            for depth, accepted in ((1015, False), (MAX_NESTING - 3, True)):
                for payload in (
                    '{"a":' + deep(depth, "1", opening="[", closing="]") + "}",
                    deep(depth + 1, "7", opening='{"x":', closing="}"),
                ):
                    line = (
                        '{"jsonrpc":"2.0","id":1,"method":"emit_event","params":{"topic":"t","payload":'
                        + payload
                        + "}}\n"
                    )
                    reply = await peer.call_line(line)
                    if accepted:
                        assert "result" in reply, reply
                    else:
                        assert reply["error"]["code"] == -32600, reply
                        assert (
                            f"nested deeper than {MAX_NESTING} levels" in reply["error"]["message"]
                        )
        finally:
            await peer.close()
        await bus.emit("t", {"n": 2})
        await app.buses["rules"].wait_idle()
        assert await fired(bus) == {"deep-array": 1, "descendants": 1, "later": 1}


@pytest.mark.parametrize(
    ("rule", "loc"),
    [
        (
            emit_rule(
                "re", match_fields={"$.payload.items[?(@.name =~ '(a+)+$')]": {"exists": True}}
            ),
            "match_fields.$.payload.items[?(@.name =~ '(a+)+$')]",
        ),
        (
            emit_rule("many", pattern={"payload": {"s": [{"prefix": f"p{i}"} for i in range(65)]}}),
            "pattern",
        ),
        (
            emit_rule("wide", match_fields={"s": [f"value-{i:06}" for i in range(2000)]}),
            "match_fields",
        ),
    ],
    ids=["jsonpath regex", "too many tests", "too large"],
)
async def test_rules_that_cannot_be_matched_cheaply_are_refused(
    app: EventBusApp, rule: dict[str, Any], loc: str
) -> None:
    async with await connect(app.url("rules")) as bus:
        with pytest.raises(InvalidParams) as raised:
            await bus.register_rule(rule)
        assert raised.value.code == -32602
        assert [item["loc"] for item in raised.value.data] == [loc]
        assert await bus.list_rules() == []


@pytest.mark.timeout(30)
async def test_a_jsonpath_that_walks_the_whole_event_is_matched_off_the_event_loop(
    app: EventBusApp,
) -> None:
    # `$..needle` visits every node, ~1 µs each, in one call that cannot be cut:
    # ten rules over this event hold a loop for seconds. Matched in a worker
    # thread, the loop keeps answering meanwhile.
    async with await connect(app.url("rules")) as bus:
        for index in range(10):
            # Ten paths, ten walks (one path is walked once for all the rules that share it).
            await bus.register_rule(
                emit_rule(f"walk{index}", match_fields={f"$..needle{index}": 1})
            )
        big = {"items": [{"k": i, "v": [i, i]} for i in range(30_000)]}  # just under 1 MiB
        async with pinging(app) as watch:
            await bus.emit("t", big)
            await app.buses["rules"].wait_idle()
        assert set((await fired(bus)).values()) == {0}
        await bus.emit("t", {"deep": {"er": [{f"needle{index}": 1 for index in range(10)}]}})
        await app.buses["rules"].wait_idle()
        assert set((await fired(bus)).values()) == {1}
    assert watch.worst_s < PING_BOUND_S, (
        f"ping took {watch.worst_s:.2f}s while JSONPaths walked the event"
    )


async def test_a_field_with_more_values_than_a_rule_may_test_does_not_match(
    app: EventBusApp,
) -> None:
    from eventbus_server.rules.lang.limits import MAX_FIELD_VALUES

    async with await connect(app.url("rules")) as bus:
        await bus.register_rule(
            emit_rule("positive", pattern={"payload": {"a": [{"numeric": [">", 0]}]}})
        )
        await bus.register_rule(emit_rule("listed", match_fields={"a": {"numeric": [">", 0]}}))
        await bus.emit("t", {"a": list(range(1, MAX_FIELD_VALUES + 2))})  # one value too many
        await bus.emit("t", {"a": list(range(1, MAX_FIELD_VALUES + 1))})  # at the cap
        await app.buses["rules"].wait_idle()
        assert await fired(bus) == {"positive": 1, "listed": 1}
        stats = (await bus.bus_info())["stats"]["firings"]
        assert stats["match_too_large"] == 2 and stats["match_errors"] == 0


async def fired_of(server: HostileServer, rule_id: str) -> int:
    async with await connect(server.url("victim")) as client:
        return int((await client.get_rule(rule_id))["fired"])


@pytest.mark.timeout(120)
async def test_the_backtracking_wildcard_after_a_restart_with_the_engines_cursor_before_it(
    storage_kind: str, tmp_path: Path
) -> None:
    """The issue's attack on a real server process: the wildcard against 2,000 `a`s
    froze every bus of the process for minutes, and again after kill -9 and restart,
    since the engine's cursor was still before the event. On SQLite and PostgreSQL the
    events are stored after the cursor (by a run without rules, then killed), and the
    restarted engine reads them from storage and matches them while both buses answer."""
    rule = emit_rule("r", pattern={"payload": {"s": [{"wildcard": "*a*a*a*a*b"}]}})
    poison = [{"topic": "t", "payload": {"s": "a" * 2000}} for _ in range(20)]
    victim = victim_bus(storage_kind, tmp_path, enable_rules=True)
    if storage_kind == "memory":
        async with hostile_server(tmp_path, victim) as server:
            async with await connect(server.url("victim")) as client:
                await client.register_rule(rule)
                async with hostile_pinging(server) as monitors:
                    await client.emit_many([*poison, {"topic": "t", "payload": {"s": "aaaab"}}])
                    async with asyncio.timeout(30):
                        while await fired_of(server, "r") < 1:
                            await asyncio.sleep(0.05)
            assert_pings_answered(monitors)
        assert_clean_log(server)
        return
    async with hostile_server(tmp_path, victim) as server:
        async with await connect(server.url("victim")) as client:
            # A first firing claims, and so saves the engine's cursor, here.
            await client.register_rule(rule)
            await client.emit("t", {"s": "aaaab"})
            async with asyncio.timeout(30):
                while await fired_of(server, "r") < 1:
                    await asyncio.sleep(0.05)
    async with hostile_server(tmp_path, {**victim, "enable_rules": False}) as server:
        async with await connect(server.url("victim")) as client:
            await client.emit_many([*poison, {"topic": "t", "payload": {"s": "aaaab"}}])
        server.process.proc.kill()  # kill -9: nothing is saved at stop
    async with hostile_server(tmp_path, victim) as server:
        async with hostile_pinging(server) as monitors:
            async with asyncio.timeout(30):
                while await fired_of(server, "r") < 2:  # past the poison, to the last event
                    await asyncio.sleep(0.05)
        assert_pings_answered(monitors)
        assert await fired_of(server, "r") == 2
    assert_clean_log(server)
