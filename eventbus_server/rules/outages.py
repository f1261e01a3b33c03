"""Waiting out a storage outage, for the steps of a firing that must reach storage.

A firing whose emit on its own bus (an `EmitEvent`, or a tool's result to
`result_topic`) or whose final record meets `-32008` has not failed: the
database restarted, or a disk filled and was freed. Retrying such a step spends none of the rule's
attempts, so a firing does not become a dead letter for the bus's own outage.
It waits, doubling from 0.1 s to 5 s, for as long as the outage lasts; if the
bus stops first, the firing stays `pending` and runs again at the next start
(or on another node of shared storage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from eventbus_core.errors import StorageUnavailable

log = logging.getLogger("eventbus.rules")

T = TypeVar("T")

FIRST_WAIT_S = 0.1


async def through_outages(step: Callable[[], Awaitable[T]], *, doing: Callable[[], str]) -> T:
    """`step()`, again after each StorageUnavailable until it works; `doing()` names it
    in the one WARNING line an outage logs (e.g. "bus=x firing=3 emits to 'done'").

    The first try is a plain call: on the firing path, where storage is almost always up,
    neither the retrying machinery nor the log line's text is built unless it fails."""
    try:
        return await step()
    except StorageUnavailable as exc:
        log.warning("%s once storage is back: %s", doing(), exc)
    await asyncio.sleep(FIRST_WAIT_S)
    retrying = AsyncRetrying(  # then 0.2, 0.4, … 5 s between tries
        retry=retry_if_exception_type(StorageUnavailable),
        wait=wait_exponential(multiplier=2 * FIRST_WAIT_S, max=5.0),
        stop=stop_never,
        reraise=True,
    )

    async def attempt() -> T:
        # A coroutine function, so tenacity awaits it (it calls a plain callable, such as
        # a lambda returning a coroutine, without awaiting).
        return await step()

    return await retrying(attempt)
