"""`eventbus serve / emit / poll` as a user runs them: real subprocesses, real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from typer.testing import CliRunner

from eventbus_cli.main import app as cli_app
from eventbus_client import connect
from eventbus_server.app import EventBusApp
from tests.ports import closed_port

EVENTBUS = [sys.executable, "-m", "eventbus_cli"]


async def run_cli(
    *args: str, stdin: bytes | None = None, env: dict | None = None, cwd: Path | None = None
):
    proc = await asyncio.create_subprocess_exec(
        *EVENTBUS,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_emit_then_poll_json(app: EventBusApp, unique_topic: str) -> None:
    url = app.url("test")
    code, out, err = await run_cli(
        "emit",
        unique_topic,
        "--payload",
        '{"repo": "acme/api"}',
        "--url",
        url,
        "--source-trn",
        "trn:user:alice:cli:v1",
        "--correlation-id",
        "c-9",
        "--json",
    )
    assert code == 0, err
    emitted = json.loads(out)
    code, out, err = await run_cli("poll", unique_topic, "--url", url)  # piped: NDJSON by default
    assert code == 0, err
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert event["event_id"] == emitted["event_id"]
    assert event["payload"] == {"repo": "acme/api"} and event["correlation_id"] == "c-9"


async def test_emit_payload_from_file_and_stdin(
    app: EventBusApp, unique_topic: str, tmp_path: Path
) -> None:
    url = app.url("test")
    (tmp_path / "p.json").write_text('{"from": "file"}')
    assert (
        await run_cli("emit", unique_topic, "--payload", f"@{tmp_path / 'p.json'}", "--url", url)
    )[0] == 0
    assert (
        await run_cli(
            "emit", unique_topic, "--payload", "-", "--url", url, stdin=b'{"from": "stdin"}'
        )
    )[0] == 0
    async with await connect(url) as client:
        assert [e.payload for e in (await client.poll(unique_topic)).events] == [
            {"from": "file"},
            {"from": "stdin"},
        ]


async def test_bad_payload_is_usage_error(app: EventBusApp) -> None:
    code, _, err = await run_cli("emit", "a", "--payload", "{nope", "--url", app.url("test"))
    assert code == 2
    assert "--payload is not valid JSON" in err and "Traceback" not in err


async def test_bus_error_exit_1_with_the_reason(app: EventBusApp) -> None:
    code, _, err = await run_cli("emit", "bad topic", "--url", app.url("test"))
    assert code == 1
    assert "invalid params" in err and "topic" in err and "Traceback" not in err


async def test_unreachable_bus_exit_3() -> None:
    code, _, err = await run_cli("poll", "--url", f"tcp://127.0.0.1:{closed_port()}")
    assert code == 3
    assert "cannot reach" in err and "eventbus serve" in err


async def test_bus_looked_up_in_config(app: EventBusApp, tmp_path: Path, unique_topic: str) -> None:
    host, port = app.address("test")
    config = tmp_path / "buses.json"
    config.write_text(
        json.dumps(
            [{"id": "other", "listen": "127.0.0.1:1"}, {"id": "test", "listen": f"{host}:{port}"}]
        )
    )
    code, _, err = await run_cli(
        "emit", unique_topic, "--bus", "test", "--config", str(config), "--json"
    )
    assert code == 0, err
    code, _, err = await run_cli("poll", "--bus", "nope", "--config", str(config))
    assert code == 2 and "no bus 'nope'" in err and "known: other, test" in err


async def test_serve_rejects_invalid_config_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(
        json.dumps(
            [{"id": "a", "listen": "nope"}, {"id": "b", "listen": "127.0.0.1:1", "persist": True}]
        )
    )
    code, _, err = await run_cli("serve", "--config", str(config))
    assert code == 2
    assert "[0].listen" in err and "[1]" in err and "persist is true" in err


def _help(*args: str) -> str:
    result = CliRunner().invoke(
        cli_app, [*args, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    )
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def test_help_has_examples_and_exit_codes() -> None:
    text = _help()
    assert "Examples" in text and "3 cannot connect" in text
    for command in ("serve", "emit", "poll"):
        text = _help(command)
        assert "Examples" in text and "eventbus " + command in text and "3 cannot connect" in text


def test_help_does_not_import_the_server_or_textual() -> None:
    import subprocess

    code = (
        "import sys; from eventbus_cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in sys.modules if m.startswith(('eventbus_server', 'textual', 'aiosqlite', 'asyncpg'))]\n"
        "print('LOADED', bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("LOADED []")


async def test_serve_reports_storage_it_cannot_open_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "pg.json"
    config.write_text(
        json.dumps(
            [
                {
                    "id": "pg",
                    "listen": "127.0.0.1:0",
                    "persist": True,
                    "storage_url": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
                }
            ]
        )
    )
    code, _, err = await run_cli("serve", "--config", str(config))
    assert code == 1
    assert (
        "cannot start" in err
        and "schema 'eventbus_pg' is unavailable" in err
        and "Traceback" not in err
    )
