"""A `Bus` run in this process, without a listener: for tests of the bus's verbs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from eventbus_core.config import parse_config
from eventbus_server.bus import Bus


@contextlib.asynccontextmanager
async def running_bus(tmp_path: Path, **fields: Any) -> AsyncIterator[Bus]:
    """Bus `b` with these config fields, started, stopped when the block ends."""
    config = parse_config(
        [{"id": "b", "listen": "127.0.0.1:0", **fields}], base_dir=tmp_path
    ).buses[0]
    bus = Bus(config)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()
