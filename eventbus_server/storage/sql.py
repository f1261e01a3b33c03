"""SQL the SQLite and PostgreSQL backends share: the narrowing `SELECT`s for
`poll_events` and `list_firings`, written once for both placeholder styles
(`?` for sqlite3, `$1, $2, …` for asyncpg).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from eventbus_core.codec import dumps, loads
from eventbus_core.errors import InvalidParams
from eventbus_core.event import EVENT_FIELDS, NEW_EVENT_FIELDS, Event, now_ms
from eventbus_core.topics import RESERVED_PREFIX
from eventbus_server.storage import patterns
from eventbus_server.storage.base import (
    EventQuery,
    Firing,
    FiringQuery,
    FiringSelection,
    Narrowing,
    NewEvent,
    ScheduledEvent,
    StoredRule,
    StoredSchedule,
    topic_narrowing,
    trn_narrowing,
)

__all__ = [
    "COUNT_COLUMNS",
    "EVENT_COLUMNS",
    "FIRING_COLUMNS",
    "INSERT_COLUMNS",
    "INSERT_EVENT_QMARK",
    "INSERT_FIELDS",
    "KEY_RECEIVED_AT",
    "PARTIAL_INDEXES",
    "PROBE_CAPS",
    "RULE_COLUMNS",
    "SCHEDULED_COLUMNS",
    "SCHEDULE_COLUMNS",
    "Driver",
    "Select",
    "count_events",
    "count_rows",
    "decided_in_sql",
    "event_from_row",
    "event_row",
    "firing_from_row",
    "pick_driver",
    "range_probe",
    "rule_counts",
    "rule_from_row",
    "schedule_from_row",
    "schedule_row",
    "scheduled_from_row",
    "scheduled_row",
    "select_events",
    "select_firings",
    "select_rearmable",
]

Style = Literal["qmark", "numeric"]

EVENT_COLUMNS = ", ".join(EVENT_FIELDS)
#: The columns of an INSERT of new events, in `event_row`'s order: the new event's fields,
#: then `received_at`, when the bus took an event with an idempotency key (NULL without
#: one). The dedup window counts from it, not from `timestamp`, which the client may set:
#: a webhook redelivering a CloudEvent with last week's `time` is still a repeat.
INSERT_FIELDS = (*NEW_EVENT_FIELDS, "received_at")
INSERT_COLUMNS = ", ".join(INSERT_FIELDS)
#: `event_row`s into SQLite (PostgreSQL's INSERT unnests arrays: postgres/store.py).
INSERT_EVENT_QMARK = (
    f"INSERT INTO event_log ({INSERT_COLUMNS}) VALUES ({', '.join('?' * len(INSERT_FIELDS))})"
)
FIRING_COLUMNS = (
    "firing_id, rule_id, event_id, status, attempts, started_at, duration_ms, result, error"
)
RULE_COLUMNS = "id, body, enabled, created_at, updated_at, fired, failed, last_fired_at"


def event_row(event: NewEvent) -> tuple[Any, ...]:
    """A new event as the INSERT columns of both databases (JSON as text).

    Raises `InvalidParams` for a payload or metadata that has no JSON text
    (nested deeper than the encoder goes, an integer beyond 64 bits).
    """
    try:
        payload = dumps(event.payload).decode()
        metadata = None if event.metadata is None else dumps(event.metadata).decode()
    except TypeError as exc:  # orjson's JSONEncodeError
        raise InvalidParams(
            f"cannot store this event: its payload or metadata cannot be encoded as JSON ({exc})"
        ) from exc
    # NEW_EVENT_FIELDS' order; the module asserts it below.
    return (
        event.topic,
        payload,
        event.timestamp,
        metadata,
        event.source_trn,
        event.target_trn,
        event.correlation_id,
        event.idempotency_key,
        None if event.idempotency_key is None else now_ms(),
    )


def event_from_row(row: Sequence[Any]) -> Event:
    """An `EVENT_COLUMNS` row; payload and metadata are JSON text."""
    event_id, topic, payload, timestamp, metadata, *optional = row
    return Event(
        event_id,
        topic,
        None if payload is None else loads(payload),
        timestamp,
        None if metadata is None else loads(metadata),
        *optional,
    )


#: A migration both schemas run (SQLite 4, PostgreSQL 5): the mostly-NULL columns' indexes
#: become partial (fewer pages written per insert): drop the full index, then build the
#: partial one under the same name.
PARTIAL_INDEXES = tuple(
    statement
    for column in ("source_trn", "target_trn", "correlation_id")
    for statement in (
        f"DROP INDEX idx_event_log_{column}",
        f"CREATE INDEX idx_event_log_{column} ON event_log ({column}) WHERE {column} IS NOT NULL",
    )
)

#: When a key counts as stored: received (`received_at`), or, for a row written before
#: that column (SQLite 5, PostgreSQL 6), its timestamp as before.
KEY_RECEIVED_AT = "COALESCE(received_at, timestamp)"

if NEW_EVENT_FIELDS != (
    "topic",
    "payload",
    "timestamp",
    "metadata",
    "source_trn",
    "target_trn",
    "correlation_id",
    "idempotency_key",
):  # pragma: no cover - event_row spells its tuple out (the hot path): change both together
    raise TypeError(f"event_row does not know the fields {NEW_EVENT_FIELDS}")


def rule_from_row(row: Sequence[Any]) -> StoredRule:
    """A `RULE_COLUMNS` row; `body` is JSON text in both databases."""
    rule_id, body, enabled, created_at, updated_at, fired, failed, last_fired_at = row
    return StoredRule(
        rule_id, loads(body), bool(enabled), created_at, updated_at, fired, failed, last_fired_at
    )


def firing_from_row(row: Sequence[Any]) -> Firing:
    """A `FIRING_COLUMNS` row; `result` is JSON text or NULL."""
    firing_id, rule_id, event_id, status, attempts, started_at, duration_ms, result, error = row
    return Firing(
        firing_id,
        rule_id,
        event_id,
        status,
        attempts,
        started_at,
        duration_ms,
        None if result is None else loads(result),
        error,
    )


class Select(NamedTuple):
    sql: str
    params: list[Any]
    # True when the SQL alone decides, so `EventQuery.matches()` need not run on each row.
    exact: bool


class _Where:
    """Conditions and their parameters, numbered in the driver's style."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return "?" if self.style == "qmark" else f"${len(self.params)}"

    def add(self, condition: str, *values: Any) -> None:
        """`condition` with `{}` where each value goes."""
        self.conditions.append(condition.format(*(self.param(v) for v in values)))

    def narrow(self, column: str, narrowing: Narrowing | None) -> None:
        if narrowing is None:
            return
        if narrowing.exact:
            self.add(f"{column} = {{}}", narrowing.value)
        else:
            self.add(
                f"{column} >= {{}} AND {column} < {{}}", narrowing.value, narrowing.upper_bound
            )

    def after(self, column: str, since: int, order: Literal["asc", "desc"]) -> None:
        """The exclusive id cursor: ids above `since` ascending, below it descending."""
        if order == "asc":
            self.add(f"{column} > {{}}", since)
        elif since > 0:
            self.add(f"{column} < {{}}", since)

    def pattern(self, column: str, pattern: str, regex: Callable[[str], str]) -> None:
        """`column` matches the topic or TRN `pattern`: exactly on PostgreSQL (`regex`
        translates it), as a superset on SQLite (patterns.py)."""
        if self.style == "qmark":
            self.add(f"{column} GLOB {{}}", patterns.glob(pattern))
        else:
            # LIKE costs a tenth of a regex a row, so it goes first; in one CASE, since as
            # two conditions the planner multiplies their estimates and sorts every match
            # of a bitmap scan instead of walking by id (708 ms against 270 on 1M events).
            self.add(
                f"CASE WHEN {column} LIKE {{}} THEN {column} ~ {{}} ELSE FALSE END",
                patterns.like(pattern),
                regex(pattern),
            )

    @property
    def clause(self) -> str:
        return " AND ".join(self.conditions) or "TRUE"


