"""Real servers on ephemeral loopback ports, and real clients on top.

`start_buses(...)` runs an EventBusApp in the test's event loop with the
given bus configs (port 0 everywhere) and shuts it down in `finally`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_core.config import parse_config
from eventbus_server.app import EventBusApp
from tests import postgres

_topic_counter = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Every PostgreSQL schema a test made goes when the run ends."""
    yield
    postgres.drop_schemas()


@contextlib.asynccontextmanager
async def start_buses(
    base_dir: Path, *buses: dict[str, Any], env: dict[str, str] | None = None
) -> AsyncIterator[EventBusApp]:
    """Run these buses (listen defaults to 127.0.0.1:0) until the block ends."""
    raw = [{"listen": "127.0.0.1:0", **bus} for bus in buses]
    config = parse_config(raw, base_dir=base_dir, env=env if env is not None else dict(os.environ))
    app = EventBusApp(config)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


@pytest.fixture
def unique_topic() -> str:
    """A topic no other test uses, so assertions see only their own events."""
    return f"t{os.getpid()}.n{next(_topic_counter)}"


@pytest.fixture(params=["memory", "sqlite"])
def bus_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A plain bus, once in memory and once on a real SQLite file."""
    if request.param == "memory":
        return {"id": "test", "persist": False}
    return {"id": "test", "persist": True, "storage_path": str(tmp_path / "test.db")}


@pytest.fixture
async def app(bus_config: dict[str, Any], tmp_path: Path) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, bus_config) as running:
        yield running


@pytest.fixture
async def client(app: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(app.url("test")) as bus:
        yield bus
