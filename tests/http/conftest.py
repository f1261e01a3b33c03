"""A bus with its HTTP side on loopback (port 0 for both), and an httpx client on it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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
async def http_app(
    tmp_path: Path, *buses: dict[str, Any], env: dict[str, str] | None = None
) -> AsyncIterator[EventBusApp]:
    async with start_buses(tmp_path, *buses, env=env) as app:
        yield app


@contextlib.asynccontextmanager
async def http_client(
    app: EventBusApp, bus_id: str = "web", **kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=app.http_url(bus_id), trust_env=False, timeout=10, **kwargs
    ) as client:
        yield client


def stuck_reader(address: tuple[str, int], request: bytes) -> socket.socket:
    """A client that sends `request` and never reads (a 4 KiB receive buffer)."""
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(address)
    stuck.sendall(request)
    return stuck


async def subscribed(app: EventBusApp, bus_id: str = "web") -> None:
    """Until the bus holds a subscription (the request above reached it)."""
    async with asyncio.timeout(10):
        while app.buses[bus_id].info()["stats"]["subscriptions"] == 0:
            await asyncio.sleep(0.01)
