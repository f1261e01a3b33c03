"""The real PostgreSQL for tests: each test gets its own schema, dropped at the end of the run.

The server is `$EVENTBUS_TEST_POSTGRES_URL` (default: the one every machine
here has, postgresql://postgres@127.0.0.1:5432/test). Without one, PostgreSQL
tests skip with the reason, unless `EVENTBUS_REQUIRE_POSTGRES=1` (CI sets
it), where they fail: on CI they must run.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

ADMIN_URL = os.environ.get(
    "EVENTBUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRED = os.environ.get("EVENTBUS_REQUIRE_POSTGRES") == "1"
#: Every schema this run makes starts with this; `drop_schemas` removes them.
PREFIX = f"eventbus_test_{os.getpid()}_"


@functools.cache
def _unreachable() -> str | None:
    # A plain TCP probe: tests call this from inside their event loop.
    url = urlsplit(ADMIN_URL)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=3).close()
    except OSError as exc:
        return f"PostgreSQL at {ADMIN_URL} is not reachable ({exc})"
    return None


def reachable() -> bool:
    """Whether the test PostgreSQL answers (for tests where it is optional)."""
    return _unreachable() is None


def require() -> None:
    """Skip this test without PostgreSQL (fail instead when it is required)."""
    reason = _unreachable()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"{reason}; EVENTBUS_REQUIRE_POSTGRES=1 says these tests must run")
    pytest.skip(reason)


def schema_for(key: str | Path) -> str:
    """A schema name of this run, the same for the same key (so a test can reopen it)."""
    return PREFIX + hashlib.sha256(str(key).encode()).hexdigest()[:16]


def storage_url(key: str | Path) -> str:
    """A `storage_url` for a bus whose tables live in this key's own schema."""
    require()
    separator = "&" if "?" in ADMIN_URL else "?"
    return f"{ADMIN_URL}{separator}schema={schema_for(key)}"


async def _drop(like: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    try:
        names = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", like)
        for (name,) in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def drop_schemas() -> None:
    """Drop what this run made (and what killed runs left behind)."""
    if _unreachable() is not None:
        return
    asyncio.run(_drop(PREFIX.replace("_", r"\_") + "%"))
    for pid in _stale_pids():
        asyncio.run(_drop(f"eventbus\\_test\\_{pid}\\_%"))


def _stale_pids() -> list[int]:
    async def names() -> list[str]:
        conn = await asyncpg.connect(ADMIN_URL, timeout=3)
        try:
            return [
                r[0]
                for r in await conn.fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'eventbus\\_test\\_%'"
                )
            ]
        finally:
            await conn.close()

    pids = {
        int(name.split("_")[2]) for name in asyncio.run(names()) if name.split("_")[2].isdigit()
    }
    return [pid for pid in pids if not _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
