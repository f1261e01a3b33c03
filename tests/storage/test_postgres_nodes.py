"""PostgreSQL storage shared by two nodes: who runs an unfinished firing."""

from __future__ import annotations

from pathlib import Path

from eventbus_server.storage import PostgresStorage
from tests import postgres


async def test_a_live_nodes_firings_are_its_own_and_a_gone_nodes_are_adopted_once(tmp_path: Path) -> None:
    url = postgres.storage_url(tmp_path)
    a, b, c = (PostgresStorage(url, bus_id="nodes") for _ in range(3))
    for node in (a, b, c):
        await node.open()
    try:
        claimed = await a.claim_firings([("r", 1), ("r", 2)], cursor=2)
        assert await b.pending_firings() == []  # a is alive: they are a's to run

        await a.close()  # a stops (or dies): its lease goes with its connection
        adopted = await b.pending_firings()
        assert [f.firing_id for f in adopted] == [f.firing_id for f in claimed]
        assert await c.pending_firings() == []  # adopted once: now b's, and b is alive
        assert await b.pending_firings() == []  # nor does b adopt its own twice
    finally:
        for node in (a, b, c):
            await node.close()
