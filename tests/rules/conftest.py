"""A bus with rules on (memory and SQLite), its python tools, and a client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests import postgres
from tests.conftest import start_buses

from . import python_tools

TOOL_ROUTES = [
    {
        "match": "trn:user:test:python:echo:*",
        "kind": "python",
        "function": "tests.rules.python_tools:echo",
    },
    {
        "match": "trn:user:test:python:slow:*",
        "kind": "python",
        "function": "tests.rules.python_tools:slow",
    },
    {
        "match": "trn:user:test:python:flaky:*",
        "kind": "python",
        "function": "tests.rules.python_tools:flaky",
    },
    {
        "match": "trn:user:test:python:nul:*",
        "kind": "python",
        "function": "tests.rules.python_tools:nul",
    },
]


def rules_bus(kind: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    bus: dict[str, Any] = {
        "id": "rules",
        "enable_rules": True,
        "tools": TOOL_ROUTES,
        "retry": {"attempts": 3, "backoff_ms": 1},
    }
    if kind == "sqlite":
        bus.update(persist=True, storage_path=str(tmp_path / "rules.db"))
    elif kind == "postgres":
        bus.update(persist=True, storage_url=postgres.storage_url(tmp_path))
    return {**bus, **overrides}


async def settle(app: EventBusApp, bus_id: str = "rules") -> None:
    """Wait until every event so far is matched and every firing it caused has finished."""
    await asyncio.wait_for(app.buses[bus_id].wait_idle(), timeout=10)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_tools() -> None:
    python_tools.reset()


@pytest.fixture
async def rules_app(storage_kind: str, tmp_path: Path) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, rules_bus(storage_kind, tmp_path)) as app:
        yield app


@pytest.fixture
async def bus(rules_app: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(rules_app.url("rules")) as client:
        yield client
