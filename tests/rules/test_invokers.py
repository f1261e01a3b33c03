"""Each invoker kind behind a rule, over the wire: a real HTTP tool, a real
JSON-RPC tool server and a real subprocess, configured as the bus's `tools`
routes. Success with a result topic, retries that end in success, timeouts
and errors that end as dead letters."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect
from tests.conftest import start_buses
from tests.router.tool_servers import (
    ECHO_SCRIPT,
    Handler,
    HttpTool,
    JsonRpcTool,
    echo,
    fail,
    fail_first,
    python_argv,
    slow,
)

from .conftest import rules_bus, settle

TOOL = "trn:user:alice:tool:deploy:v1"
SERVER_KINDS = ["http", "jsonrpc"]


@contextlib.asynccontextmanager
async def tool_server(kind: str, handler: Handler) -> AsyncIterator[HttpTool | JsonRpcTool]:
    server = HttpTool(handler) if kind == "http" else JsonRpcTool(handler)
    async with server:
        yield server


def route_config(server: HttpTool | JsonRpcTool, **extra: Any) -> dict[str, Any]:
    return server.route("trn:user:alice:tool:*", **extra).model_dump(exclude_none=True, mode="json")


def invoke_rule(retry: dict[str, int] | None = None, **action: Any) -> dict[str, Any]:
    rule = {
        "id": "deploy",
        "topic": "deploy.requested",
        "action": {"type": "InvokeTool", "tool_id": TOOL, "input": {"service": "{{ $.payload.service }}"}, **action},
    }
    return rule if retry is None else {**rule, "retry": retry}


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_tool_server_gets_the_call_and_its_reply_becomes_the_result_event(kind: str, tmp_path: Path) -> None:
    async with tool_server(kind, echo()) as server:
        config = rules_bus("sqlite", tmp_path, tools=[route_config(server)])
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            await bus.register_rule(invoke_rule(result_topic="deploy.done"))
            cause = await bus.emit("deploy.requested", {"service": "api"}, correlation_id="rel-7")
            await settle(app)

            (body,) = server.calls
            assert body["tool_id"] == TOOL and body["input"] == {"service": "api"}
            assert body["event"]["event_id"] == cause.event_id
            (result,) = (await bus.poll("deploy.done")).events
            assert result.payload == body  # the echo tool replies with what it got
            assert (result.source_trn, result.correlation_id) == (TOOL, "rel-7")
            (firing,) = await bus.list_firings()
            assert (firing["status"], firing["attempts"]) == ("ok", 1)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_tool_errors_are_retried_and_then_succeed(kind: str, tmp_path: Path) -> None:
    async with tool_server(kind, fail_first(2, per_firing=True)) as server:
        config = rules_bus("memory", tmp_path, tools=[route_config(server)], retry={"attempts": 3, "backoff_ms": 5})
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            await bus.register_rule(invoke_rule())
            await bus.emit("deploy.requested", {"service": "api"})
            await settle(app)
            (firing,) = await bus.list_firings()
            assert (firing["status"], firing["attempts"]) == ("ok", 3)
            assert server.count(firing["firing_id"]) == 3


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_tool_that_keeps_failing_ends_as_a_dead_letter(kind: str, tmp_path: Path) -> None:
    async with tool_server(kind, fail("disk full")) as server:
        config = rules_bus("sqlite", tmp_path, tools=[route_config(server)])
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            await bus.register_rule(invoke_rule(retry={"attempts": 2, "backoff_ms": 1}))
            await bus.emit("deploy.requested", {"service": "api"})
            await settle(app)
            (dead,) = await bus.list_firings(status="failed")
            assert dead["attempts"] == 2 and "disk full" in dead["error"]
            assert len(server.calls) == 2
            assert (await bus.get_rule("deploy"))["failed"] == 1


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_slow_tool_times_out_per_attempt(kind: str, tmp_path: Path) -> None:
    async with tool_server(kind, slow(2.0)) as server:
        config = rules_bus("memory", tmp_path, tools=[route_config(server)])
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            await bus.register_rule(invoke_rule(timeout_ms=100, retry={"attempts": 2, "backoff_ms": 1}))
            await bus.emit("deploy.requested", {"service": "api"})
            await settle(app)
            (dead,) = await bus.list_firings(status="failed")
            assert dead["attempts"] == 2 and "100 ms" in dead["error"]
            assert dead["duration_ms"] < 2000  # it did not wait for the tool


async def test_a_command_tool_reads_the_call_on_stdin(tmp_path: Path) -> None:
    tools = [{"match": "trn:user:alice:tool:*", "kind": "command", "argv": list(python_argv(ECHO_SCRIPT))}]
    async with start_buses(tmp_path, rules_bus("sqlite", tmp_path, tools=tools)) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(invoke_rule(result_topic="deploy.done"))
        await bus.emit("deploy.requested", {"service": "web"})
        await settle(app)
        (result,) = (await bus.poll("deploy.done")).events
        assert result.payload["input"] == {"service": "web"} and result.payload["tool_id"] == TOOL


async def test_a_failing_command_tool_reports_its_exit_code_and_stderr(tmp_path: Path) -> None:
    script = "import sys; sys.stderr.write('no such service'); sys.exit(4)"
    tools = [{"match": "trn:user:alice:tool:*", "kind": "command", "argv": list(python_argv(script)), "timeout_ms": 5000}]
    async with start_buses(tmp_path, rules_bus("memory", tmp_path, tools=tools)) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(invoke_rule(retry={"attempts": 1, "backoff_ms": 1}))
        await bus.emit("deploy.requested", {"service": "web"})
        await settle(app)
        (dead,) = await bus.list_firings(status="failed")
        assert "exited with code 4" in dead["error"] and "no such service" in dead["error"]
