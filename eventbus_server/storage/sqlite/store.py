"""The SQLite backend: one file per bus, WAL, one writer, a few readers.

Every `await` on aiosqlite is a hop to its connection thread and back (about
100 µs), so each operation here is one plain function run on that thread in a
single hop: `append` does BEGIN, executemany, COMMIT for a whole batch, and
`query` walks its cursor until it has `limit` matches. Reads use their own
connections, so a poll never queues behind a commit; WAL lets them read the
last committed state while the writer works. WAL checkpoints run on a
connection of their own too, beside the commits (checkpoints.py).

The file is the log: one deleted or replaced (`rm`, `mv`) under a running
bus would take every event with it, while SQLite goes on writing into the
unlinked inode it holds open. So every commit first checks that the file at
`path` is still the one opened (see `_check_file`); once it is not, every
call answers `StorageUnavailable` until the bus restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from eventbus_core.codec import dumps
from eventbus_core.errors import StorageUnavailable
from eventbus_core.event import Event
from eventbus_server.storage.base import (
    SCHEDULE_PAGE_BYTES,
    EventQuery,
    Firing,
    FiringQuery,
    FiringSelection,
    NewEvent,
    ScheduledEvent,
    Storage,
    StoredKey,
    StoredRule,
    StoredSchedule,
    TopicStats,
)
from eventbus_server.storage.consumers import (
    ConsumerConfig,
    Delivery,
    FetchResult,
    Scan,
    Settle,
    StoredConsumer,
)
from eventbus_server.storage.refusals import refusal
from eventbus_server.storage.sql import (
    INSERT_EVENT_QMARK,
    KEY_RECEIVED_AT,
    event_row,
)
from eventbus_server.storage.sqlite import consumers
from eventbus_server.storage.sqlite import rules as sqlite_rules
from eventbus_server.storage.sqlite import schedules as sqlite_schedules
from eventbus_server.storage.sqlite.checkpoints import CHECKPOINT_PAGES, Checkpoints, checkpoint
from eventbus_server.storage.sqlite.reading import read_events
from eventbus_server.storage.sqlite.schema import migrate, write_transaction

__all__ = ["SqliteStorage"]

log = logging.getLogger("eventbus.storage")

T = TypeVar("T")

#: Batches up to this size commit on the event loop thread (durability normal).
INLINE_MAX_EVENTS = 32

_FIND_KEYS = (
    "SELECT idempotency_key, MIN(event_id), timestamp FROM event_log"
    f" WHERE idempotency_key IN (SELECT value FROM json_each(?)) AND {KEY_RECEIVED_AT} >= ?"
    " GROUP BY idempotency_key"
)
# Count through the topic index alone; read only each topic's last row.
_LIST_TOPICS = (
    "SELECT t.topic, t.n, t.last_id, e.timestamp FROM"
    " (SELECT topic, COUNT(*) AS n, MAX(event_id) AS last_id FROM event_log GROUP BY topic) AS t"
    " JOIN event_log AS e ON e.event_id = t.last_id ORDER BY t.topic"
)
_PRUNE_AGE = "DELETE FROM event_log WHERE timestamp < ?"
_PRUNE_COUNT = (
    "DELETE FROM event_log WHERE event_id <="
    " (SELECT event_id FROM event_log ORDER BY event_id DESC LIMIT 1 OFFSET ?)"
)


async def _on_connection_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(sqlite3_connection, *args)` on `db`'s thread, in one hop.

    aiosqlite has no public way to run a callable there; `_execute` (and the
    `_conn` property) are what its own methods use, unchanged from 0.20 to
    0.22. This is the only place that touches them.
    """
    result: T = await db._execute(lambda: fn(db._conn, *args))  # type: ignore[no-untyped-call]
    return result


async def _thread_ended(connection: aiosqlite.Connection) -> None:
    """Wait for the thread of a connection that failed to open.

    aiosqlite then tells the thread to stop but does not wait for it; the
    thread reports its stop to the event loop, and dies with "Event loop is
    closed" if the loop is gone by then (seen in CI). `_thread` is private,
    unchanged from 0.20 to 0.22.
    """
    thread = connection._thread
    if thread.is_alive():
        await asyncio.to_thread(thread.join, 5.0)


