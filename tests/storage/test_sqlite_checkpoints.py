"""SQLite WAL checkpoints: never by a commit, beside the commits, and the WAL stays bounded."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from eventbus_core.event import NewEvent
from eventbus_server.storage.sqlite import SqliteStorage

EVERY_PAGES = 100
COMMITS = 3000


def _event(n: int) -> NewEvent:
    return NewEvent(
        topic="load.one", payload={"repo": "acme/api", "n": n}, timestamp=1_764_300_000_000 + n
    )


async def test_commits_do_not_checkpoint_and_the_wal_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    storage = SqliteStorage(path, checkpoint_pages=EVERY_PAGES)
    await storage.open()
    wal = Path(f"{path}-wal")
    largest = 0
    try:
        assert storage._writer is not None
        autocheckpoint = storage._writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert autocheckpoint == (0,)  # no COMMIT (one may run on the event loop) checkpoints
        # A sustained load of one-event commits (inline, on the loop), as a client
        # awaiting each ack makes: ~7 pages each, ~88 MB of WAL were none copied back.
        for n in range(COMMITS):
            await storage.append([_event(n)])
            await asyncio.sleep(0)
            largest = max(largest, wal.stat().st_size)
        checkpoints = storage._checkpoints
        assert checkpoints is not None
        assert checkpoints.runs["background"] > 0
        assert checkpoints.runs["writer"] > 0  # which let the WAL rewind
        assert await storage.count() == COMMITS
    finally:
        await storage.close()
    # Never copied back, the WAL would reach ~86 MB; rewound from 4 x 100 pages, it
    # stays at a few MB (what commits add while a checkpoint runs comes on top).
    assert largest < 32 * 2**20, largest
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM event_log").fetchone() == (COMMITS,)


async def test_consumer_fetches_and_acks_on_the_loop_count_toward_checkpoints(
    tmp_path: Path,
) -> None:
    """A worker draining a backlog one event at a time, with no emits meanwhile: its fetches
    and acks commit on the loop (durability normal), and each counts toward the next
    checkpoint, so the WAL rewinds instead of growing until the bus restarts."""
    from eventbus_core.event import now_ms
    from eventbus_server.storage import EventQuery
    from eventbus_server.storage.consumers import ConsumerConfig, Scan

    path = tmp_path / "bus.db"
    storage = SqliteStorage(path, checkpoint_pages=EVERY_PAGES)
    await storage.open()
    wal = Path(f"{path}-wal")
    scan = Scan(EventQuery(topic="load.one"), None, 10_000_000)
    largest = 0
    try:
        await storage.append([_event(n) for n in range(COMMITS // 2)])
        await storage.put_consumer("workers", ConsumerConfig(), 0, now_ms())
        checkpoints = storage._checkpoints
        assert checkpoints is not None
        before = dict(checkpoints.runs)
        for _ in range(COMMITS // 2):
            fetched = await storage.fetch_leases("workers", now_ms(), 1, scan)
            assert fetched is not None and len(fetched.leased) == 1
            [(event, _)] = fetched.leased
            assert await storage.settle("workers", [event.event_id], "ack", now_ms()) == (1, [])
            await asyncio.sleep(0)
            largest = max(largest, wal.stat().st_size)
        assert checkpoints.runs["background"] > before["background"]
        assert checkpoints.runs["writer"] > before["writer"]
    finally:
        await storage.close()
    # 3,000 commits of ~7 pages never copied back would be ~86 MB of WAL.
    assert largest < 32 * 2**20, largest
