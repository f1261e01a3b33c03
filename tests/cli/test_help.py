"""`--help` reads as a man page would: plain metavars, every option explained,
and examples that paste into a shell as printed, at any width."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from eventbus_cli.main import app


def commands(group: Any = None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    group = group or typer.main.get_command(app)
    found = [path] if path else []
    for name, command in getattr(group, "commands", {}).items():
        found += (
            commands(command, (*path, name)) if hasattr(command, "commands") else [(*path, name)]
        )
    return found


def help_text(*command: str, columns: int = 100) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


ALL = commands()


def test_every_command_is_walked() -> None:
    assert {
        ("firings",),
        ("firings", "retry"),
        ("rules", "add"),
        ("config", "show"),
        ("ui",),
    } <= set(ALL)


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_help_shows_plain_metavars_not_python_types(command: tuple[str, ...]) -> None:
    text = help_text(*command)
    assert not re.search(r"<(str|int|path|list\[.*?\]|int range|bool)>", text), text
    assert "default: null" not in text and "default: None" not in text, text


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_every_option_and_argument_is_explained(command: tuple[str, ...]) -> None:
    click_command: Any = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]
    unexplained = [
        p.name for p in click_command.params if not getattr(p, "help", None) and p.name != "help"
    ]
    assert not unexplained, f"no help text: {unexplained}"


GROUPS = {
    ("config",),
    ("rules",),
    ("consumers",),
    ("schedules",),
}  # their commands have the examples


@pytest.mark.parametrize("columns", [60, 80, 200])
@pytest.mark.parametrize("command", [c for c in ALL if c not in GROUPS], ids=" ".join)
def test_examples_paste_into_a_shell(command: tuple[str, ...], columns: int) -> None:
    text = help_text(*command, columns=columns)
    examples = text.partition("Examples:")[2].partition("Arguments:")[0].partition("Options:")[0]
    pasted = [block for block in re.split(r"\n\s*\n", examples) if block.strip()]
    assert pasted, "no examples"
    for block in pasted:
        lines = block.strip().splitlines()
        for line in lines[:-1]:
            assert line.endswith(" \\"), (
                f"an example broken across lines at {columns} columns:\n{block}"
            )
        assert "\\" not in lines[-1], f"a stray backslash:\n{block}"
        joined = " ".join(line.strip().removesuffix("\\") for line in lines)
        assert "eventbus" in shlex.split(joined), joined  # and its quotes balance


def test_poll_correlation_id_has_help() -> None:
    assert re.search(
        r"--correlation-id ID\s+Only events with this correlation id", help_text("poll")
    )


@pytest.mark.parametrize(
    "command", [c for c in ALL if c not in {("serve",), ("ui",), ("mcp",), *GROUPS}], ids=" ".join
)
def test_every_command_that_prints_takes_json(command: tuple[str, ...]) -> None:
    assert re.search(r"^\s+--json\s", help_text(*command), re.MULTILINE), command