#: How a page is read: None lets the database choose (best with an equality narrowing),
#: "event_id" walks the log by id from the cursor, a column reads the range on its index
#: (`idx_event_log_<column>`) and sorts what it finds by id.
Driver = Literal["event_id", "timestamp", "topic", "source_trn", "target_trn"] | None


def decided_in_sql(query: EventQuery, style: Style) -> bool:
    """Whether `select_events`' SQL alone decides every match, with no `matches()` after:
    always on PostgreSQL; on SQLite unless a pattern has a `*` (checked there as a glob)."""
    wildcards = (query.topic, query.source_trn or "", query.target_trn or "")
    return style == "numeric" or not any("*" in pattern for pattern in wildcards)


def select_events(query: EventQuery, style: Style, *, driver: Driver = None) -> Select:
    """SQL that returns a superset of the matches, in order; `matches()` does the rest
    (unless `exact`).

    Without a `*` anywhere the superset is the exact set: a literal is an
    equality, and a prefix range (`orders.>`, `trn:user:`) is the whole test,
    since no topic ends in '.' and `>` gets its `_sys.` exclusion in SQL too.
    A pattern with `*` is also checked in SQL (patterns.py): exactly on
    PostgreSQL, so there the SQL always decides alone; as a glob on SQLite,
    which drops most misses without a Python call. Ranges compare bytes:
    SQLite does so by default, and the PostgreSQL columns are `COLLATE "C"`.

    `driver` pins the plan (`plan_events` picks it): SQLite takes `INDEXED BY`
    or `NOT INDEXED`; PostgreSQL, which has no hints, sorts by `event_id + 0`
    so that only the range's own index can serve it, and chooses itself for
    "event_id".
    """
    where = _Where(style)
    where.after("event_id", query.since, query.order)
    where.narrow("topic", topic_narrowing(query.topic))
    if query.topic.split(".", 1)[0] in ("*", ">"):
        # A leading wildcard never matches the bus's own topics.
        where.add(
            "(topic < {} OR topic >= {})",
            RESERVED_PREFIX,
            Narrowing(RESERVED_PREFIX, exact=False).upper_bound,
        )
    if "*" in query.topic:
        where.pattern("topic", query.topic, patterns.topic_regex)
    for column, pattern in (("source_trn", query.source_trn), ("target_trn", query.target_trn)):
        if pattern is not None:
            where.narrow(column, trn_narrowing(pattern))
            if "*" in pattern:
                where.pattern(column, pattern, patterns.trn_regex)
    if query.correlation_id is not None:
        where.add("correlation_id = {}", query.correlation_id)
    if query.from_ts is not None:
        where.add("timestamp >= {}", query.from_ts)
    if query.to_ts is not None:
        where.add("timestamp <= {}", query.to_ts)
    exact = decided_in_sql(query, style)
    direction = "ASC" if query.order == "asc" else "DESC"
    order_by = "event_id"
    table = "event_log"
    if driver == "event_id" and style == "qmark":
        table += " NOT INDEXED"
    elif driver is not None and driver != "event_id":
        if style == "qmark":
            table += f" INDEXED BY idx_event_log_{driver}"
        else:
            order_by = "event_id + 0"
    sql = (
        f"SELECT {EVENT_COLUMNS} FROM {table} WHERE {where.clause} ORDER BY {order_by} {direction}"
    )
    if exact:
        sql += f" LIMIT {where.param(query.limit)}"
    return Select(sql, where.params, exact)


