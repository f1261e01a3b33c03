"""Tools for `python` routes in the rule tests: they record every call here.

Tests reset `CALLS`/`STATE` and read them back; the bus runs in the test's
process, so the module is the same object on both sides.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

CALLS: list[dict[str, Any]] = []
STATE: dict[str, Any] = {"running": 0, "peak": 0, "fail_first": 0, "refuse": set()}
PER_FIRING: Counter[int] = Counter()


#: What `stuck` calls wait for: a tool that hangs until the test lets it go.
RELEASE = threading.Event()


def reset(*, fail_first: int = 0) -> None:
    CALLS.clear()
    PER_FIRING.clear()
    STATE.update(running=0, peak=0, fail_first=fail_first, refuse=set())
    RELEASE.clear()


def echo(request: dict[str, Any]) -> Any:
    CALLS.append(request)
    return {"echo": request["input"], "tool": request["tool_id"]}


async def slow(request: dict[str, Any]) -> Any:
    """Sleeps `input.sleep_s`, tracking how many calls run at once."""
    CALLS.append(request)
    STATE["running"] += 1
    STATE["peak"] = max(STATE["peak"], STATE["running"])
    try:
        await asyncio.sleep(float((request.get("input") or {}).get("sleep_s", 0.05)))
    finally:
        STATE["running"] -= 1
    return {"slept": True}


def flaky(request: dict[str, Any]) -> Any:
    """Fails the first `fail_first` tries of each firing, then succeeds."""
    CALLS.append(request)
    PER_FIRING[request["firing_id"]] += 1
    if PER_FIRING[request["firing_id"]] <= STATE["fail_first"]:
        raise RuntimeError(f"try {PER_FIRING[request['firing_id']]} failed on purpose")
    return {"tries": PER_FIRING[request["firing_id"]]}


def picky(request: dict[str, Any]) -> Any:
    """Fails every try while `input.n` is in STATE["refuse"] (a test empties it to let a retry pass)."""
    CALLS.append(request)
    n = (request.get("input") or {}).get("n")
    if n in STATE["refuse"]:
        raise RuntimeError(f"n={n} refused on purpose")
    return {"n": n}


def record(request: dict[str, Any]) -> Any:
    """Appends `firing_id event_id` to $EVENTBUS_TOOL_LOG when reached, then works 20 ms.

    For the crash test: the server runs in a subprocess, so calls are counted in a file.
    """
    import os
    import time

    with open(os.environ["EVENTBUS_TOOL_LOG"], "a") as log:
        log.write(f"{request['firing_id']} {request['event']['event_id']}\n")
    time.sleep(0.02)
    return {"done": request["event"]["event_id"]}


def sized(request: dict[str, Any]) -> Any:
    """A string of `input.chars` x's."""
    CALLS.append(request)
    return "x" * request["input"]["chars"]


async def unencodable(request: dict[str, Any]) -> Any:
    """A result JSON cannot encode."""
    CALLS.append(request)
    return {"tags": {"a", "b"}}


def nul(request: dict[str, Any]) -> Any:
    """A result PostgreSQL cannot store: text with \\u0000 in it."""
    return {"text": "before\x00after"}


def stuck(request: dict[str, Any]) -> Any:
    """A sync tool that hangs (until RELEASE is set): its call times out, its thread stays."""
    RELEASE.wait(60)
    return {"released": True}
