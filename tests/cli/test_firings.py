"""`eventbus firings --follow` and `eventbus firings retry` against a real bus."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.rules import python_tools

from .terminal import Terminal
from .test_cli_basic import run_cli
from .test_commands import following, interrupt, ndjson, read_lines, start_cli

FLAKY = {"type": "InvokeTool", "tool_id": "trn:user:test:flaky:v1"}
ECHO = {"type": "InvokeTool", "tool_id": "trn:user:test:echo:v1"}
ROUTES = [
    {
        "match": "trn:user:test:flaky:*",
        "kind": "python",
        "function": "tests.rules.python_tools:flaky",
    },
    {
        "match": "trn:user:test:echo:*",
        "kind": "python",
        "function": "tests.rules.python_tools:echo",
    },
]


@pytest.fixture
async def cli_app_bus(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    """A bus with rules that tries each firing once: a tool that fails makes a dead letter."""
    config = {
        "id": "main",
        "persist": True,
        "storage_path": str(tmp_path / "main.db"),
        "enable_rules": True,
        "tools": ROUTES,
        "retry": {"attempts": 1, "backoff_ms": 1},
    }
    async with start_buses(tmp_path, config) as running:
        yield running


@pytest.fixture
async def bus(cli_app_bus: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(cli_app_bus.url("main")) as client:
        yield client


async def test_follow_prints_one_line_per_firing_on_a_terminal(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    await bus.register_rule({"id": "seen", "topic": "lines.in", "action": ECHO})
    terminal = Terminal()
    try:
        proc = await terminal.start(
            "firings", "--follow", "--rule", "seen", "--url", cli_app_bus.url("main")
        )
        assert proc.stderr is not None
        assert b"following firings" in await asyncio.wait_for(proc.stderr.readline(), 15)
        listed = await terminal.wait_for(r"└[─┴]+┘\n")  # the table of what was there before
        await bus.emit("lines.in", {"n": 1})
        await bus.emit("lines.in", {"n": 2})
        text = await terminal.wait_for(r"(?s)#\d+ .*seen.* ok .*\n.*#\d+ .*seen.* ok .*\n")
        lines = [line for line in text.removeprefix(listed).splitlines() if line.startswith("#")]
        assert len(lines) == 2, text
        for line in lines:
            assert re.fullmatch(r"#\d+ \S+ \S+ seen event #\d+ ok \(1 try(, \d+ ms)?\) .*", line), (
                line
            )
        assert not any(ch in text.removeprefix(listed) for ch in "┏┃└│"), "a table per firing"
        code, err = await interrupt(proc)
        assert code == 0 and "stopped: 2 firings" in err
    finally:
        await terminal.close()


async def test_follow_piped_is_one_json_line_per_firing(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    await bus.register_rule({"id": "piped", "topic": "piped.in", "action": ECHO})
    proc = await start_cli(
        "firings", "--follow", "--rule", "piped", "--url", cli_app_bus.url("main")
    )
    try:
        assert proc.stderr is not None
        await following(proc)  # the command lists, then subscribes
        await bus.emit_many([{"topic": "piped.in", "payload": i} for i in range(3)])
        firings = await read_lines(proc, 3)
        assert [(f["rule_id"], f["status"]) for f in firings] == [("piped", "ok")] * 3
    finally:
        await interrupt(proc)


async def test_retry_runs_a_dead_letter_again_under_the_same_firing_id(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    python_tools.reset(fail_first=1)  # the first try of each firing fails; the bus allows one try
    await bus.register_rule({"id": "flaky", "topic": "flaky.in", "action": FLAKY})
    await bus.emit("flaky.in", 1)
    await bus.emit("flaky.in", 2)
    await cli_app_bus.buses["main"].wait_idle()
    dead = await bus.list_firings(rule_id="flaky", status="failed")
    assert len(dead) == 2
    url = cli_app_bus.url("main")

    code, out, err = await run_cli("firings", "retry", str(dead[0]["firing_id"]), "--url", url)
    assert code == 0, err
    assert ndjson(out) == [{"retried": 1}]
    await cli_app_bus.buses["main"].wait_idle()
    (first,) = [
        f for f in await bus.list_firings(rule_id="flaky") if f["firing_id"] == dead[0]["firing_id"]
    ]
    assert (first["status"], first["result"]) == ("ok", {"tries": 2})

    code, out, err = await run_cli("firings", "retry", "--rule", "flaky", "--failed", "--url", url)
    assert code == 0, err
    assert ndjson(out) == [{"retried": 1}]
    await cli_app_bus.buses["main"].wait_idle()
    firings = await bus.list_firings(rule_id="flaky")
    assert sorted((f["firing_id"], f["status"]) for f in firings) == sorted(
        (f["firing_id"], "ok") for f in dead
    )
    assert (await bus.get_rule("flaky"))["failed"] == 0

    code, out, _ = await run_cli("firings", "retry", "--url", url)  # nothing left to run again
    assert (code, ndjson(out)) == (0, [{"retried": 0}])


async def test_retry_says_how_many_on_a_terminal(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    python_tools.reset(fail_first=1)
    await bus.register_rule({"id": "flaky2", "topic": "flaky2.in", "action": FLAKY})
    await bus.emit("flaky2.in", 1)
    await cli_app_bus.buses["main"].wait_idle()
    (dead,) = await bus.list_firings(rule_id="flaky2", status="failed")
    terminal = Terminal()
    try:
        await terminal.start(
            "firings", "retry", str(dead["firing_id"]), "999999", "--url", cli_app_bus.url("main")
        )
        text = await terminal.wait_for(r"given are not dead letters\)")
        assert (
            "running 1 dead letter again on" in text
            and "(1 of the 2 given are not dead letters)" in text
        )
    finally:
        await terminal.close()


async def test_retry_takes_ids_or_a_rule_not_both(cli_app_bus: EventBusApp) -> None:
    code, _, err = await run_cli(
        "firings", "retry", "3", "--rule", "x", "--url", cli_app_bus.url("main")
    )
    assert code == 2 and "not both" in err
