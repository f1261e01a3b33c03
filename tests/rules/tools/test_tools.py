"""The tool invokers against real loopback tools, subprocesses and modules."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.codec import dumps
from eventbus_core.config import ToolRoute
from eventbus_server.rules.tools.invoke import (
    NoToolRoute,
    ToolCall,
    ToolError,
    ToolReplyTooLarge,
    ToolRouter,
    ToolTimeout,
)
from tests.memory import MB, peak_rss
from tests.ports import closed_port

from . import tool_functions
from .tool_servers import (
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

TOOL = "trn:user:alice:tool:resize:v1"
EVENT = {"event_id": 7, "topic": "images.uploaded", "payload": {"path": "a.png"}}


def route(kind: str, match: str = "trn:user:alice:tool:*", **fields: Any) -> ToolRoute:
    return ToolRoute.model_validate({"match": match, "kind": kind, **fields})


def call(firing_id: int = 42, tool_id: str = TOOL, input: Any = None) -> ToolCall:
    return ToolCall(tool_id, {"width": 10} if input is None else input, EVENT, firing_id)


@pytest.fixture(autouse=True)
def _fresh_tool_functions() -> None:
    tool_functions.reset()


# -- routing -------------------------------------------------------------------


def test_call_body_carries_everything_a_tool_needs() -> None:
    assert call().body() == {
        "tool_id": TOOL,
        "input": {"width": 10},
        "event": EVENT,
        "firing_id": 42,
    }


def test_first_matching_route_wins() -> None:
    exact = route("python", TOOL, function="m:exact")
    wide = route("python", "trn:user:alice:*", function="m:wide")
    prefix = route("python", "trn:org:", function="m:prefix")
    router = ToolRouter([exact, wide, prefix])
    assert router.route_for(TOOL) is exact
    assert router.route_for("trn:user:alice:tool:resize:v2") is wide
    # A trailing '*' reaches any depth and the hash suffix.
    assert router.route_for("trn:user:alice:a:b:c@sha256:ab12") is wide
    assert router.route_for("trn:org:acme:tool:x") is prefix
    assert router.route_for("trn:user:bob:tool:x") is None
    assert ToolRouter([wide, exact]).route_for(TOOL) is wide


async def test_no_route_names_the_trn_and_the_patterns() -> None:
    router = ToolRouter(
        [route("python", "trn:org:*", function="m:f"), route("python", "trn:svc:", function="m:f")]
    )
    with pytest.raises(NoToolRoute) as info:
        await router.invoke(call())
    assert not isinstance(info.value, ToolError)  # not retryable
    assert (
        TOOL in str(info.value) and "trn:org:*" in str(info.value) and "trn:svc:" in str(info.value)
    )
    with pytest.raises(NoToolRoute, match="none configured"):
        await ToolRouter([]).invoke(call())


# -- http ----------------------------------------------------------------------


async def test_http_posts_the_body_with_headers_and_returns_the_reply() -> None:
    async with (
        HttpTool(echo()) as tool,
        ToolRouter([tool.route("trn:user:*", headers={"X-Token": "s3cret"})]) as router,
    ):
        assert await router.invoke(call(firing_id=5)) == call(firing_id=5).body()
        assert await router.invoke(call(firing_id=5)) == call(firing_id=5).body()
    assert tool.count(5) == 2 and tool.counts() == {5: 2}
    assert tool.headers[0]["x-token"] == "s3cret"
    assert tool.headers[0]["content-type"] == "application/json"


async def test_http_empty_body_is_none() -> None:
    async with (
        HttpTool(reply(HttpReply(204))) as tool,
        ToolRouter([tool.route("trn:user:*")]) as router,
    ):
        assert await router.invoke(call()) is None


async def test_http_error_status_carries_status_and_body() -> None:
    async with (
        HttpTool(fail("disk full " * 50, status=503)) as tool,
        ToolRouter([tool.route("trn:user:*")]) as router,
    ):
        with pytest.raises(ToolError) as info:
            await router.invoke(call())
    message = str(info.value)
    assert (
        TOOL in message and "http" in message and "HTTP 503" in message and "disk full" in message
    )
    assert len(message) < 400  # the body is cut short
    assert not isinstance(info.value, ToolTimeout)


async def test_http_non_json_reply_fails() -> None:
    handler = reply(HttpReply(200, b"<html>hello</html>", "text/html"))
    async with HttpTool(handler) as tool, ToolRouter([tool.route("trn:user:*")]) as router:
        with pytest.raises(ToolError, match="not JSON: <html>hello"):
            await router.invoke(call())


async def test_http_connection_refused() -> None:
    url = f"http://127.0.0.1:{closed_port()}/tool"
    async with ToolRouter([route("http", url=url)]) as router:
        with pytest.raises(ToolError, match=r"cannot connect \(connection refused\)"):
            await router.invoke(call())


async def test_http_timeout_then_next_call_still_works() -> None:
    async with (
        HttpTool(slow(5)) as tool,
        ToolRouter([tool.route("trn:user:*", timeout_ms=50)]) as router,
    ):
        with pytest.raises(
            ToolTimeout, match=rf"tool {TOOL} timed out after 50 ms \(http http://127"
        ):
            await router.invoke(call())
        tool.handler = echo()
        assert (await router.invoke(call(firing_id=9)))["firing_id"] == 9


async def test_action_timeout_overrides_the_route() -> None:
    async with (
        HttpTool(slow(5)) as tool,
        ToolRouter([tool.route("trn:user:*", timeout_ms=60_000)]) as router,
    ):
        with pytest.raises(ToolTimeout, match="after 30 ms"):
            await router.invoke(call(), timeout_ms=30)


async def test_fail_first_counts_per_firing() -> None:
    async with (
        HttpTool(fail_first(1, per_firing=True)) as tool,
        ToolRouter([tool.route("trn:user:*")]) as router,
    ):
        for firing_id in (1, 2):
            with pytest.raises(ToolError, match="planned failure"):
                await router.invoke(call(firing_id))
            assert (await router.invoke(call(firing_id)))["firing_id"] == firing_id
        assert tool.counts() == {1: 2, 2: 2}
        assert len(await tool.wait_for_calls(4)) == 4


# -- jsonrpc -------------------------------------------------------------------


async def test_jsonrpc_sends_one_request_and_returns_the_result() -> None:
    async with (
        JsonRpcTool(reply({"ok": True})) as tool,
        ToolRouter([tool.route("trn:user:*", method="resize")]) as router,
    ):
        assert await router.invoke(call(firing_id=3)) == {"ok": True}
        assert await router.invoke(call(firing_id=3)) == {"ok": True}
    assert tool.calls == [call(firing_id=3).body()] * 2
    assert tool.methods == ["resize", "resize"]


async def test_jsonrpc_accepts_a_bare_host_port() -> None:
    async with JsonRpcTool(echo()) as tool:
        bare = route("jsonrpc", url=f"127.0.0.1:{tool.port}", method="m")
        async with ToolRouter([bare]) as router:
            assert (await router.invoke(call()))["tool_id"] == TOOL


async def test_jsonrpc_error_carries_code_and_message() -> None:
    async with (
        JsonRpcTool(fail("no such image", code=-32001)) as tool,
        ToolRouter([tool.route("trn:user:*")]) as router,
    ):
        with pytest.raises(ToolError, match=r"jsonrpc .*error -32001: no such image"):
            await router.invoke(call())


async def test_jsonrpc_timeout() -> None:
    async with (
        JsonRpcTool(slow(5)) as tool,
        ToolRouter([tool.route("trn:user:*", timeout_ms=50)]) as router,
    ):
        with pytest.raises(ToolTimeout, match=r"after 50 ms \(jsonrpc tcp://127"):
            await router.invoke(call())


async def test_jsonrpc_connection_refused() -> None:
    async with ToolRouter([route("jsonrpc", url=f"tcp://127.0.0.1:{closed_port()}")]) as router:
        with pytest.raises(ToolError, match="connection refused"):
            await router.invoke(call())


# -- command -------------------------------------------------------------------


async def test_command_reads_stdin_and_returns_stdout() -> None:
    async with ToolRouter([route("command", argv=python_argv(ECHO_SCRIPT))]) as router:
        assert await router.invoke(call(firing_id=8)) == call(firing_id=8).body()


async def test_command_empty_output_is_none() -> None:
    async with ToolRouter([route("command", argv=python_argv("pass"))]) as router:
        assert await router.invoke(call()) is None


async def test_command_nonzero_exit_has_code_and_stderr_tail() -> None:
    script = "import sys; sys.stderr.write('x' * 2000 + 'the real reason'); sys.exit(3)"
    async with ToolRouter([route("command", argv=python_argv(script))]) as router:
        with pytest.raises(ToolError, match=r"exited with code 3: x+the real reason$"):
            await router.invoke(call())


async def test_a_reply_nested_deeper_than_the_bus_can_encode_fails() -> None:
    # orjson decodes 1,024 levels but encodes 254: stored, such a result could never be read back.
    script = "print('[' * 300 + ']' * 300)"
    async with ToolRouter([route("command", argv=python_argv(script))]) as router:
        with pytest.raises(ToolError, match="reply nested deeper than 200 levels"):
            await router.invoke(call())
    shallow = "print('[' * 150 + ']' * 150)"
    async with ToolRouter([route("command", argv=python_argv(shallow))]) as router:
        assert await router.invoke(call()) is not None


async def test_command_non_json_output_fails() -> None:
    async with ToolRouter([route("command", argv=python_argv("print('hello')"))]) as router:
        with pytest.raises(ToolError, match="output is not JSON: hello"):
            await router.invoke(call())


async def test_command_timeout_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    )
    async with ToolRouter([route("command", argv=python_argv(script), timeout_ms=300)]) as router:
        with pytest.raises(ToolTimeout, match=r"after 300 ms \(command "):
            await router.invoke(call())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(int(pid_file.read_text()), 0)


async def test_command_that_cannot_start() -> None:
    async with ToolRouter([route("command", argv=("/nonexistent/tool",))]) as router:
        with pytest.raises(ToolError, match="cannot run '/nonexistent/tool'"):
            await router.invoke(call())


# -- python --------------------------------------------------------------------

FUNCTIONS = "tests.rules.tools.tool_functions"


@pytest.mark.parametrize("name", ["echo", "aecho"])
async def test_python_sync_and_async(name: str) -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:{name}")]) as router:
        assert await router.invoke(call(firing_id=4)) == call(firing_id=4).body()
    assert tool_functions.count(4) == 1


async def test_python_exception_names_its_type() -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:boom")]) as router:
        with pytest.raises(ToolError, match=r"raised ValueError: bad input 'x'") as info:
            await router.invoke(call(input="x"))
    assert isinstance(info.value.__cause__, ValueError)


async def test_python_async_exception() -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:aboom")]) as router:
        with pytest.raises(ToolError, match="raised RuntimeError: async tool failed"):
            await router.invoke(call())


async def test_python_timeout() -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:slow", timeout_ms=50)]) as router:
        with pytest.raises(ToolTimeout, match=r"after 50 ms \(python tests\.rules\.tools"):
            await router.invoke(call())


async def test_python_sync_timeout() -> None:
    async with ToolRouter(
        [route("python", function=f"{FUNCTIONS}:slow_sync", timeout_ms=20)]
    ) as router:
        with pytest.raises(ToolTimeout):
            await router.invoke(call(input={"sleep_s": 0.1}))


async def test_python_flaky_fails_first_attempt_of_each_firing() -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:flaky")]) as router:
        with pytest.raises(ToolError, match="ConnectionError: planned failure 1"):
            await router.invoke(call(firing_id=1, input={}))
        assert (await router.invoke(call(firing_id=1, input={})))["firing_id"] == 1


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        (f"{FUNCTIONS}:missing", f"module '{FUNCTIONS}' has no function 'missing'"),
        ("just_a_name", "must be 'module:function'"),
    ],
)
async def test_python_bad_function(function: str, reason: str) -> None:
    async with ToolRouter([route("python", function=function)]) as router:
        with pytest.raises(ToolError, match=reason):
            await router.invoke(call())


# -- reply size limit ------------------------------------------------------------

#: A small `max_reply_bytes` for the at-the-limit tests.
LIMIT = 4096
#: What the ~100 MB tools send: far past the default limit (1 MiB).
HUGE_BYTES = 100_000_000
#: How much the test process's peak memory may rise while such a tool is refused.
MEMORY_BOUND = 50 * MB


def too_large(where: str, limit: int = LIMIT) -> str:
    """The whole message of a refused reply, as a regex."""
    message = f"tool {TOOL} ({where}): reply larger than max_tool_reply_bytes ({limit} bytes)"
    return f"^{re.escape(message)}$"


def json_text(n_bytes: int) -> bytes:
    """A JSON string of exactly `n_bytes` bytes: quotes and x's."""
    return b'"' + b"x" * (n_bytes - 2) + b'"'


