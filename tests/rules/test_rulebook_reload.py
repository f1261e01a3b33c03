"""A rule book told that storage changed (another node's NOTIFY) reloads, and a
notice that comes while a reload is reading storage makes one more reload:
the change behind it is never missed, however the notices bunch up. A write
of its own whose outcome it cannot know makes it reload too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventbus_core.errors import StorageUnavailable
from eventbus_server.rules.rulebook import RuleBook
from eventbus_server.storage.base import StoredRule
from eventbus_server.storage.memory.store import MemoryStorage


class SlowReads(MemoryStorage):
    """Memory storage whose `load_rules` reads, then waits for `release` before answering."""

    def __init__(self) -> None:
        super().__init__(100)
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.reads = 0

    async def load_rules(self) -> list[StoredRule]:
        rules = await super().load_rules()
        self.reads += 1
        self.reading.set()
        await self.release.wait()
        return rules


def _body(rule_id: str, topic: str) -> dict[str, Any]:
    return {"id": rule_id, "topic": topic, "action": {"type": "EmitEvent", "topic": "out"}}


async def test_a_notice_during_a_reload_makes_another_that_sees_its_change() -> None:
    storage = SlowReads()
    book = RuleBook(storage, bus_id="b", accepted_by=dict)
    await storage.put_rule("early", _body("early", "a.b"), True, 1)
    book.reload_soon()
    await storage.reading.wait()  # the first reload has read storage: only "early"
    await storage.put_rule("late", _body("late", "a.*"), True, 2)
    book.reload_soon()  # the notice of "late" comes while that reload runs
    storage.release.set()
    for _ in range(200):
        if book.compiled("late") is not None:
            break
        await asyncio.sleep(0.01)
    assert [rule.id for rule in book.index.candidates("a.b")] == ["early", "late"]
    assert storage.reads == 2
    await book.close()


async def test_a_burst_of_notices_makes_few_reloads() -> None:
    storage = SlowReads()
    storage.release.set()
    book = RuleBook(storage, bus_id="b", accepted_by=dict)
    for i in range(50):
        await storage.put_rule(f"r{i}", _body(f"r{i}", f"t{i}"), True, i)
        book.reload_soon()
    for _ in range(200):
        if len(book.index) == 50:
            break
        await asyncio.sleep(0.01)
    assert len(book.index) == 50
    assert storage.reads < 50
    await book.close()


class LostAfterCommit(MemoryStorage):
    """Memory storage whose `put_rule` stores the rule, then reports the connection lost:
    as PostgreSQL may when the connection drops after COMMIT went out."""

    def __init__(self) -> None:
        super().__init__(100)

    async def put_rule(
        self, rule_id: str, body: dict[str, Any], enabled: bool, now_ms: int
    ) -> bool:
        await super().put_rule(rule_id, body, enabled, now_ms)
        raise StorageUnavailable("connection lost")


async def test_a_write_that_fails_after_it_committed_makes_the_book_reload() -> None:
    """This node skips notices of its own changes, so nothing else would tell it."""
    storage = LostAfterCommit()
    book = RuleBook(storage, bus_id="b", accepted_by=dict)
    with pytest.raises(StorageUnavailable):
        await book.register(_body("kept", "a.b"), replace=False)
    for _ in range(200):
        if book.holds("kept"):
            break
        await asyncio.sleep(0.01)
    assert book.holds("kept")
    assert book.reloads == 1
    await book.close()