#: A range with fewer index entries than its cap after the cursor is read whole and
#: sorted by id; a wider one is left to a walk by id (see `pick_driver`). On 1M events
#: (bench/queries.py) a topic range of 2,000 rows costs ~1.2 ms, one of 10,000 5.8 ms
#: (a row lookup each, scattered over the file), when walking by id costs 0.5 ms: its
#: matches are spread over the log. A time range's rows sit together (ids follow
#: time), so 10,000 of them cost 1.3 ms, and its matches sit together in id order
#: too, so the walk must first cross every row before them (150-200 ms from the
#: start of a 1M log): its cap is higher.
PROBE_CAPS: dict[str, int] = {
    "timestamp": 10_000,
    "topic": 2_000,
    "source_trn": 2_000,
    "target_trn": 2_000,
}


def range_probe(
    query: EventQuery, style: Style, caps: Mapping[str, int]
) -> tuple[list[Driver], Select]:
    """The ranges `query` could be read by, and one row of SQL counting each one's index
    entries after the cursor (at most its cap in `caps`, from the index alone).

    No ranges when an equality narrows the query (exact topic, TRN or
    correlation id): that index yields its rows in id order already, and the
    database picks it.
    """
    ranges: list[tuple[Driver, str, tuple[Any, ...]]] = []
    if (
        query.correlation_id is None
        and ("*" in query.topic or ">" in query.topic)
        and not any(
            p is not None and trn_narrowing(p).exact for p in (query.source_trn, query.target_trn)
        )
    ):
        ranges = _ranges(query)
    where = _Where(style)
    counts = []
    for driver, condition, values in ranges:
        hint = f" INDEXED BY idx_event_log_{driver}" if style == "qmark" else ""
        # Placeholders are numbered (or, for `?`, bound) in the order they are written.
        # Without a cursor, PostgreSQL can count from the index alone (its entries,
        # unlike SQLite's, hold no event_id).
        cursor = ""
        if query.since > 0:
            cursor = (
                f"event_id {'>' if query.order == 'asc' else '<'} {where.param(query.since)} AND "
            )
        matching = condition.format(*(where.param(value) for value in values))
        counts.append(
            f"(SELECT COUNT(*) FROM (SELECT 1 FROM event_log{hint}"
            f" WHERE {cursor}{matching} LIMIT {where.param(caps[str(driver)])}) AS probed)"
        )
    sql = f"SELECT {', '.join(counts)}" if counts else ""
    return [driver for driver, _, _ in ranges], Select(sql, where.params, exact=True)


