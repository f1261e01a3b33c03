"""WAL checkpoints of the SQLite backend, off the event loop and off the commit path.

SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past
`wal_autocheckpoint` pages (1,000 by default), on whichever thread commits,
and small commits run on the event loop thread (store.py, `_inline`). A
one-event commit writes about 7 pages (the table and its indexes), so one
emit in ~140 copied the WAL into the file and fsynced it (5-20 ms) while
every connection of the bus waited.

So the writer runs with `wal_autocheckpoint = 0` and `Checkpoints` does it:

- **Beside the commits.** Once about `every_pages` pages were committed since
  the last checkpoint, a PASSIVE checkpoint runs on a connection and thread
  of its own. PASSIVE takes no lock a commit needs: commits go on meanwhile.
- **Bounded.** A checkpoint copies only what was committed when it began, and
  SQLite rewinds the WAL to its start only when a commit finds all of it
  copied, which under a steady load never happens: the WAL would grow
  without end. So once it holds `rewind_pages`, the next checkpoint runs on
  the writer's own thread, between two commits (under the store's write
  lock, so no commit is inline meanwhile): it copies only what the last
  background one left, and the next commit rewinds the WAL, which
  `journal_size_limit` then trims back. A reader on an old snapshot can
  keep even that from copying everything; past `truncate_pages` the writer's
  checkpoint is a TRUNCATE, which waits (busy_timeout) for readers to move on.

Durability is unchanged: a commit is durable once in the WAL (synchronous
NORMAL: against a process crash; FULL: against power loss, an fsync per
commit), checkpointed or not; a checkpoint fsyncs the WAL before it copies a
page out of it, and the file after.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable

__all__ = ["CHECKPOINT_PAGES", "Checkpoints", "checkpoint"]

log = logging.getLogger("eventbus.storage")

#: Pages committed between two background checkpoints (16 MiB of 4 KiB pages). Few
#: large checkpoints cost less than many small ones: the same hot pages (each
#: index's last leaf) are in the WAL many times and copied once.
CHECKPOINT_PAGES = 4000
#: The WAL is rewound from this many times `every_pages` (64 MiB by default)...
REWIND_FACTOR = 4
#: ...and truncated, waiting for readers, from this many (256 MiB).
TRUNCATE_FACTOR = 16

#: Pages a commit writes besides its rows': the table's and each index's leaf, about.
PAGES_PER_COMMIT = 7
#: Rows of a batch per page written, about (~100-byte events, six indexes).
ROWS_PER_PAGE = 6


def checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """`PRAGMA wal_checkpoint(mode)`: (busy, pages in the WAL, pages copied)."""
    busy, wal_pages, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return busy, wal_pages, copied


class Checkpoints:
    """Decides when to checkpoint and where; `committed()` after each commit.

    `background(mode)` runs a checkpoint on the checkpointer's connection,
    `on_writer(mode)` on the writer's, between commits; both answer what
    `checkpoint` does. `log_prefix` starts its log lines (`bus=ID `).
    """

    def __init__(
        self,
        background: Callable[[str], Awaitable[tuple[int, int, int]]],
        on_writer: Callable[[str], Awaitable[tuple[int, int, int]]],
        *,
        every_pages: int = CHECKPOINT_PAGES,
        log_prefix: str = "",
    ) -> None:
        self._background = background
        self._on_writer = on_writer
        self.every_pages = every_pages
        self.rewind_pages = REWIND_FACTOR * every_pages
        self.truncate_pages = TRUNCATE_FACTOR * every_pages
        self._log_prefix = log_prefix
        #: Pages committed since the last checkpoint began, estimated.
        self._pending = 0
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Checkpoints run so far, by where: for tests and bus_info.
        self.runs = {"background": 0, "writer": 0}

    @staticmethod
    def wal_bytes_kept(every_pages: int) -> int:
        """The WAL size (bytes, 4 KiB pages) the file is cut back to when it rewinds."""
        return REWIND_FACTOR * every_pages * 4096

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sqlite wal checkpoints")

    async def stop(self) -> None:
        """Cancel the task and wait for it (and the checkpoint it may be running)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def committed(self, rows: int = 0) -> None:
        """Count a commit of `rows` rows (0: not events); wake the task once enough pages are."""
        self._pending += PAGES_PER_COMMIT + rows // ROWS_PER_PAGE
        if self._pending >= self.every_pages:
            self._due.set()

    async def _run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            self._pending = 0
            try:
                await self._checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next commits try again; the WAL keeps them meanwhile
                log.warning("%sWAL checkpoint failed: %s", self._log_prefix, exc)

    async def _checkpoint(self) -> None:
        _, wal_pages, _ = await self._background("PASSIVE")
        self.runs["background"] += 1
        if wal_pages < self.rewind_pages:
            return
        mode = "TRUNCATE" if wal_pages >= self.truncate_pages else "PASSIVE"
        busy, wal_pages, copied = await self._on_writer(mode)
        self.runs["writer"] += 1
        if busy or copied < wal_pages:
            log.info(
                "%sWAL checkpoint left %d of %d pages to copy (a reader holds them)",
                self._log_prefix,
                wal_pages - copied,
                wal_pages,
            )
