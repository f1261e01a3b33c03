"""The log reader every internal reader of the log goes through, on every backend."""

from __future__ import annotations

from eventbus_server.storage import EventQuery, NewEvent, Storage
from eventbus_server.storage.base import READ_PAGE_BYTES
from eventbus_server.storage.reader import READ_PAGE, LogReader

T0 = 1_764_000_000_000


async def _fill(storage: Storage, count: int, *, topic: str = "t", size: int = 10) -> None:
    for start in range(0, count, 1000):
        batch = [
            NewEvent(topic=topic, payload="x" * size, timestamp=T0 + i)
            for i in range(start, min(count, start + 1000))
        ]
        await storage.append(batch)


async def test_pages_cover_the_log_once_in_order(storage: Storage) -> None:
    await _fill(storage, 2500)
    pages = [page async for page in LogReader(storage).pages(0)]
    assert [len(p) for p in pages] == [READ_PAGE, READ_PAGE, 500]
    ids = [e.event_id for p in pages for e in p]
    assert ids == sorted(set(ids)) and len(ids) == 2500


async def test_pages_stop_at_up_to_and_start_after_since(storage: Storage) -> None:
    await _fill(storage, 50)
    pages = [page async for page in LogReader(storage).pages(10, up_to=20)]
    assert [e.event_id for p in pages for e in p] == list(range(11, 21))
    assert await LogReader(storage).page(20, up_to=20) == []


async def test_a_page_is_bounded_in_bytes(storage: Storage) -> None:
    await _fill(storage, 40, size=1024 * 1024)  # 40 MiB of payload: five times the page bound
    reader = LogReader(storage)
    first = await reader.page(0)
    if storage.kind == "memory":
        assert len(first) == 40  # a page of a memory ring only refers to events it already holds
    else:
        assert 1 <= len(first) < 40
        assert sum(len(e.payload) for e in first) <= READ_PAGE_BYTES + 1024 * 1024
    assert sum([len(p) async for p in reader.pages(0)]) == 40


async def test_pages_apply_a_filter(storage: Storage) -> None:
    await _fill(storage, 5, topic="a.x")
    await _fill(storage, 5, topic="b.x")
    pages = [page async for page in LogReader(storage).pages(0, match=EventQuery(topic="b.>"))]
    assert [e.topic for p in pages for e in p] == ["b.x"] * 5


async def test_one_event_by_id(storage: Storage) -> None:
    await _fill(storage, 3)
    reader = LogReader(storage)
    event = await reader.event(2)
    assert event is not None and event.event_id == 2 and event.timestamp == T0 + 1
    assert await reader.event(4) is None
    await storage.prune(max_events=1, min_timestamp=None)
    assert await reader.event(2) is None
