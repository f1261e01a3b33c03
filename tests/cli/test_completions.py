"""The committed shell completion scripts are current, and Tab really completes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.gen_completions import COMPLETIONS_DIR, stale_files

# The console script the completion scripts call back into; `python -m eventbus_cli`
# would not do: Click derives the variable name from the program name.
EVENTBUS = Path(sys.executable).parent / "eventbus"


def test_committed_completion_scripts_are_current() -> None:
    stale = [path.name for path in stale_files()]
    assert not stale, (
        f"stale completion scripts in completions/: {', '.join(stale)}; "
        "run `.venv/bin/python scripts/gen_completions.py` and commit the result"
    )


def test_eventbus_answers_a_completion_request() -> None:
    assert EVENTBUS.is_file(), f"{EVENTBUS} missing: run `pip install -e .`"
    env = {
        **os.environ,
        "_EVENTBUS_COMPLETE": "complete_bash",
        "COMP_WORDS": "eventbus em",
        "COMP_CWORD": "1",
    }
    proc = subprocess.run([EVENTBUS], env=env, capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout.split()) == (0, ["emit"]), proc.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_sourced_bash_script_completes_em_to_emit() -> None:
    assert EVENTBUS.is_file(), f"{EVENTBUS} missing: run `pip install -e .`"
    script = (
        f'source "{COMPLETIONS_DIR / "eventbus.bash"}"\n'
        "COMP_WORDS=(eventbus em); COMP_CWORD=1\n"
        "_eventbus_completion eventbus em eventbus\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{EVENTBUS.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout.splitlines()) == (0, ["emit"]), proc.stderr


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What Tab offers after `words` (bash's protocol: the last word is the one being completed)."""
    assert EVENTBUS.is_file(), f"{EVENTBUS} missing: run `pip install -e .`"
    env = {
        **os.environ,
        **(env or {}),
        "_EVENTBUS_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    proc = subprocess.run([EVENTBUS], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout.split()


def test_bus_ids_complete_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "buses.json"
    config.write_text(
        json.dumps(
            [
                {"id": "global", "listen": "127.0.0.1:1"},
                {"id": "workflow", "listen": "127.0.0.1:2"},
                {"id": "gossip", "listen": "127.0.0.1:3"},
            ]
        )
    )
    assert complete(f"eventbus poll --config {config} --bus ") == ["global", "workflow", "gossip"]
    assert complete(f"eventbus serve --config {config} --bus g") == ["global", "gossip"]
    assert complete("eventbus tail --bus w", env={"EVENTBUS_CONFIG": str(config)}) == ["workflow"]
    assert (
        complete("eventbus tail --bus ", env={"EVENTBUS_CONFIG": str(tmp_path / "missing.json")})
        == []
    )


def test_choices_complete() -> None:
    assert complete("eventbus history --order ") == ["asc", "desc"]
    assert complete("eventbus serve --log-level w") == ["warning"]
    assert complete("eventbus firings re") == ["retry"]


async def test_rule_and_firing_ids_complete_from_a_running_bus(tmp_path: Path) -> None:
    import asyncio

    from eventbus_client import connect
    from tests.conftest import start_buses

    routes = [{"match": "trn:user:nobody:*", "kind": "http", "url": "http://127.0.0.1:1/"}]
    async with start_buses(
        tmp_path,
        {
            "id": "r",
            "enable_rules": True,
            "tools": routes,
            "retry": {"attempts": 1, "backoff_ms": 1},
        },
    ) as app:
        url = app.url("r")
        async with await connect(url) as bus:
            for rule_id in ("fetch-on-push", "fan-out", "notify"):
                await bus.register_rule(
                    {
                        "id": rule_id,
                        "topic": rule_id,
                        "action": {"type": "InvokeTool", "tool_id": "trn:user:nobody:tool:v1"},
                    }
                )
            await bus.emit("fan-out", 1)
            await app.buses["r"].wait_idle()
            (dead,) = await bus.list_firings(status="failed")

        def tab(words: str) -> list[str]:
            return complete(words)

        assert await asyncio.to_thread(tab, f"eventbus rules show --url {url} f") == [
            "fan-out",
            "fetch-on-push",
        ]
        assert await asyncio.to_thread(tab, f"eventbus rules disable --url {url} ") == [
            "fan-out",
            "fetch-on-push",
            "notify",
        ]
        assert await asyncio.to_thread(tab, f"eventbus firings --url {url} --rule n") == ["notify"]
        assert await asyncio.to_thread(tab, f"eventbus firings retry --url {url} ") == [
            str(dead["firing_id"])
        ]
    # The bus is gone: Tab offers nothing, at once, and prints no error into the shell.
    assert complete(f"eventbus rules show --url {url} ") == []
