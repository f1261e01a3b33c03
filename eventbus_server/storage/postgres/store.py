"""The PostgreSQL backend (asyncpg): one schema per bus, shareable by several nodes.

Several `eventbus serve` processes may serve the same bus against one
database (DESIGN.md §8). Two things make that safe:

- **Ids in commit order.** Every append takes a transaction-level advisory
  lock before it draws ids, so batches commit in id order across nodes: once
  a reader sees event n, every event below n that will ever exist is
  visible too. Readers that page by `event_id > cursor` never skip one.
- **Who committed what.** Each append, and each rule change, sends a
  `NOTIFY` on the bus's channel inside its transaction (delivered at
  commit). `watch` listens on its own connection and tells the bus, which
  reads what it has not seen by cursor (see `feed.py`). A rule change's
  notice names the node that made it, and that node's `watch` leaves it
  out: its rule book applied the change already, and reloading every rule
  for each of its own registrations cost more than the registrations.

Lost connections and a database that is down are `StorageUnavailable`
(-32008, retryable); the pool reconnects by itself once the server is back.
So is a schema or table dropped under a running bus. Data PostgreSQL will
not hold (`\u0000` in a string, an integer beyond int64) is the client's
`InvalidParams` (-32602), see refusals.py. `_connection` is where asyncpg's
errors become these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from eventbus_core.errors import StorageUnavailable
from eventbus_core.event import Event
from eventbus_server.storage.base import (
    SCHEDULE_PAGE_BYTES,
    EventQuery,
    Firing,
    FiringQuery,
    FiringSelection,
    KeysTaken,
    NewEvent,
    ScheduledEvent,
    Storage,
    StoredKey,
    StoredRule,
    StoredSchedule,
    TopicStats,
    row_bytes,
)
from eventbus_server.storage.consumers import (
    ConsumerConfig,
    Delivery,
    FetchResult,
    Scan,
    Settle,
    StoredConsumer,
)
from eventbus_server.storage.postgres import consumers, rules
from eventbus_server.storage.postgres import schedules as pg_schedules
from eventbus_server.storage.postgres.rules import RULES_CHANGED, node_key, rules_changed
from eventbus_server.storage.postgres.schema import migrate, quote_ident, rowcount, schema_for_bus
from eventbus_server.storage.refusals import refusal
from eventbus_server.storage.sql import (
    INSERT_COLUMNS,
    INSERT_FIELDS,
    KEY_RECEIVED_AT,
    PROBE_CAPS,
    Select,
    event_from_row,
    event_row,
    pick_driver,
    range_probe,
    select_events,
)

__all__ = ["PostgresStorage", "split_storage_url"]

T = TypeVar("T")

log = logging.getLogger("eventbus.storage")


#: From this many events a batch goes in by COPY, below by one INSERT … unnest:
#: bench/pg_insert.py measured COPY ahead from 100 events (26k vs 23k ev/s) and
#: behind at 10 (an extra round trip). See bench/RESULTS.md.
COPY_MIN_EVENTS = 64

# One round trip: insert, notify with the last id, answer the first id.
# The unnest types follow INSERT_FIELDS (sql.py checks that order).
_INSERT = f"""
    WITH ins AS (
        INSERT INTO event_log ({INSERT_COLUMNS})
        SELECT * FROM unnest($1::text[], $2::jsonb[], $3::bigint[], $4::jsonb[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::bigint[])
        RETURNING event_id
    ), notice AS (SELECT pg_notify($10, MAX(event_id)::text) FROM ins)
    SELECT MIN(event_id) FROM ins, notice
"""
_NOTIFY_LAST = (
    "SELECT last_id FROM (SELECT currval('event_log_event_id_seq') AS last_id) AS s,"
    " LATERAL (SELECT pg_notify($1, s.last_id::text)) AS n"
)
_FIND_KEYS = (
    "SELECT DISTINCT ON (idempotency_key) idempotency_key, event_id, timestamp FROM event_log"
    f" WHERE idempotency_key = ANY($1::text[]) AND {KEY_RECEIVED_AT} >= $2"
    " ORDER BY idempotency_key, event_id"
)
_LIST_TOPICS = (
    "SELECT t.topic, t.n, t.last_id, e.timestamp FROM"
    " (SELECT topic, COUNT(*) AS n, MAX(event_id) AS last_id FROM event_log GROUP BY topic) AS t"
    " JOIN event_log AS e ON e.event_id = t.last_id ORDER BY t.topic"
)

#: What "the database is not there" looks like through asyncpg; anything else is a bug.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TooManyConnectionsError,
)
#: The schema or a table is gone (dropped under the running bus).
_GONE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.InvalidSchemaNameError,
)
#: A value PostgreSQL will not store: SQLSTATE class 22 (data exception: NUL in
#: text or jsonb, numbers out of range), which asyncpg also raises for an
#: argument it cannot encode; COPY raises a plain OverflowError for an int.
_REFUSED: tuple[type[BaseException], ...] = (asyncpg.exceptions.DataError, OverflowError)


def split_storage_url(url: str) -> tuple[str, str | None]:
    """`postgresql://…?schema=x` → (the URL without `schema`, "x"); asyncpg would
    take an unknown query parameter for a server setting."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None


class PostgresStorage(Storage):
    """A bus's log, rules and firings in one PostgreSQL schema."""

    kind = "postgres"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        bus_id: str,
        pool_size: int = 8,
        command_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url, schema = split_storage_url(url)
        self.schema = schema or schema_for_bus(bus_id)
        self.channel = f"eventbus:{self.schema}"
        self.pool_size = pool_size
        self.command_timeout_s = command_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._lock_key = f"eventbus-append:{self.schema}"
        #: This process's name in `rule_firings.claimed_by`; alive while its lease is held.
        self.node_id = uuid.uuid4().hex
        self._lease: asyncpg.Connection | None = None

    @property
    def where(self) -> str:
        """The database and schema, for messages (no password)."""
        parts = urlsplit(self.url)
        return (
            f"PostgreSQL {parts.hostname}:{parts.port or 5432}{parts.path} schema {self.schema!r}"
        )

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout_s)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        except asyncpg.PostgresError as exc:  # a wrong database or role: say so, do not crash
            raise StorageUnavailable(f"{self.where} refused the connection: {exc}") from exc
        try:
            await migrate(conn, self.schema, self.where)
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout_s,
                command_timeout=self.command_timeout_s,
                reset=_keep_session,
                server_settings={
                    "search_path": quote_ident(self.schema),
                    "application_name": "eventbus",
                },
            )
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        await self._hold_lease()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        lease, self._lease = self._lease, None
        if pool is not None:
            await pool.close()
        if lease is not None:
            with contextlib.suppress(*_UNAVAILABLE):
                await lease.close(timeout=1.0)

    async def _hold_lease(self) -> None:
        """Hold a session advisory lock named after this node on a connection of its own.

        PostgreSQL drops it when the connection ends, so a node that died (or
        lost the database) is one whose lock another node can take: then its
        unfinished firings are orphans, and `pending_firings` adopts them.
        """
        if self._lease is not None and not self._lease.is_closed():
            return
        try:
            lease = await asyncpg.connect(self.url, timeout=self.connect_timeout_s)
            await lease.execute("SELECT pg_advisory_lock(hashtext($1))", node_key(self.node_id))
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        self._lease = lease

    # -- events ------------------------------------------------------------------

    async def append(
        self, events: Sequence[NewEvent], *, keys_since_ts: int | None = None
    ) -> list[Event]:
        if not events:
            return []
        rows = [event_row(e) for e in events]
        keys = [e.idempotency_key for e in events if e.idempotency_key is not None]
        async with self._connection(storing=events) as conn, conn.transaction():
            # Held to COMMIT: batches from every node commit in id order, and the
            # ids of one batch are consecutive.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_key)
            if keys and keys_since_ts is not None:
                # Every node appends under this lock, so what is here now is all
                # there is: a key another node stored since our check shows up.
                taken = await conn.fetch(_FIND_KEYS, keys, keys_since_ts)
                if taken:
                    raise KeysTaken({key: StoredKey(event_id, ts) for key, event_id, ts in taken})
            if len(rows) >= COPY_MIN_EVENTS:
                await conn.copy_records_to_table(
                    "event_log", records=rows, columns=INSERT_FIELDS, schema_name=self.schema
                )
                last_id = await conn.fetchval(_NOTIFY_LAST, self.channel)
                first_id = last_id - len(rows) + 1
            else:
                first_id = await conn.fetchval(_INSERT, *zip(*rows, strict=True), self.channel)
        return [new.stored(first_id + offset) for offset, new in enumerate(events)]

    async def find_keys(self, keys: Sequence[str], since_ts: int) -> dict[str, StoredKey]:
        # A key with a NUL was never stored (PostgreSQL cannot hold one), and asking
        # for it would fail the whole lookup; the append then names the culprit.
        keys = [key for key in keys if "\x00" not in key]
        if not keys:
            return {}
        rows = await self._fetch(_FIND_KEYS, keys, since_ts)
        return {key: StoredKey(event_id, timestamp) for key, event_id, timestamp in rows}

    async def query(self, query: EventQuery) -> list[Event]:
        if query.limit <= 0:
            return []
        select = await self._plan(query)
        if select.exact and query.max_bytes is None:
            return [event_from_row(row) for row in await self._fetch(select.sql, *select.params)]
        # A cursor needs a transaction; cancelled inside it (its client went away),
        # asyncpg resets the connection and logs an ERROR. A page is bounded, so
        # let it finish instead.
        return await _to_the_end(self._cursor_query(query, select))

    async def _plan(self, query: EventQuery) -> Select:
        """`query`'s SQL, pinned to the range that reads the fewest rows (sql.pick_driver):
        the ranges are counted first, in one round trip, each from its index alone."""
        drivers, probe = range_probe(query, "numeric", PROBE_CAPS)
        if not drivers:
            return select_events(query, "numeric")
        (row,) = await self._fetch(probe.sql, *probe.params)
        counts = list(zip(drivers, row, strict=True))
        return select_events(query, "numeric", driver=pick_driver(counts, PROBE_CAPS))

    async def _cursor_query(self, query: EventQuery, select: Select) -> list[Event]:
        hits: list[Event] = []
        budget = query.max_bytes
        async with self._connection() as conn, conn.transaction(readonly=True):
            # A server-side cursor: rows arrive in pages until `limit` of them match
            # (or they hold `max_bytes`), so a page of large events is never all in memory.
            async for row in conn.cursor(select.sql, *select.params, prefetch=_prefetch(query)):
                if not select.exact:
                    probe = Event(row[0], row[1], None, row[3], None, row[5], row[6], row[7])
                    if not query.matches(probe):
                        continue
                if budget is not None:
                    budget -= row_bytes(row[2], row[4])
                    if budget < 0 and hits:
                        break
                hits.append(event_from_row(row))
                if len(hits) == query.limit:
                    break
        return hits

    async def list_topics(self) -> list[TopicStats]:
        return [TopicStats(*row) for row in await self._fetch(_LIST_TOPICS)]

    async def last_event_id(self) -> int:
        # The sequence remembers the highest id ever drawn, even once deleted.
        rows = await self._fetch("SELECT last_value, is_called FROM event_log_event_id_seq")
        last_value, is_called = rows[0]
        return int(last_value) if is_called else 0

    async def last_committed_id(self) -> int:
        """The newest event visible now (what `watch` catches up to after a reconnect)."""
        rows = await self._fetch("SELECT COALESCE(MAX(event_id), 0) FROM event_log")
        return int(rows[0][0])

    async def count(self) -> int:
        return int((await self._fetch("SELECT COUNT(*) FROM event_log"))[0][0])

    async def prune(self, *, max_events: int | None, min_timestamp: int | None) -> int:
        deleted = 0
        async with self._connection() as conn, conn.transaction():
            if min_timestamp is not None:
                deleted += rowcount(
                    await conn.execute("DELETE FROM event_log WHERE timestamp < $1", min_timestamp)
                )
            if max_events is not None:
                deleted += rowcount(
                    await conn.execute(
                        "DELETE FROM event_log WHERE event_id <="
                        " (SELECT event_id FROM event_log ORDER BY event_id DESC LIMIT 1 OFFSET $1)",
                        max_events,
                    )
                )
        return deleted

    # -- durable consumers (consumers.py) --------------------------------------------

    async def put_consumer(
        self, name: str, config: ConsumerConfig, cursor: int, now_ms: int
    ) -> bool:
        async with self._connection() as conn:
            return await consumers.put_consumer(conn, name, config, cursor, now_ms)

    async def load_consumer(self, name: str) -> StoredConsumer | None:
        async with self._connection() as conn:
            return await consumers.load_consumer(conn, name)

    async def list_consumers(self) -> list[StoredConsumer]:
        async with self._connection() as conn:
            return await consumers.list_consumers(conn)

    async def delete_consumer(self, name: str) -> bool:
        async with self._connection() as conn, conn.transaction():
            return await consumers.delete_consumer(conn, name)

    async def fetch_leases(
        self, name: str, now_ms: int, limit: int, scan: Scan
    ) -> FetchResult | None:
        async with self._connection() as conn, conn.transaction():
            return await consumers.fetch_leases(conn, name, now_ms, limit, scan)

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
        async with self._connection() as conn, conn.transaction():
            return await consumers.settle_leased(
                conn, name, event_ids, action, now_ms, delay_ms, reason
            )

    async def dead_letters(self, name: str, after_id: int, limit: int) -> list[Delivery]:
        async with self._connection() as conn:
            return await consumers.dead_letters(conn, name, after_id, limit)

    async def redrive(
        self, name: str, event_ids: Sequence[int] | None, now_ms: int, limit: int
    ) -> int:
        async with self._connection() as conn, conn.transaction():
            return await consumers.redrive(conn, name, event_ids, now_ms, limit)

    async def delivery_counts(self, name: str) -> dict[str, int]:
        async with self._connection() as conn:
            return await consumers.delivery_counts(conn, name)

    async def count_after(self, query: EventQuery, since: int, cap: int) -> int:
        async with self._connection() as conn:
            return await consumers.count_after(conn, query, since, cap)

    # -- rules, firings and the engine's cursor (rules.py) ---------------------------

    async def load_rules(self) -> list[StoredRule]:
        async with self._connection() as conn:
            return await rules.load_rules(conn)

    async def put_rule(
        self, rule_id: str, body: dict[str, Any], enabled: bool, now_ms: int
    ) -> bool:
        # One statement is its own transaction: BEGIN and COMMIT would be two more round trips.
        async with self._connection() as conn:
            return await rules.put_rule(
                conn, self.channel, self.node_id, rule_id, body, enabled, now_ms
            )

    async def delete_rule(self, rule_id: str) -> bool:
        async with self._connection() as conn, conn.transaction():
            return await rules.delete_rule(conn, self.channel, self.node_id, rule_id)

    async def set_rule_enabled(self, rule_id: str, enabled: bool, now_ms: int) -> bool:
        async with self._connection() as conn, conn.transaction():
            return await rules.set_rule_enabled(
                conn, self.channel, self.node_id, rule_id, enabled, now_ms
            )

    async def claim_firings(self, pairs: Sequence[tuple[str, int]], cursor: int) -> list[Firing]:
        async with self._connection() as conn, conn.transaction():
            return await rules.claim_firings(conn, self.node_id, pairs, cursor)

    async def finish_firing(self, firing: Firing) -> None:
        async with self._connection() as conn, conn.transaction():
            await rules.finish_firing(conn, firing)

    async def rearm_firings(self, selection: FiringSelection) -> list[Firing]:
        async with self._connection() as conn, conn.transaction():
            return await rules.rearm_firings(conn, self.node_id, selection)

    async def pending_firings(self) -> list[Firing]:
        """Unfinished firings whose node is gone (crashed, stopped, or this one's
        previous run), now adopted by this node; firings of live nodes are theirs."""
        await self._hold_lease()
        async with self._connection() as conn:
            return await rules.adopt_firings(conn, self.node_id)

    async def list_firings(self, query: FiringQuery) -> list[Firing]:
        async with self._connection() as conn:
            return await rules.list_firings(conn, query)

    async def load_cursor(self) -> int | None:
        async with self._connection() as conn:
            return await rules.load_cursor(conn)

    async def save_cursor(self, event_id: int) -> None:
        async with self._connection() as conn:
            await rules.save_cursor(conn, event_id)

    # -- scheduled events and schedules (schedules.py) ---------------------------------

    async def add_scheduled(
        self, items: Sequence[ScheduledEvent], *, max_pending: int
    ) -> list[ScheduledEvent]:
        for attempt in range(2):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await pg_schedules.add_scheduled(conn, items, max_pending)
            except asyncpg.UniqueViolationError:
                # Another node stored one of these idempotency keys since we looked:
                # the second try finds it and answers with that one.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def cancel_scheduled(self, schedule_id: str) -> bool:
        async with self._connection() as conn:
            return await pg_schedules.cancel_scheduled(conn, schedule_id)

    async def list_scheduled(
        self, *, after: tuple[int, str] | None, limit: int, max_bytes: int | None = None
    ) -> list[ScheduledEvent]:
        async def read() -> list[ScheduledEvent]:
            async with self._connection() as conn, conn.transaction(readonly=True):
                return await pg_schedules.list_scheduled(conn, after, limit, max_bytes)

        return await _to_the_end(read())

    async def put_schedule(
        self, schedule: StoredSchedule, *, replace: bool, max_schedules: int
    ) -> bool:
        async with self._connection() as conn, conn.transaction():
            return await pg_schedules.put_schedule(conn, schedule, replace, max_schedules)

    async def get_schedule(self, schedule_id: str) -> StoredSchedule | None:
        async with self._connection() as conn:
            return await pg_schedules.get_schedule(conn, schedule_id)

    async def list_schedules(self, *, after_id: str | None, limit: int) -> list[StoredSchedule]:
        async with self._connection() as conn:
            return await pg_schedules.list_schedules(conn, after_id, limit)

    async def delete_schedule(self, schedule_id: str) -> bool:
        async with self._connection() as conn:
            return await pg_schedules.delete_schedule(conn, schedule_id)

    async def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, now_ms: int
    ) -> StoredSchedule | None:
        async with self._connection() as conn, conn.transaction():
            return await pg_schedules.set_schedule_enabled(conn, schedule_id, enabled, now_ms)

    async def next_due(self) -> int | None:
        async with self._connection() as conn:
            return await pg_schedules.next_due(conn)

    async def append_due(self, now_ms: int, *, bus_id: str, limit: int) -> list[Event]:
        async with self._connection() as conn, conn.transaction():
            # The append lock first, as every append takes it: ids follow commit order
            # across nodes, and a second node's turn waits here, then finds the rows gone.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_key)
            events = await pg_schedules.take_due(conn, now_ms, bus_id, limit, SCHEDULE_PAGE_BYTES)
            if not events:
                return []
            rows = [event_row(e) for e in events]
            first_id = await conn.fetchval(_INSERT, *zip(*rows, strict=True), self.channel)
        return [new.stored(first_id + offset) for offset, new in enumerate(events)]

    # -- other nodes ------------------------------------------------------------------

    async def watch(
        self, on_commit: Callable[[int], None], on_rules_changed: Callable[[], None]
    ) -> None:
        """Report every commit on this bus, from any node, until cancelled.

        `on_commit(last_event_id)` for each append; `on_rules_changed()` for
        each rule change made by another node (or by a node that does not
        name itself), not for this storage's own. After every (re)connect
        both are called once, so whatever happened while the listener was
        away is caught up.
        """
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=5.0),
            retry=retry_if_exception_type(StorageUnavailable),
        )
        async for attempt in retrying:
            with attempt:
                await self._listen(on_commit, on_rules_changed)

    async def _listen(
        self, on_commit: Callable[[int], None], on_rules_changed: Callable[[], None]
    ) -> None:
        lost = asyncio.Event()
        own_rule_change = rules_changed(self.node_id)

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload.startswith(RULES_CHANGED):
                if payload != own_rule_change:
                    on_rules_changed()
            else:
                on_commit(int(payload))

        try:
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout_s)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.channel, notified)
            await conn.execute(f"SET search_path TO {quote_ident(self.schema)}")
            on_commit(int(await conn.fetchval("SELECT COALESCE(MAX(event_id), 0) FROM event_log")))
            on_rules_changed()
            while not lost.is_set():
                # Notifications arrive on their own; this probe notices a silent network loss.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(
                        5.0
                    ):  # not wait_for: on 3.11 it can swallow a cancel
                        await lost.wait()
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=self.command_timeout_s)
        except _GONE as exc:
            raise self._gone(exc) from exc
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        finally:
            with contextlib.suppress(*_UNAVAILABLE):
                await conn.close(timeout=1.0)
        log.warning("%s: lost the notification connection; reconnecting", self.where)
        raise StorageUnavailable(f"{self.where}: notification connection lost")

    # -- connections --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(
        self, *, storing: Sequence[NewEvent] = ()
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; asyncpg's errors in the block become the bus's.

        `storing`: the events the block writes, so a refusal can name the one at fault.
        """
        if self._pool is None:
            raise StorageUnavailable(f"{self.where} is not open")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _REFUSED as exc:
            raise refusal("PostgreSQL", exc, storing, refuses_nul=True) from exc
        except _GONE as exc:
            raise self._gone(exc) from exc
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
            return rows

    def _unavailable(self, exc: BaseException) -> StorageUnavailable:
        reason = str(exc) or type(exc).__name__
        return StorageUnavailable(f"{self.where} is unavailable: {reason}")

    def _gone(self, exc: BaseException) -> StorageUnavailable:
        return StorageUnavailable(
            f"{self.where} is unavailable: {exc}; the schema or its tables were dropped while the bus ran;"
            " restore them, or restart the bus to create them again (empty)"
        )


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pooled connection's reset on release, past asyncpg's own (it rolls back an
    open transaction): none. The default sends `RESET ALL; UNLISTEN *; CLOSE ALL;
    SELECT pg_advisory_unlock_all()`, a round trip on every use (about a third of
    a one-row upsert's time), for state this store never leaves on a pooled
    connection: its settings come at connect, its advisory locks are
    transaction-level, its cursors live in transactions, and it listens and
    holds its lease on connections of their own."""


def _prefetch(query: EventQuery) -> int:
    """Rows per round trip: fewer when pages are bounded by bytes, so that ~100 rows
    of up to a MiB each is the most a page ever holds before it stops."""
    return min(query.limit, 100 if query.max_bytes is not None else 500)


async def _to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`; if the caller is cancelled meanwhile, let `work` finish first, then
    raise CancelledError (its result is dropped)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody waits for is not an error to log
        raise
