"""A SQLite file deleted or replaced under open storage: every call refuses, once logged.

SQLite itself goes on committing into the unlinked file it holds open, so
without the check an emit would be acknowledged into a file nobody will
ever open again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventbus_core.errors import StorageUnavailable
from eventbus_server.storage import NewEvent, SqliteStorage
from eventbus_server.storage.base import EventQuery
from eventbus_server.storage.sqlite.store import INLINE_MAX_EVENTS
from tests.sqlite_files import delete, replace


def events(n: int, topic: str = "t") -> list[NewEvent]:
    return [NewEvent(topic, {"n": i}, 1_000 + i) for i in range(n)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "bus.db", bus_id="lost")
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


LOSSES: dict[str, tuple[Callable[[Path], None], str]] = {
    "deleted": (delete, "was deleted or moved away while the bus ran"),
    "replaced": (replace, "was replaced by another file while the bus ran"),
}


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("size", [1, INLINE_MAX_EVENTS + 1], ids=["inline", "on-the-writer-thread"])
async def test_a_lost_file_refuses_every_write_and_says_so_once(
    store: SqliteStorage, loss: str, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    lose, what = LOSSES[loss]
    await store.append(events(size))
    lose(store.path)

    expected = rf"SQLite file {store.path} {what}; nothing more is written to it; restart the bus"
    with caplog.at_level(logging.ERROR, logger="eventbus.storage"):
        for _ in range(3):
            with pytest.raises(StorageUnavailable, match=expected):
                await store.append(events(size))
        with pytest.raises(StorageUnavailable, match=expected):
            await store.put_rule("r", {"topic": "t"}, True, 1)
        with pytest.raises(StorageUnavailable, match=expected):
            await store.save_cursor(5)
        # Reads answer the same: a replaced file would show events a restart forgets.
        with pytest.raises(StorageUnavailable, match=expected):
            await store.query(EventQuery())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        f"bus=lost SQLite file {store.path} {what}; nothing more is written to it"
    )


async def test_a_read_is_the_first_to_notice_a_deleted_file(store: SqliteStorage) -> None:
    await store.append(events(3))
    delete(store.path)
    # SQLite's reader fails on its own ("disk I/O error"); the bus says why.
    with pytest.raises(StorageUnavailable, match="was deleted or moved away"):
        await store.count()


async def test_a_file_that_is_still_there_is_not_lost(store: SqliteStorage, tmp_path: Path) -> None:
    await store.append(events(3))
    os.link(store.path, tmp_path / "hard-link.db")  # the same file under one more name
    assert [e.event_id for e in await store.append(events(2))] == [4, 5]


async def test_a_file_moved_away_keeps_every_event_and_the_new_one_stays_intact(
    tmp_path: Path,
) -> None:
    """SQLite leaves the WAL of a moved file under the old name; the next open would
    lay its pages over whatever file is there by then. The storage empties it into
    the moved file when it closes."""
    replacement = SqliteStorage(tmp_path / "replacement.db")
    await replacement.open()
    await replacement.append(events(50, topic="replacement"))
    await replacement.close()

    store = SqliteStorage(tmp_path / "bus.db")
    await store.open()
    try:
        acknowledged = await store.append(events(3000, topic="original"))
        os.rename(store.path, tmp_path / "moved-away.db")
        os.rename(tmp_path / "replacement.db", store.path)
        with pytest.raises(StorageUnavailable, match="was replaced by another file"):
            await store.append(events(1, topic="original"))
    finally:
        await store.close()

    moved = sqlite3.connect(tmp_path / "moved-away.db")
    try:
        assert moved.execute("SELECT COUNT(*), MAX(event_id) FROM event_log").fetchone() == (
            len(acknowledged),
            acknowledged[-1].event_id,
        )
    finally:
        moved.close()

    reopened = SqliteStorage(store.path)
    await reopened.open()
    try:
        assert [t.topic for t in await reopened.list_topics()] == ["replacement"]
        assert (await reopened.count(), await reopened.last_event_id()) == (50, 50)
    finally:
        await reopened.close()