async def _to_the_end(work: Awaitable[T]) -> T:
    """Await `work`, which runs on a connection thread; if cancelled, still wait for it.

    The thread finishes the call anyway and then reports back to the event
    loop; were the loop closed by then, the thread would die with "Event loop
    is closed". So no call (connect and close included) outlives its caller.
    """
    operation = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(operation)
    except asyncio.CancelledError:
        await asyncio.wait([operation])
        if not operation.cancelled() and operation.exception() is None:
            leftover = operation.result()
            if isinstance(leftover, aiosqlite.Connection):
                await leftover.close()  # a connect nobody is left to use
        raise


class SqliteStorage(Storage):
    """A bus's event log in a SQLite file (created, with its folder, when missing)."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        durability: Literal["normal", "full"] = "normal",
        readers: int = 2,
        busy_timeout_ms: int = 5000,
        bus_id: str | None = None,
        checkpoint_pages: int = CHECKPOINT_PAGES,
    ) -> None:
        """`bus_id` only names the bus in log lines; `checkpoint_pages`: see checkpoints.py."""
        self.path = Path(path)
        self._path_str = str(self.path)  # os.stat takes a str ~0.4 µs faster than a Path
        self.durability = durability
        self.busy_timeout_ms = busy_timeout_ms
        self.bus_id = bus_id
        self._reader_count = readers
        self._checkpoint_pages = checkpoint_pages
        self._writer: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: Checkpoints | None = None
        # Held while a write runs on the writer thread, so no inline write overlaps it.
        self._write_lock = asyncio.Lock()
        self._readers: list[aiosqlite.Connection] = []
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        #: (st_dev, st_ino) of the file opened, which `_check_file` expects at `path`.
        self._identity: tuple[int, int] | None = None
        #: Why the file at `path` is no longer the one opened: every call's answer from then on.
        self._lost: str | None = None
        # The writer's thread and the loop's may find it at once; it is said once.
        self._lost_lock = threading.Lock()

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot create the folder of {self.path}: {exc.strerror}"
            ) from exc
        # NORMAL in WAL mode survives a process crash; FULL also survives power loss.
        synchronous = "FULL" if self.durability == "full" else "NORMAL"
        try:
            self._writer = await self._connect(
                _setup_writer,
                synchronous,
                self.busy_timeout_ms,
                str(self.path),
                Checkpoints.wal_bytes_kept(self._checkpoint_pages),
            )
            self._identity = _identity(self._path_str)
            self._checkpointer = await self._connect(
                _setup_checkpointer, synchronous, self.busy_timeout_ms
            )
            self._checkpoints = Checkpoints(
                self._checkpoint_in_background,
                self._checkpoint_on_writer,
                every_pages=self._checkpoint_pages,
                log_prefix=self._bus_prefix,
            )
            self._checkpoints.start()
            for _ in range(self._reader_count):
                reader = await self._connect(_setup_reader, self.busy_timeout_ms)
                self._readers.append(reader)
                self._idle_readers.put_nowait(reader)
        except BaseException:
            # Leave nothing half-open: the caller sees the error, not stray threads.
            await self.close()
            raise

    async def close(self) -> None:
        checkpoints, self._checkpoints = self._checkpoints, None
        if checkpoints is not None:
            await checkpoints.stop()
        readers, writer, checkpointer = self._readers, self._writer, self._checkpointer
        self._writer, self._readers, self._checkpointer = None, [], None
        self._idle_readers = asyncio.Queue()
        for db in readers:
            await _to_the_end(db.close())
        if checkpointer is not None:
            await _to_the_end(checkpointer.close())
        if writer is not None:
            if self._file_lost() is not None:
                await self._checkpoint_lost_file(writer)
            await _to_the_end(writer.close())

    async def _checkpoint_lost_file(self, writer: aiosqlite.Connection) -> None:
        """Copy the WAL into the file the writer has open, wherever it is now, and empty the WAL.

        SQLite leaves the WAL of a file that moved behind on close, under the
        old name, and the next open of `path` would lay those pages over
        whatever file is there by then (a restored backup, the replacement):
        it would show, or be corrupted by, this file's pages. Checkpointed,
        the WAL left at `path` is empty, and a file moved away (rather than
        deleted) holds every event committed to it.
        """
        try:
            await _to_the_end(_on_connection_thread(writer, _checkpoint))
        except sqlite3.Error as exc:
            log.warning(
                "%scould not checkpoint the lost SQLite file %s: %s",
                self._bus_prefix,
                self.path,
                exc,
            )

    async def append(
        self, events: Sequence[NewEvent], *, keys_since_ts: int | None = None
    ) -> list[Event]:
        stored = self.append_now(events)
        if stored is not None:
            return stored
        first_id = await self._write(_insert, events, storing=events)
        return [new.stored(first_id + offset) for offset, new in enumerate(events)]

    def append_now(self, events: Sequence[NewEvent]) -> list[Event] | None:
        if not events:
            return []
        if not self._inline_ok(len(events)):
            return None
        first_id = self._commit_inline(_insert, events, rows=len(events), storing=events)
        return [new.stored(first_id + offset) for offset, new in enumerate(events)]

    def _inline_ok(self, size: int) -> bool:
        """Whether a commit is cheaper here than a hop to the writer thread and back.

        With synchronous=NORMAL a small commit costs ~20-40 µs, less than the
        ~100 µs thread hop; large batches and fsync-per-commit go to the thread,
        so the loop keeps reading requests meanwhile.
        """
        return (
            self.durability == "normal"
            and size <= INLINE_MAX_EVENTS
            and self._writer is not None
            and not self._write_lock.locked()
        )

    def _commit_inline(
        self, fn: Callable[..., T], *args: Any, rows: int = 0, storing: Sequence[NewEvent] = ()
    ) -> T:
        """A write on the writer's connection, here on the loop; counted toward the next
        checkpoint as `_write` counts its own (the writer never checkpoints by itself)."""
        result = self._inline(fn, *args, storing=storing)
        if self._checkpoints is not None:
            self._checkpoints.committed(rows)
        return result

    def _inline(self, fn: Callable[..., T], *args: Any, storing: Sequence[NewEvent] = ()) -> T:
        """`fn` on the writer's connection, here on the loop (a read, or see `_commit_inline`)."""
        assert self._writer is not None
        self._check_file()
        try:
            return fn(self._writer._conn, *args)
        except (sqlite3.Error, OverflowError) as exc:
            raise self._translate(exc, storing) from exc

    async def _small_write(self, rows: int, fn: Callable[..., T], *args: Any) -> T:
        """A write of about `rows` rows: on the loop when that is cheaper than the hop to
        the writer's thread and back (`_inline_ok`), else there."""
        if self._inline_ok(rows):
            return self._commit_inline(fn, *args)
        return await self._write(fn, *args)

    async def find_keys(self, keys: Sequence[str], since_ts: int) -> dict[str, StoredKey]:
        if not keys:
            return {}
        rows = await self._read(_fetch_all, _FIND_KEYS, (dumps(list(keys)).decode(), since_ts))
        return {key: StoredKey(event_id, timestamp) for key, event_id, timestamp in rows}

    async def query(self, query: EventQuery) -> list[Event]:
        if query.limit <= 0:
            return []
        return await self._read(read_events, query)

    async def list_topics(self) -> list[TopicStats]:
        rows = await self._read(_fetch_all, _LIST_TOPICS, ())
        return [TopicStats(*row) for row in rows]

    async def last_event_id(self) -> int:
        # sqlite_sequence remembers the highest id ever handed out, even once deleted.
        rows = await self._read(
            _fetch_all, "SELECT seq FROM sqlite_sequence WHERE name = 'event_log'", ()
        )
        return rows[0][0] if rows else 0

    async def count(self) -> int:
        rows = await self._read(_fetch_all, "SELECT COUNT(*) FROM event_log", ())
        return int(rows[0][0])

    async def prune(self, *, max_events: int | None, min_timestamp: int | None) -> int:
        return await self._write(_prune, max_events, min_timestamp)

    # -- durable consumers (the SQL lives in sqlite/consumers.py) -------------

    async def put_consumer(
        self, name: str, config: ConsumerConfig, cursor: int, now_ms: int
    ) -> bool:
        return await self._write(consumers.put_consumer, name, config, cursor, now_ms)

    async def load_consumer(self, name: str) -> StoredConsumer | None:
        return await self._read(consumers.load_consumer, name)

    async def list_consumers(self) -> list[StoredConsumer]:
        return await self._read(consumers.list_consumers)

    async def delete_consumer(self, name: str) -> bool:
        return await self._write(consumers.delete_consumer, name)

    async def fetch_leases(
        self, name: str, now_ms: int, limit: int, scan: Scan
    ) -> FetchResult | None:
        # A small write when its read of the log stops at what it leases however long the
        # log (consumers.reads_only_what_it_leases) and it has little else to do
        # (consumers.cheap_to_fetch): the same transaction turns every lease that ran out
        # into its next state, up to max_ack_pending (10,000) of them, ~60 ms of SQLite that
        # must not hold the loop. Nothing runs between the look and the fetch.
        if (
            consumers.reads_only_what_it_leases(scan)
            and self._inline_ok(limit)
            and self._inline(consumers.cheap_to_fetch, name, now_ms)
        ):
            return self._commit_inline(consumers.fetch_leases, name, now_ms, limit, scan)
        return await self._write(consumers.fetch_leases, name, now_ms, limit, scan)

    async def settle(
        self,
        name: str,
        event_ids: Sequence[int],
        action: Settle,
        now_ms: int,
        *,
        delay_ms: int | None = None,
        reason: str | None = None,
    ) -> tuple[int, list[Delivery]] | None:
        return await self._small_write(
            len(event_ids),
            consumers.settle_leased,
            name,
            event_ids,
            action,
            now_ms,
            delay_ms,
            reason,
        )

    async def dead_letters(self, name: str, after_id: int, limit: int) -> list[Delivery]:
        return await self._read(consumers.dead_letters, name, after_id, limit)

    async def redrive(
        self, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int
    ) -> int:
        return await self._write(consumers.redrive, name, event_ids, now_ms, limit)

    async def delivery_counts(self, name: str) -> dict[str, int]:
        return await self._read(consumers.delivery_counts, name)

    async def count_after(self, query: EventQuery, since: int, cap: int) -> int:
        return await self._read(consumers.count_after, query, since, cap)

    # -- rules, firings, cursor (the SQL lives in sqlite_rules) ---------------

    async def load_rules(self) -> list[StoredRule]:
        return await self._read(sqlite_rules.load_rules)

    async def put_rule(
        self, rule_id: str, body: dict[str, Any], enabled: bool, now_ms: int
    ) -> bool:
        return await self._write(sqlite_rules.put_rule, rule_id, body, enabled, now_ms)

    async def delete_rule(self, rule_id: str) -> bool:
        return await self._write(sqlite_rules.delete_rule, rule_id)

    async def set_rule_enabled(self, rule_id: str, enabled: bool, now_ms: int) -> bool:
        return await self._write(sqlite_rules.set_rule_enabled, rule_id, enabled, now_ms)

    async def claim_firings(self, pairs: Sequence[tuple[str, int]], cursor: int) -> list[Firing]:
        return await self._write(sqlite_rules.claim_firings, pairs, cursor)

    async def finish_firing(self, firing: Firing) -> None:
        await self._write(sqlite_rules.finish_firing, firing)

    async def rearm_firings(self, selection: FiringSelection) -> list[Firing]:
        return await self._write(sqlite_rules.rearm_firings, selection)

    async def pending_firings(self) -> list[Firing]:
        return await self._read(sqlite_rules.pending_firings)

    async def list_firings(self, query: FiringQuery) -> list[Firing]:
        return await self._read(sqlite_rules.list_firings, query)

    async def load_cursor(self) -> int | None:
        return await self._read(sqlite_rules.load_cursor)

    async def save_cursor(self, event_id: int) -> None:
        await self._write(sqlite_rules.save_cursor, event_id)

    # -- scheduled events and schedules (the SQL lives in sqlite_schedules) ----

    async def add_scheduled(
        self, items: Sequence[ScheduledEvent], *, max_pending: int
    ) -> list[ScheduledEvent]:
        return await self._write(sqlite_schedules.add_scheduled, items, max_pending)

    async def cancel_scheduled(self, schedule_id: str) -> bool:
        return await self._write(sqlite_schedules.cancel_scheduled, schedule_id)

    async def list_scheduled(
        self, *, after: tuple[int, str] | None, limit: int, max_bytes: int | None = None
    ) -> list[ScheduledEvent]:
        return await self._read(sqlite_schedules.list_scheduled, after, limit, max_bytes)

    async def put_schedule(
        self, schedule: StoredSchedule, *, replace: bool, max_schedules: int
    ) -> bool:
        return await self._write(sqlite_schedules.put_schedule, schedule, replace, max_schedules)

    async def get_schedule(self, schedule_id: str) -> StoredSchedule | None:
        return await self._read(sqlite_schedules.get_schedule, schedule_id)

    async def list_schedules(self, *, after_id: str | None, limit: int) -> list[StoredSchedule]:
        return await self._read(sqlite_schedules.list_schedules, after_id, limit)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._write(sqlite_schedules.delete_schedule, schedule_id)

    async def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, now_ms: int
    ) -> StoredSchedule | None:
        return await self._write(
            sqlite_schedules.set_schedule_enabled, schedule_id, enabled, now_ms
        )

    async def next_due(self) -> int | None:
        return await self._read(sqlite_schedules.next_due)

    async def append_due(self, now_ms: int, *, bus_id: str, limit: int) -> list[Event]:
        first_id, events = await self._write(
            sqlite_schedules.append_due, now_ms, bus_id, limit, SCHEDULE_PAGE_BYTES
        )
        return [new.stored(first_id + offset) for offset, new in enumerate(events)]

    # -- connections ---------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any, storing: Sequence[NewEvent] = ()) -> T:
        """Run a write on the writer's thread, after checking the file there (one hop).

        `storing`: the events it writes, if any, for a refusal to name.
        """
        async with self._write_lock:
            result: T = await self._call(self._writer, self._checked, fn, *args, storing=storing)
        if self._checkpoints is not None:
            self._checkpoints.committed(len(storing))
        return result

    async def _checkpoint_in_background(self, mode: str) -> tuple[int, int, int]:
        # No write lock: a checkpoint on its own connection lets commits go on meanwhile.
        return await self._call(self._checkpointer, self._checked, checkpoint, mode)

    async def _checkpoint_on_writer(self, mode: str) -> tuple[int, int, int]:
        # Between two commits: the next one then finds the WAL copied and rewinds it.
        async with self._write_lock:
            return await self._call(self._writer, self._checked, checkpoint, mode)

    def _checked(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        self._check_file()
        return fn(conn, *args)

    def _check_file(self) -> None:
        """Raise `StorageUnavailable` unless the file at `path` is still the one opened.

        Every commit runs this first, so no emit is acknowledged into a file
        that is gone. Checking each time is cheap, so there is no window to
        rate-limit it to: this costs about 1.3 µs, a one-event commit about
        50 µs (bench/sqlite_file_check.py).
        """
        lost = self._file_lost()
        if lost is not None:
            raise StorageUnavailable(lost)

    def _file_lost(self) -> str | None:
        """Why the file at `path` is not the one opened, or None while it is.

        The first time it is found gone or replaced, that is logged at ERROR;
        it stays lost for this storage's life (the message says to restart).
        """
        if self._lost is not None or self._identity is None:
            return self._lost
        try:
            identity = _identity(self._path_str)
        except (FileNotFoundError, NotADirectoryError):
            what = "was deleted or moved away while the bus ran"
            advice = "restart the bus (after putting the file back, or it starts a new, empty log)"
        except OSError:
            return None  # e.g. a folder we may no longer search: that says nothing about the file
        else:
            if identity == self._identity:
                return None
            what = "was replaced by another file while the bus ran"
            advice = "restart the bus to use the file now there"
        with self._lost_lock:
            if self._lost is None:
                self._lost = (
                    f"SQLite file {self.path} {what}; nothing more is written to it; {advice}"
                )
                log.error("%s%s", self._bus_prefix, self._lost)
        return self._lost

    @property
    def _bus_prefix(self) -> str:
        return f"bus={self.bus_id} " if self.bus_id else ""

    async def _connect(self, setup: Callable[..., None], *args: Any) -> aiosqlite.Connection:
        # Autocommit mode: every transaction here is an explicit BEGIN … COMMIT.
        # check_same_thread=False: small writer batches may run on the loop thread
        # (see `append`); every use of a connection is still serialised.
        connecting = aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db = await _to_the_end(connecting)
        except BaseException as exc:
            await _thread_ended(connecting)
            if isinstance(exc, sqlite3.Error):
                raise self._unavailable(exc) from exc
            raise
        try:
            await self._call(db, setup, *args)
        except BaseException:
            await _to_the_end(db.close())
            raise
        return db

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._readers:
            raise StorageUnavailable(f"SQLite storage {self.path} is not open")
        if self._lost is not None:
            # Reads fail as writes do: SQLite's readers of a deleted file fail on
            # their own (disk I/O error), and a replaced one would serve events
            # that are gone after the restart. One answer is easier to act on.
            raise StorageUnavailable(self._lost)
        # Hold on to this pool: a close() meanwhile swaps in a fresh one.
        idle = self._idle_readers
        db = await idle.get()
        try:
            if db not in self._readers:
                raise StorageUnavailable(f"SQLite storage {self.path} was closed")
            return await self._call(db, fn, *args)
        finally:
            idle.put_nowait(db)

    async def _call(
        self,
        db: aiosqlite.Connection | None,
        fn: Callable[..., T],
        *args: Any,
        storing: Sequence[NewEvent] = (),
    ) -> T:
        if db is None:
            raise StorageUnavailable(f"SQLite storage {self.path} is not open")
        try:
            return await _to_the_end(_on_connection_thread(db, fn, *args))
        except (sqlite3.Error, OverflowError) as exc:
            raise self._translate(exc, storing) from exc

    def _translate(
        self, exc: sqlite3.Error | OverflowError, storing: Sequence[NewEvent] = ()
    ) -> Exception:
        """The one place a sqlite3 error becomes the bus's.

        Locked, full, unreadable or corrupt files are the storage's trouble
        (-32008); a value SQLite cannot hold (an integer beyond int64, a
        string or blob too big) is the client's (-32602); a constraint or SQL
        error is ours and stays a bug.
        """
        if isinstance(exc, OverflowError | sqlite3.DataError):
            return refusal("SQLite", exc, storing)
        if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
            return self._unavailable(exc)
        return exc

    def _unavailable(self, exc: sqlite3.Error) -> StorageUnavailable:
        # A deleted file shows up as "disk I/O error" to readers: say what happened.
        lost = self._file_lost()
        if lost is not None:
            return StorageUnavailable(lost)
        return StorageUnavailable(f"SQLite database {self.path} is unavailable: {exc}")


# -- what runs on the connection threads ----------------------------------------


def _setup_writer(
    conn: sqlite3.Connection,
    synchronous: str,
    busy_timeout_ms: int,
    where: str,
    wal_bytes_kept: int,
) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal_mode stays {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Commits never checkpoint (one could run on the event loop): checkpoints.py does.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    # When the WAL rewinds, a file grown past this (readers held it) is cut back.
    conn.execute(f"PRAGMA journal_size_limit = {int(wal_bytes_kept)}")
    # A 32 MiB page cache keeps the upper levels of the six indexes in memory as the log grows.
    conn.execute("PRAGMA cache_size = -32768")
    migrate(conn, where)


def _setup_checkpointer(conn: sqlite3.Connection, synchronous: str, busy_timeout_ms: int) -> None:
    # A checkpoint syncs as its own connection's `synchronous` says: as the writer's.
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")


def _setup_reader(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA query_only = ON")


def _identity(path: str) -> tuple[int, int]:
    """What tells one file from another at the same path.

    A new file cannot take the old one's inode number: the old inode stays
    allocated while this process holds it open, deleted or not.
    """
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _insert(conn: sqlite3.Connection, events: Sequence[NewEvent]) -> int:
    """Store a batch in one transaction; returns the first event's id."""
    if len(events) == 1:
        return _insert_one(conn, event_row(events[0]))
    rows = [event_row(e) for e in events]
    with write_transaction(conn):
        conn.executemany(INSERT_EVENT_QMARK, rows)
        last_id: int = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    # AUTOINCREMENT under the write lock hands out consecutive ids.
    return last_id - len(rows) + 1


def _insert_one(conn: sqlite3.Connection, row: tuple[Any, ...]) -> int:
    """`_insert` of one event, the lone emitter's commit, in the fewest steps.

    In autocommit mode one statement is its own transaction, committed when it
    ends and rolled back by SQLite if it fails, so BEGIN and COMMIT need no
    statements of their own; its id is the cursor's `lastrowid`. ~10 % less CPU
    per commit than the batch path, measured (see the commits that made it).
    """
    event_id = conn.execute(INSERT_EVENT_QMARK, row).lastrowid
    assert event_id is not None  # an INSERT's
    return event_id


def _prune(conn: sqlite3.Connection, max_events: int | None, min_timestamp: int | None) -> int:
    deleted = 0
    with write_transaction(conn):
        if min_timestamp is not None:
            deleted += conn.execute(_PRUNE_AGE, (min_timestamp,)).rowcount
        if max_events is not None:
            deleted += conn.execute(_PRUNE_COUNT, (max_events,)).rowcount
    return deleted


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()