def _ranges(query: EventQuery) -> list[tuple[Driver, str, tuple[Any, ...]]]:
    """(index, condition with `{}` for each value, values) of each range in `query`."""
    ranges: list[tuple[Driver, str, tuple[Any, ...]]] = []
    if query.from_ts is not None or query.to_ts is not None:
        low = query.from_ts if query.from_ts is not None else -(2**63)
        high = query.to_ts if query.to_ts is not None else 2**63 - 1
        ranges.append(("timestamp", "timestamp >= {} AND timestamp <= {}", (low, high)))
    topic = topic_narrowing(query.topic)
    if topic is not None:
        ranges.append(("topic", "topic >= {} AND topic < {}", (topic.value, topic.upper_bound)))
    if query.source_trn is not None:
        trn = trn_narrowing(query.source_trn)
        ranges.append(
            ("source_trn", "source_trn >= {} AND source_trn < {}", (trn.value, trn.upper_bound))
        )
    if query.target_trn is not None:
        trn = trn_narrowing(query.target_trn)
        ranges.append(
            ("target_trn", "target_trn >= {} AND target_trn < {}", (trn.value, trn.upper_bound))
        )
    return ranges


def pick_driver(counts: Sequence[tuple[Driver, int]], caps: Mapping[str, int]) -> Driver:
    """The range with the fewest rows, if one is under its cap; else a walk by id.

    A range is read whole and sorted by id, so its cost is its size; a walk by
    id stops at `limit` matches, so it wins when the matches are dense, which
    a range at its cap after the cursor suggests. No ranges: None.
    """
    if not counts:
        return None
    narrow = [(rows, driver) for driver, rows in counts if rows < caps[str(driver)]]
    return min(narrow, key=lambda count: count[0])[1] if narrow else "event_id"


#: The columns `count_events` reads when SQL alone cannot decide (no JSON).
COUNT_COLUMNS = "event_id, topic, timestamp, source_trn, target_trn, correlation_id"


def count_events(query: EventQuery, since: int, cap: int, style: Style) -> Select:
    """Events after `since` that `query`'s filters let through, at most `cap`: a
    `COUNT(*)` when SQL decides alone, else the light `COUNT_COLUMNS` of the
    narrowed rows (at most ten times cap of them) for `count_rows` to match."""
    narrowed = select_events(dataclasses.replace(query, since=since, limit=cap, order="asc"), style)
    light = narrowed.sql.replace(f"SELECT {EVENT_COLUMNS} FROM", f"SELECT {COUNT_COLUMNS} FROM", 1)
    if narrowed.exact:
        return Select(f"SELECT COUNT(*) FROM ({light}) AS counted", narrowed.params, True)
    return Select(f"{light} LIMIT {10 * cap}", narrowed.params, False)


