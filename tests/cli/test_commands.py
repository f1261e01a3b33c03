"""Every `eventbus` command as a user runs it: a real subprocess against a real bus."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventbus_cli.main import app as cli_app
from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.ports import closed_port
from tests.processes import ServerProcess

from .terminal import Terminal
from .test_cli_basic import EVENTBUS, run_cli

ROUTES = [
    {
        "match": "trn:user:test:python:*",
        "kind": "python",
        "function": "tests.rules.python_tools:echo",
    }
]


@pytest.fixture
async def cli_app_bus(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    """A SQLite bus with rules, and a plain memory bus, in this process."""
    buses = [
        {
            "id": "main",
            "persist": True,
            "storage_path": str(tmp_path / "main.db"),
            "enable_rules": True,
            "tools": ROUTES,
            "retry": {"attempts": 1, "backoff_ms": 1},
        },
        {"id": "plain"},
    ]
    async with start_buses(tmp_path, *buses) as running:
        yield running


@pytest.fixture
async def bus(cli_app_bus: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(cli_app_bus.url("main")) as client:
        yield client


def ndjson(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *EVENTBUS,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


async def read_lines(
    proc: asyncio.subprocess.Process, count: int, timeout_s: float = 15.0
) -> list[Any]:
    assert proc.stdout is not None
    lines = []
    async with asyncio.timeout(timeout_s):
        while len(lines) < count:
            line = await proc.stdout.readline()
            assert line, "the command ended early"
            lines.append(json.loads(line))
    return lines


async def following(proc: asyncio.subprocess.Process) -> str:
    """Wait until the command says on stderr that it follows (it has subscribed)."""
    assert proc.stderr is not None
    async with asyncio.timeout(15):
        while b"following" not in (line := await proc.stderr.readline()):
            assert line, "the command ended before it followed anything"
    return line.decode()


async def interrupt(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


# -- emit --ndjson ----------------------------------------------------------------


async def test_emit_ndjson_sends_stdin_lines_in_batches(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    lines = "".join(json.dumps({"n": i}) + "\n" for i in range(1200)).encode()
    code, out, err = await run_cli(
        "emit",
        "jobs.bulk",
        "--ndjson",
        "--batch-size",
        "500",
        "--source-trn",
        "trn:user:a:cli:v1",
        "--url",
        cli_app_bus.url("main"),
        "--json",
        stdin=lines,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["emitted"] == 1200
    stored = (await bus.poll("jobs.bulk", limit=2000)).events
    assert [e.payload["n"] for e in stored] == list(range(1200))
    assert {e.source_trn for e in stored} == {"trn:user:a:cli:v1"}
    assert (summary["first_event_id"], summary["last_event_id"]) == (
        stored[0].event_id,
        stored[-1].event_id,
    )


async def test_emit_ndjson_names_the_bad_line(cli_app_bus: EventBusApp) -> None:
    code, _, err = await run_cli(
        "emit",
        "jobs.bulk",
        "--ndjson",
        "--url",
        cli_app_bus.url("main"),
        stdin=b'{"n": 1}\n{"n": 2}\nnot json\n',
    )
    assert code == 2
    assert "stdin line 3 is not valid JSON" in err and "Traceback" not in err


# -- history --------------------------------------------------------------------------


async def test_history_filters_by_trn_correlation_time_and_order(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    await bus.emit(
        "a.x",
        1,
        source_trn="trn:user:alice:cli:v1",
        target_trn="trn:org:acme:svc:v1",
        correlation_id="c1",
    )
    await bus.emit("a.x", 2, source_trn="trn:org:acme:ci:v1", target_trn="trn:user:bob:inbox:v1")
    await bus.emit("b.y", 3, source_trn="trn:user:bob:cli:v1", correlation_id="c1")
    url = cli_app_bus.url("main")

    async def payloads(*args: str) -> list[Any]:
        code, out, err = await run_cli("history", *args, "--url", url)
        assert code == 0, err
        return [e["payload"] for e in ndjson(out)]

    assert await payloads("--source-trn", "trn:user:") == [1, 3]
    assert await payloads("--source-trn", "trn:user:*:cli:*") == [1, 3]
    assert await payloads("--target-trn", "trn:user:bob:") == [2]
    assert await payloads("--correlation-id", "c1", "--topic", "a.>") == [1]
    assert await payloads("--order", "desc", "--limit", "2") == [3, 2]
    assert await payloads("--since", "1h") == [1, 2, 3]
    assert await payloads("--until", "2001-01-01") == []
    code, _, err = await run_cli("history", "--since", "yesterday-ish", "--url", url)
    assert code == 2 and "--since 'yesterday-ish' is not a time" in err


async def test_history_says_when_more_events_match_than_the_limit(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    await bus.emit_many([{"topic": "many.h", "payload": i} for i in range(5)])
    url = cli_app_bus.url("main")
    code, out, err = await run_cli("history", "--topic", "many.h", "--limit", "3", "--url", url)
    assert code == 0, err
    assert [e["payload"] for e in ndjson(out)] == [0, 1, 2]  # stdout stays NDJSON
    (line,) = err.splitlines()
    assert "the oldest 3 events; more match" in line and "--limit" in line
    code, out, err = await run_cli(
        "history", "--topic", "many.h", "--limit", "3", "--order", "desc", "--url", url
    )
    assert [e["payload"] for e in ndjson(out)] == [
        4,
        3,
        2,
    ] and "the newest 3 events; more match" in err
    code, out, err = await run_cli("history", "--topic", "many.h", "--limit", "5", "--url", url)
    assert (code, len(ndjson(out)), err) == (0, 5, "")  # exactly all of them: nothing more to say


async def test_history_on_a_terminal_counts_and_hints(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    await bus.emit_many([{"topic": "term.h", "payload": i} for i in range(4)])
    terminal = Terminal()
    try:
        await terminal.start(
            "history", "--topic", "term.h", "--limit", "2", "--url", cli_app_bus.url("main")
        )
        text = await terminal.wait_for(r"more match.*\n")
        assert "the oldest 2 events; more match: raise --limit (e.g. --limit 20)" in text
    finally:
        await terminal.close()


async def test_history_until_before_since_is_a_usage_error(cli_app_bus: EventBusApp) -> None:
    code, out, err = await run_cli(
        "history", "--since", "10m", "--until", "1h", "--url", cli_app_bus.url("main")
    )
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert "--until 1h" in line and "is before --since 10m" in line
    code, _, err = await run_cli("history", "--order", "sideways", "--url", cli_app_bus.url("main"))
    assert code == 2 and "--order" in err


# -- tail -------------------------------------------------------------------------------


async def test_tail_shows_only_matching_sources_and_ctrl_c_exits_0(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    proc = await start_cli(
        "tail", "--source-trn", "trn:user:", "--json", "--url", cli_app_bus.url("main")
    )
    await following(proc)
    await bus.emit("t.a", 1, source_trn="trn:org:acme:ci:v1")
    await bus.emit("t.a", 2, source_trn="trn:user:alice:cli:v1")
    await bus.emit("t.a", 3)
    await bus.emit("t.b", 4, source_trn="trn:user:bob:cli:v1")
    events = await read_lines(proc, 2)
    assert [e["payload"] for e in events] == [2, 4]
    code, err = await interrupt(proc)
    assert code == 0 and "stopped: 2 events" in err and "Traceback" not in err


async def test_tail_from_start_and_since(cli_app_bus: EventBusApp, bus: EventBusClient) -> None:
    ids = await bus.emit_many([{"topic": "s.x", "payload": i} for i in range(4)])
    proc = await start_cli(
        "tail", "s.>", "--since", str(ids[1]), "--json", "--url", cli_app_bus.url("main")
    )
    assert [e["payload"] for e in await read_lines(proc, 2)] == [2, 3]
    await interrupt(proc)
    code, _, err = await run_cli(
        "tail", "--since", "1", "--from-start", "--url", cli_app_bus.url("main")
    )
    assert code == 2 and "either --since N or --from-start" in err


@pytest.mark.slow
async def test_tail_survives_a_server_restart_without_gaps_or_duplicates(tmp_path: Path) -> None:
    port = closed_port()
    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps(
            [{"id": "r", "listen": f"127.0.0.1:{port}", "persist": True, "storage_path": "r.db"}]
        )
    )
    server = await ServerProcess.start(config)
    tail = await start_cli("tail", "--json", "--url", f"tcp://127.0.0.1:{port}")
    try:
        await following(tail)
        async with await connect(server.url("r")) as client:
            await client.emit_many([{"topic": "r.x", "payload": i} for i in range(3)])
        first = await read_lines(tail, 3)
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()
        server = await ServerProcess.start(config)
        async with await connect(server.url("r")) as client:
            await client.emit_many([{"topic": "r.x", "payload": i} for i in range(3, 6)])
        second = await read_lines(tail, 3, timeout_s=30)
        events = first + second
        assert [e["payload"] for e in events] == list(range(6))
        assert [e["event_id"] for e in events] == sorted({e["event_id"] for e in events})
        code, err = await interrupt(tail)
        assert code == 0 and "stopped: 6 events" in err
        assert "connection to tcp://127.0.0.1:" in err and "lost; reconnecting" in err
        assert (
            f"reconnected to tcp://127.0.0.1:{port}; resuming after #{first[-1]['event_id']}" in err
        )
    finally:
        if tail.returncode is None:
            tail.kill()
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()


# -- topics, info --------------------------------------------------------------------------


async def test_topics_and_info(
    cli_app_bus: EventBusApp, bus: EventBusClient, tmp_path: Path
) -> None:
    await bus.emit_many(
        [
            {"topic": "t.one", "payload": 1},
            {"topic": "t.two", "payload": 2},
            {"topic": "t.two", "payload": 3},
        ]
    )
    code, out, err = await run_cli("topics", "--url", cli_app_bus.url("main"))
    assert code == 0, err
    assert {t["topic"]: t["count"] for t in ndjson(out)} == {"t.one": 1, "t.two": 2}

    config = tmp_path / "buses.json"
    host, port = cli_app_bus.address("main")
    config.write_text(
        json.dumps(
            [
                {"id": "main", "listen": f"{host}:{port}"},
                {"id": "gone", "listen": f"127.0.0.1:{closed_port()}"},
            ]
        )
    )
    code, out, err = await run_cli("info", "--config", str(config))
    assert code == 3  # one bus could not be reached; the other is still shown
    rows = {row["id"]: row for row in ndjson(out)}
    assert rows["main"]["stats"]["last_event_id"] == 3 and rows["gone"]["reachable"] is False
    code, out, _ = await run_cli("info", "--bus", "main", "--config", str(config))
    assert code == 0 and ndjson(out)[0]["enable_rules"] is True


# -- rules -------------------------------------------------------------------------------------


async def test_rules_lifecycle_from_flags_and_files(
    cli_app_bus: EventBusApp, bus: EventBusClient, tmp_path: Path
) -> None:
    url = cli_app_bus.url("main")

    async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        return await run_cli("rules", *args, "--url", url, stdin=stdin)

    code, out, err = await cli(
        "add",
        "--id",
        "fetch",
        "--topic",
        "repo.*",
        "--match",
        "branch=main",
        "--match",
        'size={"numeric": [">", 0]}',
        "--invoke",
        "trn:user:test:python:echo:v1",
        "--input",
        '{"repo": "{{ $.payload.repo }}"}',
    )
    assert code == 0, err
    rule = await bus.get_rule("fetch")
    assert rule["match_fields"] == {"branch": "main", "size": {"numeric": [">", 0]}}
    assert rule["action"]["input"] == {"repo": "{{ $.payload.repo }}"}

    (tmp_path / "rule.json").write_text(
        json.dumps(
            {
                "id": "big",
                "topic": "orders.created",
                "pattern": {"payload": {"total": [{"numeric": [">=", 100]}]}},
                "action": {"type": "EmitEvent", "topic": "orders.big"},
            }
        )
    )
    assert (await cli("add", str(tmp_path / "rule.json")))[0] == 0
    code, _, err = await cli("add", str(tmp_path / "rule.json"))
    assert code == 1 and "already exists" in err and "replace" in err
    assert (await cli("add", "-", "--replace", stdin=(tmp_path / "rule.json").read_bytes()))[0] == 0

    code, out, _ = await cli("list")
    assert [r["id"] for r in ndjson(out)] == ["big", "fetch"]
    code, out, _ = await cli("show", "big")
    assert ndjson(out)[0]["pattern"] == {"payload": {"total": [{"numeric": [">=", 100]}]}}

    code, out, err = await run_cli(
        "rules",
        "test",
        "fetch",
        "--event",
        '{"topic": "repo.pushed", "payload": {"branch": "dev", "repo": "acme/api"}}',
        "--url",
        url,
        env={"FORCE_COLOR": "0"},
    )
    assert code == 1, err  # not matched: exit 1, like grep
    result = ndjson(out)[0]
    assert result["matched"] is False
    assert [(f["path"], f["missing"]) for f in result["failures"]] == [
        ("branch", False),
        ("size", True),
    ]
    assert result["action"]["input"] == {"repo": "acme/api"}
    code, out, _ = await cli(
        "test",
        str(tmp_path / "rule.json"),
        "--event",
        '{"topic": "orders.created", "payload": {"total": 120}}',
    )
    assert code == 0 and ndjson(out)[0]["matched"] is True

    code, out, err = await cli("disable", "fetch", "--json")
    assert (code, ndjson(out)) == (0, [{"id": "fetch", "enabled": False}]), err
    assert (await bus.get_rule("fetch"))["enabled"] is False
    code, out, _ = await cli("enable", "fetch", "--json")
    assert (code, ndjson(out)) == (0, [{"id": "fetch", "enabled": True}])
    assert (await bus.get_rule("fetch"))["enabled"] is True
    code, out, _ = await cli("rm", "fetch", "--json")
    assert (code, ndjson(out)) == (0, [{"id": "fetch", "deleted": True}])
    code, _, err = await cli("show", "fetch")
    assert code == 1 and "no rule 'fetch'" in err


async def test_rule_errors_and_disabled_buses_say_what_is_wrong(cli_app_bus: EventBusApp) -> None:
    code, _, err = await run_cli(
        "rules",
        "add",
        "--id",
        "r",
        "--match",
        'size={"numerc": 1}',
        "--emit",
        "x",
        "--url",
        cli_app_bus.url("main"),
    )
    assert code == 1 and "match_fields.size: unknown operator 'numerc'" in err
    code, _, err = await run_cli("rules", "add", "--id", "r", "--url", cli_app_bus.url("main"))
    assert code == 2 and "exactly one action" in err
    code, _, err = await run_cli("rules", "list", "--url", cli_app_bus.url("plain"))
    assert code == 1 and "rules are disabled on bus 'plain'" in err


def test_rules_add_argument_handling() -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["rules", "add", "--url", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "give a rule FILE" in result.output
    result = runner.invoke(
        cli_app, ["rules", "add", "x.json", "--id", "r", "--url", "tcp://127.0.0.1:1"]
    )
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(
        cli_app,
        ["rules", "add", "--id", "r", "--emit", "t", "--input", "{}", "--url", "tcp://127.0.0.1:1"],
    )
    assert result.exit_code == 2 and "--input goes with --invoke" in result.output


# -- firings --------------------------------------------------------------------------------------


async def test_firings_lists_dead_letters_and_follows(
    cli_app_bus: EventBusApp, bus: EventBusClient
) -> None:
    await bus.register_rule(
        {
            "id": "ok",
            "topic": "f.ok",
            "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:echo:v1"},
        }
    )
    await bus.register_rule(
        {
            "id": "lost",
            "topic": "f.lost",
            "action": {"type": "InvokeTool", "tool_id": "trn:user:nobody:tool:v1"},
        }
    )
    await bus.emit("f.ok", 1)
    await bus.emit("f.lost", 2)
    await cli_app_bus.buses["main"].wait_idle()
    url = cli_app_bus.url("main")

    code, out, err = await run_cli("firings", "--url", url)
    assert code == 0, err
    assert sorted((f["rule_id"], f["status"]) for f in ndjson(out)) == [
        ("lost", "failed"),
        ("ok", "ok"),
    ]
    code, out, _ = await run_cli("firings", "--failed", "--url", url)
    (dead,) = ndjson(out)
    assert dead["rule_id"] == "lost" and "no tool route" in dead["error"].lower()

    proc = await start_cli("firings", "--follow", "--rule", "ok", "--json", "--url", url)
    assert [f["status"] for f in await read_lines(proc, 1)] == ["ok"]  # the listed one
    await following(proc)
    await bus.emit("f.ok", 3)
    (live,) = await read_lines(proc, 1)
    assert live["rule_id"] == "ok" and live["status"] == "ok"
    code, err = await interrupt(proc)
    assert code == 0 and "stopped: 1 firing" in err


# -- unreachable -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["tail"],
        ["history"],
        ["topics"],
        ["rules", "list"],
        ["firings"],
        ["replay", "--since", "1h"],
    ],
)
async def test_an_unreachable_bus_is_exit_3(command: list[str]) -> None:
    code, _, err = await run_cli(*command, "--url", f"tcp://127.0.0.1:{closed_port()}")
    assert code == 3, err
    assert "cannot reach" in err and "Traceback" not in err


def test_every_command_has_examples_in_its_help() -> None:
    commands = [
        ["serve"],
        ["emit"],
        ["poll"],
        ["tail"],
        ["history"],
        ["replay"],
        ["topics"],
        ["info"],
        ["firings"],
        ["firings", "retry"],
        ["rules", "add"],
        ["rules", "list"],
        ["rules", "show"],
        ["rules", "rm"],
        ["rules", "enable"],
        ["rules", "disable"],
        ["rules", "test"],
        ["ui"],
    ]
    for command in commands:
        result = CliRunner().invoke(cli_app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "Examples" in result.output and f"eventbus {' '.join(command)}" in result.output, (
            command
        )
