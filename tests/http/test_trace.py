"""Trace context through rules and every tool kind; spans; JSON logs (DESIGN §13)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventbus_client import connect
from eventbus_core.tracecontext import parse_traceparent
from eventbus_server import tracing
from tests.conftest import start_buses
from tests.rules.tools.tool_servers import HttpTool, JsonRpcTool, echo, python_argv

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
ENV_SCRIPT = "import json, os, sys; sys.stdin.read(); print(json.dumps({'traceparent': os.environ.get('TRACEPARENT')}))"


def _child_of_original(value: Any) -> bool:
    parsed = parse_traceparent(value)
    return parsed is not None and parsed.trace_id == TRACE_ID and value != TRACEPARENT


def _rule(rule_id: str, tool: str, result_topic: str) -> dict[str, Any]:
    action = {
        "type": "InvokeTool",
        "tool_id": f"trn:org:acme:tool:{tool}:v1",
        "input": {},
        "result_topic": result_topic,
    }
    return {"id": rule_id, "topic": "job.started", "action": action}


async def test_traceparent_reaches_every_tool_kind_and_the_results(tmp_path: Path) -> None:
    async with HttpTool(echo()) as http_tool, JsonRpcTool(echo()) as rpc_tool:
        bus = {
            "id": "tr",
            "enable_rules": True,
            "tools": [
                {"match": "trn:org:acme:tool:web:*", "kind": "http", "url": http_tool.url},
                {"match": "trn:org:acme:tool:rpc:*", "kind": "jsonrpc", "url": rpc_tool.url},
                {
                    "match": "trn:org:acme:tool:cmd:*",
                    "kind": "command",
                    "argv": list(python_argv(ENV_SCRIPT)),
                },
            ],
        }
        async with start_buses(tmp_path, bus) as app, await connect(app.url("tr")) as client:
            await client.register_rule(_rule("via-http", "web", "done.http"))
            await client.register_rule(_rule("via-rpc", "rpc", "done.rpc"))
            await client.register_rule(_rule("via-cmd", "cmd", "done.cmd"))
            emit = {"type": "EmitEvent", "topic": "job.echoed", "payload": {}}
            await client.register_rule({"id": "echo", "topic": "job.started", "action": emit})
            traced = await client.emit(
                "job.started", {"n": 1}, metadata={"traceparent": TRACEPARENT}
            )
            plain = await client.emit("job.started", {"n": 2})  # no trace context: none is made up
            await app.buses["tr"].wait_idle()
            made = [
                *(await client.poll("done.>")).events,
                *(await client.poll("job.echoed")).events,
            ]
    by_cause: dict[int, list[Any]] = {traced.event_id: [], plain.event_id: []}
    for event in made:
        assert event.metadata is not None
        by_cause[event.metadata["caused_by"]["event_id"]].append(event)
    # Tools: the http header, the jsonrpc body's _meta, the command's TRACEPARENT.

    headers = {
        body["event"]["event_id"]: headers
        for body, headers in zip(http_tool.calls, http_tool.headers, strict=True)
    }
    assert _child_of_original(headers[traced.event_id]["traceparent"])
    assert "traceparent" not in headers[plain.event_id]
    meta = {body["event"]["event_id"]: body.get("_meta") for body in rpc_tool.calls}
    assert _child_of_original(meta[traced.event_id]["traceparent"]) and meta[plain.event_id] is None
    commands = {
        e.metadata["caused_by"]["event_id"]: e.payload for e in made if e.topic == "done.cmd"
    }
    assert _child_of_original(commands[traced.event_id]["traceparent"])
    assert commands[plain.event_id] == {"traceparent": None}
    # Results and rule-made events: children of the original, one for each kind.
    assert sorted(e.topic for e in by_cause[traced.event_id]) == [
        "done.cmd",
        "done.http",
        "done.rpc",
        "job.echoed",
    ]
    assert all(_child_of_original(e.metadata["traceparent"]) for e in by_cause[traced.event_id])
    assert not any("traceparent" in e.metadata for e in by_cause[plain.event_id])


async def test_spans_are_recorded_parented_on_the_event(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        async with HttpTool(echo()) as http_tool:
            bus = {
                "id": "sp",
                "enable_rules": True,
                "tools": [{"match": "trn:org:acme:tool:*", "kind": "http", "url": http_tool.url}],
            }
            async with start_buses(tmp_path, bus) as app, await connect(app.url("sp")) as client:
                await client.register_rule(_rule("traced", "web", "done.web"))
                await client.emit("job.started", {}, metadata={"traceparent": TRACEPARENT})
                await app.buses["sp"].wait_idle()
                [result] = (await client.poll("done.web")).events
    finally:
        tracing.disable()
    spans = {span.name: span for span in exporter.get_finished_spans() if span.name != "emit"}
    emits = [span for span in exporter.get_finished_spans() if span.name == "emit"]
    fire, call = spans["rule.fire"], spans["tool.call"]
    assert {f"{span.context.trace_id:032x}" for span in [fire, call, *emits]} == {TRACE_ID}
    assert fire.parent is not None and f"{fire.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    assert call.parent is not None and call.parent.span_id == fire.context.span_id
    assert fire.attributes is not None and fire.attributes["eventbus.rule_id"] == "traced"
    assert fire.attributes["eventbus.attempts"] == 1 and fire.attributes["eventbus.status"] == "ok"
    assert call.attributes is not None and call.attributes["eventbus.tool_kind"] == "http"
    # The tool got the tool.call span as its parent; the result event is the firing's child.
    assert http_tool.headers[0]["traceparent"] == f"00-{TRACE_ID}-{call.context.span_id:016x}-01"
    assert result.metadata is not None
    assert result.metadata["traceparent"] == f"00-{TRACE_ID}-{fire.context.span_id:016x}-01"
    [first, second] = sorted(emits, key=lambda span: span.attributes["eventbus.event_id"])  # type: ignore[index]
    assert first.parent is not None and f"{first.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    assert second.parent is not None and second.parent.span_id == fire.context.span_id


async def test_serve_log_format_json_writes_one_object_per_line(tmp_path: Path) -> None:
    config = tmp_path / "event_buses.json"
    route = {
        "match": "trn:org:acme:tool:*",
        "kind": "command",
        "argv": list(python_argv("import sys; sys.exit(3)")),
    }
    bus = {
        "id": "js",
        "listen": "127.0.0.1:0",
        "enable_rules": True,
        "retry": {"attempts": 1, "backoff_ms": 0},
        "tools": [route],
    }
    config.write_text(json.dumps([bus]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventbus_cli",
        "serve",
        "--config",
        str(config),
        "--log-format",
        "json",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(20):
            while not any(line.get("level") == "WARNING" for line in lines):
                raw = await proc.stderr.readline()
                assert raw, "the server exited"
                lines.append(json.loads(raw))
                if "listen=" in lines[-1]["message"]:
                    port = int(
                        lines[-1]["message"].split("listen=")[1].split()[0].rsplit(":", 1)[1]
                    )
                    async with await connect(f"tcp://127.0.0.1:{port}") as client:
                        await client.register_rule(_rule("broken", "cmd", "never"))
                        await client.emit("job.started", {})
    finally:
        proc.terminate()
        _, rest = await proc.communicate()
    lines += [json.loads(line) for line in rest.splitlines()]  # every line is JSON, to the last
    assert lines[-1]["message"] == "stopped buses=js"
    [warning] = [line for line in lines if line["level"] == "WARNING"]
    assert warning["logger"] == "eventbus.rules" and warning["bus"] == "js"
    assert warning["rule_id"] == "broken" and warning["event_id"] == 1 and warning["firing_id"] >= 1
    assert "exited with code 3" in warning["message"]
    assert set(lines[0]) >= {"time", "level", "logger", "message"}


def test_the_json_formatter_finds_the_fields_in_every_log_line() -> None:
    from logging import WARNING, LogRecord

    from eventbus_server.logs import JsonFormatter

    dead = LogRecord(
        "eventbus.consumers",
        WARNING,
        __file__,
        1,
        "bus=%s consumer=%s event=%d dead letter after %d deliveries: %s",
        ("global", "workers", 42, 5, "max_deliver"),
        None,
    )
    line = json.loads(JsonFormatter().format(dead))
    assert line["level"] == "WARNING" and line["logger"] == "eventbus.consumers"
    assert (line["bus"], line["consumer"], line["event_id"]) == ("global", "workers", 42)
    assert (
        line["message"]
        == "bus=global consumer=workers event=42 dead letter after 5 deliveries: max_deliver"
    )
