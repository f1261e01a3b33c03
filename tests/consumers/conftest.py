"""A bus on each storage, with a consumer client on top."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests import postgres
from tests.conftest import start_buses


def bus_on(kind: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The config of a bus `work` on `kind` storage."""
    bus: dict[str, Any] = {"id": "work", **extra}
    if kind == "memory":
        bus.setdefault("memory_buffer", 100_000)  # the ring must hold every event a test emits
    elif kind == "sqlite":
        bus.update(persist=True, storage_path=str(tmp_path / "work.db"))
    elif kind == "postgres":
        bus.update(persist=True, storage_url=postgres.storage_url(tmp_path))
    return bus


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        postgres.require()
    return str(request.param)


@pytest.fixture
async def work_app(storage_kind: str, tmp_path: Path) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, bus_on(storage_kind, tmp_path)) as app:
        yield app


@pytest.fixture
async def bus(work_app: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(work_app.url("work")) as client:
        yield client