def count_rows(query: EventQuery, rows: Iterable[Sequence[Any]], cap: int) -> int:
    """How many `COUNT_COLUMNS` rows match `query`, at most `cap`."""
    counted = 0
    for event_id, topic, timestamp, source, target, correlation in rows:
        if query.matches(
            Event(event_id, topic, None, timestamp, None, source, target, correlation)
        ):
            counted += 1
            if counted >= cap:
                break
    return counted


def select_rearmable(selection: FiringSelection, style: Style) -> Select:
    """The final firings `rearm_firings` takes, oldest first (ids passed as a list)."""
    where = _Where(style)
    where.add("status = {}", selection.status)
    if selection.rule_id is not None:
        where.add("rule_id = {}", selection.rule_id)
    if selection.firing_ids is not None:
        if style == "qmark":
            where.add(
                "firing_id IN (SELECT value FROM json_each({}))",
                dumps(list(selection.firing_ids)).decode(),
            )
        else:
            where.add("firing_id = ANY({})", list(selection.firing_ids))
    sql = f"SELECT {FIRING_COLUMNS} FROM rule_firings WHERE {where.clause} ORDER BY firing_id LIMIT {where.param(selection.limit)}"
    return Select(sql, where.params, exact=True)


def rule_counts(firings: Sequence[Firing], status: str) -> dict[str, int]:
    """How many of `firings` each rule has in `status` (to take off its counter)."""
    counts: dict[str, int] = {}
    for firing in firings:
        if firing.status == status:
            counts[firing.rule_id] = counts.get(firing.rule_id, 0) + 1
    return counts


def select_firings(query: FiringQuery, style: Style) -> Select:
    where = _Where(style)
    where.after("firing_id", query.since, query.order)
    if query.rule_id is not None:
        where.add("rule_id = {}", query.rule_id)
    if query.status is not None:
        where.add("status = {}", query.status)
    direction = "ASC" if query.order == "asc" else "DESC"
    sql = (
        f"SELECT {FIRING_COLUMNS} FROM rule_firings WHERE {where.clause}"
        f" ORDER BY firing_id {direction} LIMIT {where.param(query.limit)}"
    )
    return Select(sql, where.params, exact=True)


# -- scheduled events and schedules (DESIGN §11) ---------------------------------------

SCHEDULED_COLUMNS = (
    "schedule_id, deliver_at, created_at, topic, payload, timestamp, metadata,"
    " source_trn, target_trn, correlation_id, idempotency_key"
)
SCHEDULE_COLUMNS = "id, body, enabled, next_tick, last_tick, ticks, created_at, updated_at"


def scheduled_row(item: ScheduledEvent) -> tuple[Any, ...]:
    """A delayed event as the `SCHEDULED_COLUMNS` of both databases (JSON as text)."""
    try:
        payload = dumps(item.payload).decode()
        metadata = None if item.metadata is None else dumps(item.metadata).decode()
    except TypeError as exc:  # orjson's JSONEncodeError
        raise InvalidParams(
            f"cannot store this event: its payload or metadata cannot be encoded as JSON ({exc})"
        ) from exc
    return (
        item.schedule_id,
        item.deliver_at,
        item.created_at,
        item.topic,
        payload,
        item.timestamp,
        metadata,
        item.source_trn,
        item.target_trn,
        item.correlation_id,
        item.idempotency_key,
    )


def scheduled_from_row(row: Sequence[Any]) -> ScheduledEvent:
    schedule_id, deliver_at, created_at, topic, payload, timestamp, metadata, *rest = row
    return ScheduledEvent(
        schedule_id,
        deliver_at,
        created_at,
        topic,
        None if payload is None else loads(payload),
        timestamp,
        None if metadata is None else loads(metadata),
        *rest,
    )


def schedule_row(schedule: StoredSchedule) -> tuple[Any, ...]:
    """A schedule as the `SCHEDULE_COLUMNS` (its body as JSON text)."""
    return (
        schedule.id,
        dumps(schedule.body).decode(),
        schedule.enabled,
        schedule.next_tick,
        schedule.last_tick,
        schedule.ticks,
        schedule.created_at,
        schedule.updated_at,
    )


def schedule_from_row(row: Sequence[Any]) -> StoredSchedule:
    schedule_id, body, enabled, *rest = row
    return StoredSchedule(schedule_id, loads(body), bool(enabled), *rest)
