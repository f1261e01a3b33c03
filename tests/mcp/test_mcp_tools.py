"""Rules call a real MCP tool server (tests/mcp/tool_server.py, written with the SDK)
through `mcp` tool routes, over stdio and over Streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect
from eventbus_core.errors import InvalidParams
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.ports import closed_port

from .tool_server import http_server

STDIO = [sys.executable, "-m", "tests.mcp.tool_server"]
REPO_ROOT = str(Path(__file__).resolve().parents[2])


def mcp_bus(route: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "rules",
        "enable_rules": True,
        "retry": {"attempts": 3, "backoff_ms": 1},
        "tools": [{"match": "trn:org:acme:mcp:*", "kind": "mcp", **route}],
    }


def stdio_route() -> dict[str, Any]:
    # The server imports `tests.mcp.tool_server`: run it from the repository's root.
    return {"command": [*STDIO], "env": {"PYTHONPATH": REPO_ROOT}}


@contextlib.asynccontextmanager
async def route_for(transport: str) -> AsyncIterator[dict[str, Any]]:
    if transport == "stdio":
        yield stdio_route()
    else:
        async with http_server() as url:
            yield {"url": url}


def echo_rule(**action: Any) -> dict[str, Any]:
    return {
        "id": "echo-on-push",
        "topic": "repo.pushed",
        "action": {
            "type": "InvokeTool",
            "tool_id": "trn:org:acme:mcp:tools:echo:v1",
            "input": {"repo": "{{ $.payload.repo }}", "note": "by {{ $.source_trn }}", "count": 3},
            **action,
        },
    }


async def settle(app: EventBusApp) -> None:
    await asyncio.wait_for(app.buses["rules"].wait_idle(), timeout=30)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_rule_calls_the_tool_with_the_rendered_input_and_meta(
    transport: str, tmp_path: Path
) -> None:
    async with route_for(transport) as route, start_buses(tmp_path, mcp_bus(route)) as app:
        async with await connect(app.url("rules")) as bus:
            await bus.register_rule(echo_rule(result_topic="repo.echoed"))
            cause = await bus.emit(
                "repo.pushed", {"repo": "acme/api"}, source_trn="trn:user:alice:cli:v1"
            )
            await settle(app)

            (firing,) = await bus.list_firings()
            assert (firing["status"], firing["attempts"]) == ("ok", 1), firing
            result = firing["result"]
            assert result["arguments"] == {
                "repo": "acme/api",
                "note": "by trn:user:alice:cli:v1",
                "count": 3,
            }
            assert result["meta"] == {
                "firing_id": firing["firing_id"],
                "event_id": cause.event_id,
                "rule_id": "echo-on-push",
            }
            (echoed,) = (await bus.poll("repo.echoed")).events
            assert echoed.payload == result
            assert echoed.source_trn == "trn:org:acme:mcp:tools:echo:v1"


async def test_the_call_carries_a_child_of_the_events_traceparent(tmp_path: Path) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with route_for("http") as route, start_buses(tmp_path, mcp_bus(route)) as app:
        async with await connect(app.url("rules")) as bus:
            await bus.register_rule(echo_rule())
            await bus.emit(
                "repo.pushed", {"repo": "acme/api"}, metadata={"traceparent": traceparent}
            )
            await settle(app)
            (firing,) = await bus.list_firings()
    sent = firing["result"]["meta"]["traceparent"]
    assert sent.split("-")[1] == traceparent.split("-")[1] and sent != traceparent


async def test_is_error_is_retried_then_the_firing_fails(tmp_path: Path) -> None:
    async with http_server() as url, start_buses(tmp_path, mcp_bus({"url": url})) as app:
        async with await connect(app.url("rules")) as bus:
            rule = echo_rule(
                tool_id="trn:org:acme:mcp:tools:fail:v1", input={"reason": "{{ $.payload.repo }}"}
            )
            await bus.register_rule(rule)
            await bus.emit("repo.pushed", {"repo": "acme/api"})
            await settle(app)

            (firing,) = await bus.list_firings()
            assert (firing["status"], firing["attempts"]) == ("failed", 3)
            assert "isError" in firing["error"] and "failed on purpose: acme/api" in firing["error"]


async def test_a_killed_server_is_started_again_and_shutdown_stops_it(tmp_path: Path) -> None:
    async with start_buses(tmp_path, mcp_bus(stdio_route())) as app:
        async with await connect(app.url("rules")) as bus:
            await bus.register_rule(echo_rule())
            await bus.emit("repo.pushed", {"repo": "one"})
            await settle(app)
            (first,) = await bus.list_firings()
            killed = first["result"]["pid"]
            os.kill(killed, signal.SIGKILL)

            await bus.emit("repo.pushed", {"repo": "two"})
            await settle(app)
            _, second = await bus.list_firings()
            assert second["status"] == "ok", second
            assert second["result"]["arguments"]["repo"] == "two"
            restarted = second["result"]["pid"]
            assert restarted != killed
    with pytest.raises(ProcessLookupError):
        os.kill(restarted, 0)  # the bus stopped it at shutdown


async def test_register_rule_checks_the_tool_and_the_literal_input(tmp_path: Path) -> None:
    async with (
        start_buses(tmp_path, mcp_bus(stdio_route())) as app,
        await connect(app.url("rules")) as bus,
    ):
        add = "trn:org:acme:mcp:tools:add:v1"
        with pytest.raises(InvalidParams) as bad_field:
            await bus.register_rule(echo_rule(tool_id=add, input={"a": "one", "b": 2}))
        assert "action.input.a" in bad_field.value.message and "integer" in bad_field.value.message
        assert bad_field.value.data == [
            {"loc": "action.input.a", "msg": "'one' is not of type 'integer'"}
        ]

        with pytest.raises(InvalidParams) as unknown:
            await bus.register_rule(echo_rule(tool_id="trn:org:acme:mcp:tools:nope:v1"))
        assert (
            "MCP tool 'nope'" in unknown.value.message
            and "add, echo, fail" in unknown.value.message
        )

        with pytest.raises(InvalidParams) as missing:
            await bus.register_rule(echo_rule(tool_id=add, input={"a": "{{ $.payload.a }}"}))
        assert "'b' is a required property" in missing.value.message

        # Values that are templates are known only when the rule fires: not checked now.
        created = await bus.register_rule(
            echo_rule(tool_id=add, input={"a": "{{ $.payload.a }}", "b": 2})
        )
        assert created["created"] is True
        await bus.emit("repo.pushed", {"a": 40})
        await settle(app)
        (firing,) = await bus.list_firings()
        assert firing["result"] == {"sum": 42}


async def test_an_unreachable_server_leaves_the_rule_registered_and_its_firing_says_why(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/mcp"
    route = {"url": url, "timeout_ms": 5000}
    async with start_buses(tmp_path, mcp_bus(route)) as app, await connect(app.url("rules")) as bus:
        assert (await bus.register_rule(echo_rule()))["created"] is True
        await bus.emit("repo.pushed", {"repo": "acme/api"})
        await settle(app)
        (firing,) = await bus.list_firings()
        assert firing["status"] == "failed"
        assert "cannot start a session" in firing["error"] and url in firing["error"]


@pytest.mark.parametrize(
    ("tool_id", "name"),
    [
        ("trn:org:acme:mcp:github:get_repo:v1", "get_repo"),
        ("trn:org:acme:mcp:github:get_repo:v2.1", "get_repo"),
        ("trn:org:acme:mcp:github:get_repo", "get_repo"),
        ("trn:org:acme:mcp:github:get_repo:v1@sha256:ab12", "get_repo"),
    ],
)
def test_the_tool_name_is_the_trns_last_segment_before_a_version(tool_id: str, name: str) -> None:
    from eventbus_core.config import ToolRoute
    from eventbus_server.rules.tools.mcp import tool_name

    route = ToolRoute(match="trn:org:acme:mcp:*", kind="mcp", url="http://127.0.0.1:1/mcp")
    assert tool_name(route, tool_id) == name
    assert tool_name(route.model_copy(update={"tool": "search"}), tool_id) == "search"


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ({}, "needs either 'command' (stdio) or 'url'"),
        ({"command": ["x"], "url": "http://127.0.0.1:1/mcp"}, "needs either"),
        ({"url": "tcp://127.0.0.1:1"}, "must start with http://"),
        (
            {"url": "http://127.0.0.1:1/mcp", "env": {"A": "b"}},
            "'env' is for an 'mcp' route with 'command'",
        ),
        ({"command": ["x"], "headers": {"A": "b"}}, "'headers' are for an 'mcp' route with 'url'"),
    ],
)
def test_an_mcp_route_needs_a_command_or_a_url(
    route: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    from eventbus_core.config import ConfigError, parse_config

    raw = [
        {
            "id": "b",
            "listen": "127.0.0.1:0",
            "tools": [{"match": "trn:org:*", "kind": "mcp", **route}],
        }
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=tmp_path, env={})
    assert problem in str(caught.value)


def test_an_mcp_stdio_route_expands_env_references(tmp_path: Path) -> None:
    from eventbus_core.config import parse_config

    route = {
        "match": "trn:org:*",
        "kind": "mcp",
        "command": ["srv"],
        "env": {"TOKEN": "${GH_TOKEN}"},
    }
    config = parse_config(
        [{"id": "b", "listen": "127.0.0.1:0", "tools": [route]}],
        base_dir=tmp_path,
        env={"GH_TOKEN": "s3"},
    )
    assert config.buses[0].tools[0].env == {"TOKEN": "s3"}
