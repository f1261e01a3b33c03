"""Functions for `python` tool routes in tests (`tests.rules.tools.tool_functions:echo`).

`CALLS` records every body a recording function received, so tests can count
calls per firing_id; call `reset()` at the start of a test that counts.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

CALLS: list[dict[str, Any]] = []
_attempts: collections.Counter[int] = collections.Counter()


def reset() -> None:
    CALLS.clear()
    _attempts.clear()


def count(firing_id: int | None = None) -> int:
    return len(CALLS) if firing_id is None else sum(1 for c in CALLS if c["firing_id"] == firing_id)


def echo(body: dict[str, Any]) -> dict[str, Any]:
    """Sync: the body it received."""
    CALLS.append(body)
    return body


async def aecho(body: dict[str, Any]) -> dict[str, Any]:
    """Async: the body it received."""
    CALLS.append(body)
    await asyncio.sleep(0)
    return body


def boom(body: dict[str, Any]) -> None:
    CALLS.append(body)
    raise ValueError(f"bad input {body['input']!r}")


async def aboom(body: dict[str, Any]) -> None:
    CALLS.append(body)
    raise RuntimeError("async tool failed")


async def slow(body: dict[str, Any]) -> dict[str, Any]:
    """Async: sleeps `input.sleep_s` (default 5 s) first."""
    CALLS.append(body)
    await asyncio.sleep((body.get("input") or {}).get("sleep_s", 5.0))
    return body


def slow_sync(body: dict[str, Any]) -> dict[str, Any]:
    """Sync: sleeps `input.sleep_s` (default 0.2 s) in its worker thread."""
    CALLS.append(body)
    time.sleep((body.get("input") or {}).get("sleep_s", 0.2))
    return body


def flaky(body: dict[str, Any]) -> dict[str, Any]:
    """Fails the first `input.fail_times` (default 1) calls of each firing_id."""
    CALLS.append(body)
    _attempts[body["firing_id"]] += 1
    if _attempts[body["firing_id"]] <= (body.get("input") or {}).get("fail_times", 1):
        raise ConnectionError(f"planned failure {_attempts[body['firing_id']]}")
    return body


def sized(body: dict[str, Any]) -> str:
    """Sync: a string of `input.chars` x's (encoded: that many bytes plus two quotes)."""
    CALLS.append(body)
    return "x" * body["input"]["chars"]


async def unencodable(body: dict[str, Any]) -> Any:
    """Async: a value JSON cannot encode."""
    CALLS.append(body)
    return {"tags": {"a", "b"}}
