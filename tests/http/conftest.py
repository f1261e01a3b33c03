"""A bus with its HTTP side on loopback (port 0 for both), and an httpx client on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from eventbus_server.app import EventBusApp
from tests.conftest import start_buses


def http_bus(bus_id: str = "web", **settings: Any) -> dict[str, Any]:
    """A bus config with `http` on 127.0.0.1:0 (`http_settings` merged into its http object)."""
    http = {"listen": "127.0.0.1:0", **settings.pop("http", {})}
    return {"id": bus_id, "http": http, **settings}


@contextlib.asynccontextmanager
async def http_app(tmp_path: Path, *buses: dict[str, Any], env: dict[str, str] | None = None) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, *buses, env=env) as app:
        yield app


@contextlib.asynccontextmanager
async def http_client(app: EventBusApp, bus_id: str = "web", **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app.http_url(bus_id), trust_env=False, timeout=10, **kwargs) as client:
        yield client
