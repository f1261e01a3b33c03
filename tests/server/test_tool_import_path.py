"""DESIGN §7: a `python` tool module is imported with the config file's folder on
the import path, so a module kept next to `event_buses.json` works without
PYTHONPATH, whatever folder the server was started from."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from eventbus_client import connect
from tests.processes import ServerProcess

TOOL_MODULE = """
def shout(request):
    return {"said": str(request["input"]).upper()}
"""


async def test_a_tool_module_beside_the_config_fires_without_pythonpath(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "deploy", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "beside_tools.py").write_text(TOOL_MODULE)
    config = folder / "event_buses.json"
    config.write_text(
        json.dumps(
            [
                {
                    "id": "tools",
                    "listen": "127.0.0.1:0",
                    "enable_rules": True,
                    "retry": {"attempts": 1, "backoff_ms": 1},
                    "tools": [
                        {
                            "match": "trn:user:ops:python:*",
                            "kind": "python",
                            "function": "beside_tools:shout",
                        }
                    ],
                }
            ]
        )
    )
    # An empty PYTHONPATH adds nothing; `python -m` adds the cwd, which is elsewhere.
    server = await ServerProcess.start(config, env={"PYTHONPATH": ""}, cwd=elsewhere)
    try:
        async with await connect(server.url("tools")) as bus:
            await bus.register_rule(
                {
                    "id": "shout",
                    "topic": "say",
                    "action": {
                        "type": "InvokeTool",
                        "tool_id": "trn:user:ops:python:shout:v1",
                        "input": "{{ $.payload }}",
                    },
                }
            )
            firings = await bus.subscribe_firings(rule_id="shout")
            await bus.emit("say", "hello")
            firing = await firings.next(timeout_s=15)
        assert (firing["status"], firing["result"], firing["error"]) == (
            "ok",
            {"said": "HELLO"},
            None,
        )
    finally:
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()
