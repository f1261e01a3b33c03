"""Latency of one MCP tool firing, event committed → tool called, stdio and HTTP,
against a `python` tool firing in the same run.

    .venv/bin/python -m bench.mcp [--firings 300] [--no-record]

One bus process (memory storage: commit cost is not what is measured) with
three routes and one rule each on its own topic. For each kind, one event at
a time: emit, wait for the firing to be recorded, emit the next. The tool
answers the wall clock at which it was called. The commit itself is not
visible from outside, so the latency is taken from sending the emit (an
upper bound: the emit's round trip and the in-memory commit are in it, the
same for every kind) and, for reference, from its acknowledgement (which the
bus sends after the commit, concurrently with the rule engine: a fast tool is
called before the ack arrives). The difference to the python tool is what
the MCP transport adds. The first firing of each kind is left out and
reported on its own. The MCP HTTP server runs in its own process, like the
stdio one.

Prints a table and appends it to bench/RESULTS.md unless `--no-record`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from eventbus_client import EventBusClient, connect

from ._common import format_table, percentiles_ms, record_results, run
from .emit import bus_process

KINDS = ("python", "mcp-stdio", "mcp-http")


@contextlib.asynccontextmanager
async def http_tool_server() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.mcp_tool", "--http", stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        match = re.search(r"port=(\d+)", line)
        assert match, line
        yield f"http://127.0.0.1:{match.group(1)}/mcp"
    finally:
        proc.terminate()
        await proc.wait()


def routes(http_url: str) -> list[dict[str, Any]]:
    return [
        {"match": "trn:org:bench:python:*", "kind": "python", "function": "bench.mcp_tool:called"},
        {
            "match": "trn:org:bench:stdio:*",
            "kind": "mcp",
            "command": [sys.executable, "-m", "bench.mcp_tool"],
        },
        {"match": "trn:org:bench:http:*", "kind": "mcp", "url": http_url},
    ]


def rule(kind: str) -> dict[str, Any]:
    segment = kind.removeprefix("mcp-")
    return {
        "id": f"bench-{kind}",
        "topic": f"bench.mcp.{kind}",
        "action": {
            "type": "InvokeTool",
            "tool_id": f"trn:org:bench:{segment}:called:v1",
            "input": {"n": 1},
        },
    }


async def fire_once(bus: EventBusClient, firings: Any, kind: str) -> tuple[int, int]:
    """Emit one event; ns from sending it, and from its acknowledgement, to the tool's call."""
    sent_ns = time.time_ns()
    await bus.emit(f"bench.mcp.{kind}", {"n": 1})
    acked_ns = time.time_ns()
    firing = await firings.next(timeout_s=60)
    if firing.get("status") != "ok":
        raise RuntimeError(f"{kind}: firing failed: {firing.get('error')}")
    called_ns = int(firing["result"]["called_at_ns"])
    return called_ns - sent_ns, called_ns - acked_ns


async def measure(count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with http_tool_server() as http_url:
        extra = {"enable_rules": True, "tools": routes(http_url)}
        async with bus_process("memory", "normal", extra) as (url, _), await connect(url) as bus:
            for kind in KINDS:
                await bus.register_rule(
                    rule(kind)
                )  # starts the MCP sessions (register_rule checks the tool)
            for kind in KINDS:
                firings = await bus.subscribe_firings(rule_id=f"bench-{kind}")
                first, _ = await fire_once(bus, firings, kind)
                samples = [await fire_once(bus, firings, kind) for _ in range(count)]
                await firings.unsubscribe()
                from_sent = [sent for sent, _ in samples]
                from_ack = percentiles_ms([acked for _, acked in samples], points=(50,))
                rows.append(
                    {
                        "tool": kind,
                        "firings": count,
                        **percentiles_ms(from_sent),
                        "ack_p50_ms": from_ack["p50_ms"],
                        "first_ms": first / 1e6,
                    }
                )
    base = rows[0]["p50_ms"]
    for row in rows[1:]:
        row["p50_vs_python_ms"] = row["p50_ms"] - base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firings", type=int, default=300)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = run(measure(args.firings))
    table = format_table(rows)
    print(table)
    if not args.no_record:
        note = (
            "`.venv/bin/python -m bench.mcp`: memory bus in its own process, one firing at a time; "
            "p50/p99/max: from sending the emit to the tool being called (emit round trip + commit + "
            "match + claim + call); ack_p50: from the emit's acknowledgement instead (the python tool "
            "is often called before the ack arrives, hence ≤ 0); p50_vs_python: what the MCP transport "
            "adds; first_ms: the first firing after register_rule (which started the session)."
        )
        record_results(
            "bench.mcp: one MCP tool firing, event committed → tool called", f"{note}\n\n{table}"
        )


if __name__ == "__main__":
    main()
