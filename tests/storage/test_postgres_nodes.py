"""PostgreSQL storage shared by two nodes: who runs an unfinished firing, who stores a key,
who hears of a rule change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventbus_core.event import now_ms
from eventbus_server.storage import EventQuery, KeysTaken, NewEvent, PostgresStorage, StoredKey
from tests import postgres

T0 = 1_795_900_000_000


async def test_a_live_nodes_firings_are_its_own_and_a_gone_nodes_are_adopted_once(
    tmp_path: Path,
) -> None:
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


async def test_an_idempotency_key_another_node_stored_meanwhile_is_refused_in_the_append(
    tmp_path: Path,
) -> None:
    url = postgres.storage_url(tmp_path)
    a, b = (PostgresStorage(url, bus_id="keys") for _ in range(2))
    for node in (a, b):
        await node.open()
    try:
        assert await a.find_keys(["k-1"], since_ts=0) == {}  # a looks: the key is free
        [first] = await b.append(
            [NewEvent("t", 1, T0, idempotency_key="k-1")], keys_since_ts=0
        )  # b stores it
        with pytest.raises(KeysTaken) as taken:  # a's append sees b's event under the lock
            await a.append(
                [
                    NewEvent("t", 2, T0, idempotency_key="k-2"),
                    NewEvent("t", 3, T0, idempotency_key="k-1"),
                ],
                keys_since_ts=0,
            )
        assert taken.value.found == {"k-1": StoredKey(first.event_id, T0)}
        assert [e.payload for e in await a.query(EventQuery())] == [1]  # and stored nothing
        # Outside the dedup window (it opens after the first was received) it does not count.
        [again] = await a.append(
            [NewEvent("t", 4, T0, idempotency_key="k-1")], keys_since_ts=now_ms() + 1
        )
        assert again.event_id > first.event_id
    finally:
        for node in (a, b):
            await node.close()


async def test_a_rule_change_is_reported_to_the_other_node_and_not_to_its_own(
    tmp_path: Path,
) -> None:
    url = postgres.storage_url(tmp_path)
    a, b = (PostgresStorage(url, bus_id="rulenotes") for _ in range(2))
    heard: dict[str, list[str]] = {"a": [], "b": []}
    committed: dict[str, asyncio.Queue[int]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}

    def watching(name: str, node: PostgresStorage) -> asyncio.Task[None]:
        return asyncio.create_task(
            node.watch(committed[name].put_nowait, lambda: heard[name].append("rules"))
        )

    for node in (a, b):
        await node.open()
    watchers = [watching("a", a), watching("b", b)]
    try:
        for name in ("a", "b"):  # each listener has connected and caught up once
            assert await asyncio.wait_for(committed[name].get(), 10) == 0
        assert heard == {"a": ["rules"], "b": ["rules"]}
        body = {"id": "r", "topic": "t", "action": {"type": "EmitEvent", "topic": "u"}}
        await a.put_rule("r", body, True, T0)
        await a.set_rule_enabled("r", False, T0)
        await a.delete_rule("r")
        # An append after them: once each listener has its notice, it has had theirs.
        [event] = await a.append([NewEvent("t", 1, T0)])
        for name in ("a", "b"):
            assert await asyncio.wait_for(committed[name].get(), 10) == event.event_id
        assert heard == {"a": ["rules"], "b": ["rules"] * 4}
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for node in (a, b):
            await node.close()
