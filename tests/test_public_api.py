"""Each package's public names, and what importing the pure core drags in."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

PACKAGES = ["eventbus_core", "eventbus_client"]
CORE_MODULES = [
    "eventbus_core.codec",
    "eventbus_core.durations",
    "eventbus_core.envelope",
    "eventbus_core.errors",
    "eventbus_core.jsonrpc",
    "eventbus_core.locations",
    "eventbus_core.params",
    "eventbus_core.topics",
    "eventbus_core.trn",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_unique(package: str) -> None:
    names = importlib.import_module(package).__all__
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("module", PACKAGES + CORE_MODULES)
def test_every_name_in_all_exists(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from eventbus_core import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(importlib.import_module("eventbus_core").__all__)


# Modules the pure core must never load: UI, storage drivers, servers, clients.
FORBIDDEN = [
    "textual",
    "rich",
    "typer",
    "aiosqlite",
    "asyncpg",
    "asyncio",
    "uvloop",
    "eventbus_server",
    "eventbus_client",
    "eventbus_cli",
]


def test_importing_the_core_loads_no_io_or_ui_packages() -> None:
    code = (
        "import json, sys\n"
        "import eventbus_core\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(forbidden))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("module", CORE_MODULES)
def test_each_core_module_alone_loads_no_io_or_ui_packages(module: str) -> None:
    code = (
        "import json, sys\n"
        f"import {module}\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(forbidden))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(out.stdout) == []


def test_the_client_never_loads_the_server_cli_or_textual() -> None:
    code = (
        "import json, sys, eventbus_client\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'textual', 'typer', 'eventbus_server', 'eventbus_cli', 'aiosqlite', 'asyncpg'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_the_mcp_sdk_loads_only_where_mcp_is_used() -> None:
    """A bus without an `mcp` route, and `eventbus --help`, never import the SDK (it costs ~1 s)."""
    code = (
        "import json, sys\n"
        "import eventbus_server.app, eventbus_server.rules.tools.invoke, eventbus_cli.main\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'mcp', 'mcp_types', 'uvicorn', 'starlette'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert json.loads(out) == []
