"""Retention (DESIGN §7 `retention {max_age, max_events}`): the oldest events pruned
in the background, every `max_age / 10` clamped to 1 to 60 s (every 60 s with only
`max_events`). Pruning goes by the events' `timestamp` field."""

from __future__ import annotations

import asyncio
import logging

from eventbus_core.config import RetentionConfig
from eventbus_core.errors import EventBusError
from eventbus_core.event import now_ms
from eventbus_server.storage.base import Storage
from eventbus_server.topic_table import TopicTable

__all__ = ["prune_forever"]

log = logging.getLogger("eventbus.bus")


async def prune_forever(
    retention: RetentionConfig, storage: Storage, topics: TopicTable, *, bus_id: str
) -> None:
    """Prune until cancelled; a storage outage skips a round (logged), never ends the loop.
    `topics` is reloaded after a round that pruned, so counts stay true."""
    interval_s = min(60.0, max(1.0, (retention.max_age or 600.0) / 10))
    while True:
        await asyncio.sleep(interval_s)
        try:
            min_ts = now_ms() - int(retention.max_age * 1000) if retention.max_age else None
            pruned = await storage.prune(max_events=retention.max_events, min_timestamp=min_ts)
            if pruned:
                topics.load(await storage.list_topics(), keep_last_id=True)
                log.info("bus=%s retention pruned=%d", bus_id, pruned)
        except EventBusError as exc:
            log.warning("bus=%s retention skipped: %s", bus_id, exc)