def sized_http(*, chunked: bool) -> Handler:
    """Replies with a JSON text of `input.bytes` bytes."""

    async def handle(body: dict[str, Any]) -> Any:
        return HttpReply(200, json_text(body["input"]["bytes"]), chunked=chunked)

    return handle


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_http_reply_of_the_limit_is_accepted_one_byte_more_is_not(chunked: bool) -> None:
    async with (
        HttpTool(sized_http(chunked=chunked)) as tool,
        ToolRouter([tool.route("trn:user:*")], max_reply_bytes=LIMIT) as router,
    ):
        assert await router.invoke(call(input={"bytes": LIMIT})) == "x" * (LIMIT - 2)
        with pytest.raises(ToolReplyTooLarge, match=too_large(f"http {tool.url}")) as info:
            await router.invoke(call(input={"bytes": LIMIT + 1}))
        assert isinstance(info.value, ToolError) and info.value.kind == "http"
        # The refused reply's connection is dropped, not reused half-read.
        assert await router.invoke(call(input={"bytes": 10})) == "x" * 8


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_http_huge_reply_is_refused_without_holding_it(chunked: bool) -> None:
    block = b"x" * 65_536
    huge = HttpReply(200, block, chunked=chunked, repeat=HUGE_BYTES // len(block))
    async with HttpTool(reply(huge)) as tool, ToolRouter([tool.route("trn:user:*")]) as router:
        with (
            peak_rss() as rss,
            pytest.raises(ToolReplyTooLarge, match=too_large(f"http {tool.url}", MB)),
        ):
            await router.invoke(call())
    assert rss.growth_bytes < MEMORY_BOUND


async def test_http_asks_for_an_uncompressed_reply_and_refuses_a_compressed_one() -> None:
    # A compressed body is small on the wire and huge once inflated (a zip bomb).
    bomb = gzip.compress(json_text(HUGE_BYTES), compresslevel=9)
    gzipped = HttpReply(200, bomb, headers={"Content-Encoding": "gzip"})
    async with HttpTool(reply(gzipped)) as tool, ToolRouter([tool.route("trn:user:*")]) as router:
        with (
            peak_rss() as rss,
            pytest.raises(ToolError, match="content-encoding 'gzip'; the bus asks for identity"),
        ):
            await router.invoke(call())
    assert tool.headers[0]["accept-encoding"] == "identity"
    assert rss.growth_bytes < MEMORY_BOUND


async def test_http_error_body_is_read_only_for_its_snippet() -> None:
    block = b"disk full " * 6_554
    huge = HttpReply(503, block, chunked=True, repeat=HUGE_BYTES // len(block))
    async with HttpTool(reply(huge)) as tool, ToolRouter([tool.route("trn:user:*")]) as router:
        with peak_rss() as rss, pytest.raises(ToolError, match="HTTP 503: disk full") as info:
            await router.invoke(call())
    assert not isinstance(info.value, ToolReplyTooLarge) and len(str(info.value)) < 400
    assert rss.growth_bytes < MEMORY_BOUND


def rpc_reply_bytes(result: str, request_id: int) -> int:
    """The length of the reply line JsonRpcTool writes for `result` (without the newline)."""
    return len(dumps({"jsonrpc": "2.0", "id": request_id, "result": result}))


async def test_jsonrpc_reply_line_of_the_limit_is_accepted_one_byte_more_is_not() -> None:
    chars = LIMIT - rpc_reply_bytes("", request_id=1)
    assert rpc_reply_bytes("x" * chars, request_id=1) == LIMIT

    async def sized(body: dict[str, Any]) -> Any:
        return "x" * body["input"]["chars"]

    async with (
        JsonRpcTool(sized) as tool,
        ToolRouter([tool.route("trn:user:*")], max_reply_bytes=LIMIT) as router,
    ):
        # A fresh router numbers its requests 1, 2, …: one digit each here.
        assert await router.invoke(call(input={"chars": chars})) == "x" * chars
        with pytest.raises(ToolReplyTooLarge, match=too_large(f"jsonrpc {tool.url} call_tool")):
            await router.invoke(call(input={"chars": chars + 1}))


async def test_jsonrpc_endless_line_is_refused_without_holding_it() -> None:
    block = b"x" * 65_536
    endless = RawReply(block, repeat=HUGE_BYTES // len(block))
    async with (
        JsonRpcTool(reply(endless)) as tool,
        ToolRouter([tool.route("trn:user:*")]) as router,
    ):
        with (
            peak_rss() as rss,
            pytest.raises(ToolReplyTooLarge, match=too_large(f"jsonrpc {tool.url} call_tool", MB)),
        ):
            await router.invoke(call())
    assert rss.growth_bytes < MEMORY_BOUND


async def test_jsonrpc_non_json_reply_fails() -> None:
    async with (
        JsonRpcTool(reply(RawReply(b"this is not json\n"))) as tool,
        ToolRouter([tool.route("trn:user:*")]) as router,
    ):
        with pytest.raises(ToolError, match=r"reply is not JSON: this is not json$"):
            await router.invoke(call())


#: Prints a JSON text of `input.bytes` bytes.
SIZED_SCRIPT = (
    "import json, sys; n = json.load(sys.stdin)['input']['bytes']; "
    "sys.stdout.write('\"' + 'x' * (n - 2) + '\"')"
)


async def test_command_output_of_the_limit_is_accepted_one_byte_more_is_not() -> None:
    argv = python_argv(SIZED_SCRIPT)
    async with ToolRouter([route("command", argv=argv)], max_reply_bytes=LIMIT) as router:
        assert await router.invoke(call(input={"bytes": LIMIT})) == "x" * (LIMIT - 2)
        with pytest.raises(ToolReplyTooLarge, match=too_large(f"command {argv[0]}")):
            await router.invoke(call(input={"bytes": LIMIT + 1}))


async def test_command_printing_100_mb_is_killed_at_the_limit(tmp_path: Path) -> None:
    pid_file, finished = tmp_path / "pid", tmp_path / "finished"
    script = (
        f"import os, sys; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        f"sys.stdout.write('x' * {HUGE_BYTES}); sys.stdout.flush(); "
        f"open({str(finished)!r}, 'w').close()"
    )
    argv = python_argv(script)
    async with ToolRouter([route("command", argv=argv)]) as router:
        with (
            peak_rss() as rss,
            pytest.raises(ToolReplyTooLarge, match=too_large(f"command {argv[0]}", MB)),
        ):
            await router.invoke(call())
    assert rss.growth_bytes < MEMORY_BOUND
    # Killed while still writing (it never got to the end) and reaped, not left behind.
    assert not finished.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_command_stderr_is_kept_as_a_bounded_tail() -> None:
    script = f"import sys; sys.stderr.write('e' * {HUGE_BYTES} + 'the real reason'); sys.exit(2)"
    async with ToolRouter([route("command", argv=python_argv(script))]) as router:
        with (
            peak_rss() as rss,
            pytest.raises(ToolError, match=r"exited with code 2: e+the real reason$") as info,
        ):
            await router.invoke(call())
    assert not isinstance(info.value, ToolReplyTooLarge) and len(str(info.value)) < 800
    assert rss.growth_bytes < MEMORY_BOUND


async def test_command_that_does_not_read_its_input_still_answers() -> None:
    # The body is larger than a pipe holds, so writing it fails once the tool exits.
    async with ToolRouter([route("command", argv=python_argv("print(7)"))]) as router:
        assert await router.invoke(call(input="x" * 1_000_000)) == 7


async def test_python_result_of_the_limit_is_accepted_one_byte_more_is_not() -> None:
    function = f"{FUNCTIONS}:sized"
    async with ToolRouter([route("python", function=function)], max_reply_bytes=LIMIT) as router:
        assert await router.invoke(call(input={"chars": LIMIT - 2})) == "x" * (LIMIT - 2)
        with pytest.raises(ToolReplyTooLarge, match=too_large(f"python {function}")):
            await router.invoke(call(input={"chars": LIMIT - 1}))


async def test_python_result_that_is_not_json_fails() -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:unencodable")]) as router:
        with pytest.raises(
            ToolError, match=r"result is not JSON: Type is not JSON serializable: set"
        ):
            await router.invoke(call())


async def test_python_result_is_returned_as_json_decodes_it() -> None:
    async with ToolRouter([route("python", function=f"{FUNCTIONS}:aecho")]) as router:
        result = await router.invoke(call(input=(1, 2)))
    assert result["input"] == [1, 2]  # what storage and the result topic get
