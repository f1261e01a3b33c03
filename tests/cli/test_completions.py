"""The committed shell completion scripts are current, and Tab really completes."""

from __future__ import annotations

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
