"""Each invoker kind behind a rule, over the wire: a real HTTP tool, a real
JSON-RPC tool server, a real subprocess and a python function, configured as
the bus's `tools` routes. Success with a result topic, retries that end in
success, timeouts, errors and replies past `max_tool_reply_bytes` that end as
dead letters, and templates that reach only the call's JSON body."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect
from tests.conftest import start_buses
from tests.memory import MB, peak_rss
from tests.rules import python_tools
from tests.rules.tools.tool_servers import (
    ECHO_SCRIPT,
    Handler,
    HttpReply,
    HttpTool,
    JsonRpcTool,
    RawReply,
    echo,
    fail,
    fail_first,
    python_argv,
    reply,
    slow,
)

from .conftest import rules_bus, settle

TOOL = "trn:user:alice:tool:deploy:v1"
SERVER_KINDS = ["http", "jsonrpc"]
ALL_KINDS = ["http", "jsonrpc", "command", "python"]


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
        "action": {
            "type": "InvokeTool",
            "tool_id": TOOL,
            "input": {"service": "{{ $.payload.service }}"},
            **action,
        },
    }
    return rule if retry is None else {**rule, "retry": retry}


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_tool_server_gets_the_call_and_its_reply_becomes_the_result_event(
    kind: str, tmp_path: Path
) -> None:
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
        config = rules_bus(
            "memory", tmp_path, tools=[route_config(server)], retry={"attempts": 3, "backoff_ms": 5}
        )
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
            await bus.register_rule(
                invoke_rule(timeout_ms=100, retry={"attempts": 2, "backoff_ms": 1})
            )
            await bus.emit("deploy.requested", {"service": "api"})
            await settle(app)
            (dead,) = await bus.list_firings(status="failed")
            assert dead["attempts"] == 2 and "100 ms" in dead["error"]
            assert dead["duration_ms"] < 2000  # it did not wait for the tool


async def test_a_command_tool_reads_the_call_on_stdin(tmp_path: Path) -> None:
    tools = [
        {
            "match": "trn:user:alice:tool:*",
            "kind": "command",
            "argv": list(python_argv(ECHO_SCRIPT)),
        }
    ]
    async with (
        start_buses(tmp_path, rules_bus("sqlite", tmp_path, tools=tools)) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.register_rule(invoke_rule(result_topic="deploy.done"))
        await bus.emit("deploy.requested", {"service": "web"})
        await settle(app)
        (result,) = (await bus.poll("deploy.done")).events
        assert result.payload["input"] == {"service": "web"} and result.payload["tool_id"] == TOOL


async def test_a_failing_command_tool_reports_its_exit_code_and_stderr(tmp_path: Path) -> None:
    script = "import sys; sys.stderr.write('no such service'); sys.exit(4)"
    tools = [
        {
            "match": "trn:user:alice:tool:*",
            "kind": "command",
            "argv": list(python_argv(script)),
            "timeout_ms": 5000,
        }
    ]
    async with (
        start_buses(tmp_path, rules_bus("memory", tmp_path, tools=tools)) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.register_rule(invoke_rule(retry={"attempts": 1, "backoff_ms": 1}))
        await bus.emit("deploy.requested", {"service": "web"})
        await settle(app)
        (dead,) = await bus.list_firings(status="failed")
        assert "exited with code 4" in dead["error"] and "no such service" in dead["error"]


def command_route(script: str, **extra: Any) -> dict[str, Any]:
    return {
        "match": "trn:user:alice:tool:*",
        "kind": "command",
        "argv": list(python_argv(script)),
        **extra,
    }


def python_route(function: str, **extra: Any) -> dict[str, Any]:
    return {
        "match": "trn:user:alice:tool:*",
        "kind": "python",
        "function": f"tests.rules.python_tools:{function}",
        **extra,
    }


@contextlib.asynccontextmanager
async def tool_route(
    kind: str, *, handler: Handler, script: str, function: str
) -> AsyncIterator[dict[str, Any]]:
    """The route of a tool of this kind: a server running `handler`, `script`, or `function`."""
    if kind in SERVER_KINDS:
        async with tool_server(kind, handler) as server:
            yield route_config(server)
    else:
        yield command_route(script) if kind == "command" else python_route(function)


async def test_a_hanging_command_tool_times_out_and_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n'); time.sleep(30)"
    )
    config = rules_bus("memory", tmp_path, tools=[command_route(script)])
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(invoke_rule(timeout_ms=300, retry={"attempts": 2, "backoff_ms": 1}))
        await bus.emit("deploy.requested", {"service": "api"})
        await settle(app)
        (dead,) = await bus.list_firings(status="failed")
        assert dead["attempts"] == 2 and dead["result"] is None
        assert f"tool {TOOL} timed out after 300 ms (command " in dead["error"]
    for pid in pids.read_text().split():  # each attempt's process is gone, not left behind
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


async def test_a_hanging_python_tool_times_out(tmp_path: Path) -> None:
    config = rules_bus("memory", tmp_path, tools=[python_route("slow")])
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(
            invoke_rule(
                input={"sleep_s": 30}, timeout_ms=100, retry={"attempts": 2, "backoff_ms": 1}
            )
        )
        await bus.emit("deploy.requested", {"service": "api"})
        await settle(app)
        (dead,) = await bus.list_firings(status="failed")
        assert (
            dead["attempts"] == 2
            and f"tool {TOOL} timed out after 100 ms (python " in dead["error"]
        )


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_a_tool_that_answers_invalid_json_fails_the_firing(kind: str, tmp_path: Path) -> None:
    html = HttpReply(200, b"<html>hello</html>", "text/html")
    handler = reply(html if kind == "http" else RawReply(b"<html>hello</html>\n"))
    async with tool_route(
        kind, handler=handler, script="print('<html>hello</html>')", function="unencodable"
    ) as route:
        config = rules_bus("sqlite", tmp_path, tools=[route])
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            await bus.register_rule(
                invoke_rule(result_topic="deploy.done", retry={"attempts": 2, "backoff_ms": 1})
            )
            await bus.emit("deploy.requested", {"service": "api"})
            await settle(app)
            (dead,) = await bus.list_firings(status="failed")
            assert dead["attempts"] == 2 and dead["result"] is None
            assert dead["error"].startswith(f"tool {TOOL} ({kind} ")
            expected = (
                "result is not JSON: Type is not JSON serializable: set"
                if kind == "python"
                else "not JSON: <html>hello</html>"
            )
            assert expected in dead["error"] and "internal error" not in dead["error"]
            assert (await bus.poll("deploy.done")).events == []


async def test_hanging_sync_python_tools_hold_only_threads_of_their_own(tmp_path: Path) -> None:
    """A sync tool that hangs keeps its thread after its call timed out. Forty of them
    (more than the loop's default executor has threads on any machine) must not take
    the threads the rest of the process needs: a `test_rule` of a whole-event JSONPath
    on another bus is matched in a worker thread, and answers. (In the default executor
    they also held getaddrinfo, which every http and jsonrpc tool call and connect use.)"""
    stuck = rules_bus(
        "memory", tmp_path, tools=[python_route("stuck")], retry={"attempts": 1, "backoff_ms": 0}
    )
    other = {"id": "other", "enable_rules": True}
    async with (
        start_buses(tmp_path, stuck, other) as app,
        await connect(app.url("rules")) as bus,
        await connect(app.url("other")) as neighbour,
    ):
        try:
            await bus.register_rule(invoke_rule(timeout_ms=100))
            await bus.emit_many(
                [{"topic": "deploy.requested", "payload": {"service": f"s{i}"}} for i in range(40)]
            )
            await settle(app)
            firings = await bus.list_firings(limit=100)
            assert len(firings) == 40 and {f["status"] for f in firings} == {"failed"}
            assert all("timed out after 100 ms" in f["error"] for f in firings)
            rule = {
                "id": "deep",
                "topic": ">",
                "match_fields": {"$..x": 1},
                "action": {"type": "EmitEvent", "topic": "seen"},
            }
            async with asyncio.timeout(10):
                tested = await neighbour.test_rule(
                    {"topic": "a", "payload": {"deep": {"x": 1}}}, rule=rule
                )
            assert tested["matched"] is True
        finally:
            python_tools.RELEASE.set()  # the hung threads end with the test


#: The bus's max_tool_reply_bytes in the size tests.
REPLY_LIMIT = 65_536
#: Prints a JSON string of `input.chars` x's.
SIZED_SCRIPT = (
    "import json, sys; json.dump('x' * json.load(sys.stdin)['input']['chars'], sys.stdout)"
)


async def sized_reply(body: dict[str, Any]) -> Any:
    return "x" * body["input"]["chars"]


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_a_reply_over_max_tool_reply_bytes_fails_the_firing_and_is_never_stored(
    kind: str, tmp_path: Path
) -> None:
    async with tool_route(
        kind, handler=sized_reply, script=SIZED_SCRIPT, function="sized"
    ) as route:
        config = rules_bus("sqlite", tmp_path, tools=[route], max_tool_reply_bytes=REPLY_LIMIT)
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            rule = invoke_rule(result_topic="deploy.done", retry={"attempts": 2, "backoff_ms": 1})
            await bus.register_rule(
                {**rule, "action": {**rule["action"], "input": {"chars": "{{ $.payload.chars }}"}}}
            )
            # A JSON-RPC reply line adds about 40 bytes to the result; 100 leaves room.
            under = await bus.emit("deploy.requested", {"chars": REPLY_LIMIT - 100})
            over = await bus.emit("deploy.requested", {"chars": REPLY_LIMIT + 1})
            await settle(app)

            firings = {firing["event_id"]: firing for firing in await bus.list_firings()}
            ok, dead = firings[under.event_id], firings[over.event_id]
            assert (ok["status"], ok["result"]) == ("ok", "x" * (REPLY_LIMIT - 100))
            assert (dead["status"], dead["attempts"], dead["result"]) == ("failed", 2, None)
            assert dead["error"].startswith(f"tool {TOOL} ({kind} ")
            assert dead["error"].endswith(
                f"): reply larger than max_tool_reply_bytes ({REPLY_LIMIT} bytes)"
            )
            (result,) = (await bus.poll("deploy.done")).events  # the small reply's only
            assert result.payload == ok["result"]
            assert result.metadata["caused_by"]["event_id"] == under.event_id


async def test_a_command_tool_printing_100_mb_is_killed_and_nothing_is_kept(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('x' * 100_000_000)"
    config = rules_bus("memory", tmp_path, tools=[command_route(script)])
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(
            invoke_rule(result_topic="deploy.done", retry={"attempts": 2, "backoff_ms": 1})
        )
        with peak_rss() as rss:
            await bus.emit("deploy.requested", {"service": "api"})
            await settle(app)
        # The server (this process) held about the limit per attempt, never the 100 MB.
        assert rss.growth_bytes < 50 * MB
        (dead,) = await bus.list_firings()
        assert (dead["status"], dead["attempts"], dead["result"]) == ("failed", 2, None)
        executable = python_argv("")[0]
        assert (
            dead["error"]
            == f"tool {TOOL} (command {executable}): reply larger than max_tool_reply_bytes (1048576 bytes)"
        )
        assert (await bus.poll("deploy.done")).events == []


#: A payload a shell or URL template would act on; it must reach the tool only as JSON data.
HOSTILE = {
    "service": "api; touch pwned-semicolon && $(touch pwned-subshell) `touch pwned-backtick` | cat /etc/passwd > out",
    "url": "http://evil.example:9/steal?next=../../admin&x=1#frag",
}


def copying_rule() -> dict[str, Any]:
    return invoke_rule(
        result_topic="deploy.done",
        input={
            "service": "{{ $.payload.service }}",
            "url": "{{ $.payload.url }}",
            "line": "run {{ $.payload.service }}",
        },
    )


async def test_templates_never_reach_a_commands_argv(tmp_path: Path) -> None:
    script = "import json, sys; json.dump({'argv': sys.orig_argv, 'input': json.load(sys.stdin)['input']}, sys.stdout)"
    # Even template syntax in argv itself is passed as it is written.
    argv = [*python_argv(script), "--service", "{{ $.payload.service }}", "{{ $.payload.url }}"]
    tools = [{"match": "trn:user:alice:tool:*", "kind": "command", "argv": argv}]
    async with (
        start_buses(tmp_path, rules_bus("memory", tmp_path, tools=tools)) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.register_rule(copying_rule())
        await bus.emit("deploy.requested", HOSTILE)
        await settle(app)
        (result,) = (await bus.poll("deploy.done")).events
    assert result.payload["argv"] == argv
    assert result.payload["input"] == {**HOSTILE, "line": f"run {HOSTILE['service']}"}
    assert not list(tmp_path.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))


async def test_templates_never_reach_an_http_url(tmp_path: Path) -> None:
    async with HttpTool(echo()) as server:
        config = rules_bus("memory", tmp_path, tools=[route_config(server)])
        async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
            await bus.register_rule(copying_rule())
            await bus.emit("deploy.requested", HOSTILE)
            await settle(app)
            (result,) = (await bus.poll("deploy.done")).events
    assert server.request_lines == ["POST /tool HTTP/1.1"]  # the configured path, nothing added
    assert server.headers[0]["host"] == f"127.0.0.1:{server.port}"
    assert result.payload["input"] == {**HOSTILE, "line": f"run {HOSTILE['service']}"}
