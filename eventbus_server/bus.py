"""One bus: the verbs every door (a connection, the rule engine, a sibling bus)
calls, over one storage (DESIGN.md §5, §6).

    emit → validate → allow-list → writer (group commit, writer.py) → ack
         → feed (feed.py: id order, also for other nodes' commits)
         → topic counters, fan-out (fanout.py), commit hooks (the rule engine)

A delayed emit or a schedule (scheduler.py) is stored at once and appended
when due, by the same writer, so it then takes the same path.

Callers use these verbs, never the parts behind them: `connection` and
`rpc` know the bus, not its fan-out, rule book or writer. The bus also owns
the set of its open connections (`admit`, `release`), so `max_connections`,
shutdown and `bus_info` read one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from eventbus_core import __version__
from eventbus_core.config import BusConfig
from eventbus_core.emit_rows import row_of
from eventbus_core.envelope import EmitParams
from eventbus_core.errors import (
    EventBusError,
    InvalidParams,
    NotFound,
    ReservedTopic,
    RulesDisabled,
    SourceNotAllowed,
)
from eventbus_core.event import Event, now_ms
from eventbus_core.params import CreateScheduleParams
from eventbus_core.results import BusInfo, EmitResult, ScheduleCreated, ScheduledResult, TopicInfo
from eventbus_core.rules import RetryPolicy
from eventbus_core.topics import RESERVED_PREFIX, is_reserved_topic
from eventbus_server import tracing
from eventbus_server.allow_list import AllowList
from eventbus_server.consumer_verbs import ConsumerVerbs
from eventbus_server.consumers import Consumers
from eventbus_server.fanout import (
    FanOut,
    FiringSubscription,
    SseSubscription,
    Subscriber,
    Subscription,
)
from eventbus_server.feed import CommitFeed
from eventbus_server.histogram import Histogram
from eventbus_server.replay import ReplayRequest, ReplayResult, replay
from eventbus_server.retention import prune_forever
from eventbus_server.rules.actions import ActionRunner
from eventbus_server.rules.engine import RuleEngine
from eventbus_server.rules.explain import test_rule
from eventbus_server.rules.rulebook import RuleBook
from eventbus_server.rules.tools.invoke import ToolRouter
from eventbus_server.scheduler import Scheduler, new_schedule_id
from eventbus_server.storage import open_storage
from eventbus_server.storage.base import (
    EventQuery,
    Firing,
    FiringQuery,
    FiringSelection,
    NewEvent,
    ScheduledEvent,
    Storage,
    StoredRule,
    StoredSchedule,
)
from eventbus_server.topic_table import TopicTable
from eventbus_server.writer import Committed, GroupCommitWriter, Outcome

__all__ = ["REJECTION_REASONS", "Bus", "Client", "EmitResult", "MetricsSnapshot"]

log = logging.getLogger("eventbus.bus")

#: What connections report through `Bus.note`, counted in `bus_info` stats.
CONNECTION_EVENTS = (
    "refused_connections",  # over max_connections
    "closed_partial_line",  # read_timeout_s
    "closed_unauthenticated",  # auth_timeout_s
    "closed_wrong_tokens",  # the 5th wrong token
    "closed_not_reading",  # over max_output_bytes for write_timeout_s
)

#: Why events are refused, as `eventbus_events_rejected_total{reason}` counts them.
REJECTION_REASONS = (
    "overloaded",
    "source_not_allowed",
    "reserved_topic",
    "invalid",
    "unauthorized",
    "too_large",
)
#: How long /readyz waits for storage to answer.
READY_TIMEOUT_S = 2.0


class MetricsSnapshot:
    """What /metrics reads from a bus at scrape time (nothing is computed per event)."""

    __slots__ = (
        "batch_size",
        "emit_duration",
        "firing_durations",
        "firings",
        "info",
        "rejected",
        "tool_calls",
    )

    def __init__(
        self,
        info: BusInfo,
        rejected: dict[str, int],
        emit_duration: Histogram,
        batch_size: Histogram,
        firings: dict[tuple[str, str], int],
        firing_durations: dict[str, Histogram],
        tool_calls: dict[tuple[str, str], int],
    ) -> None:
        self.info = info
        self.rejected = rejected
        self.emit_duration = emit_duration
        self.batch_size = batch_size
        self.firings = firings
        self.firing_durations = firing_durations
        self.tool_calls = tool_calls


class Client(Subscriber, Protocol):
    """A connection as the bus sees it: a subscriber it can tell to stop and finish."""

    def stop_reading(self) -> None: ...

    async def finish(self) -> None: ...


class Bus(ConsumerVerbs):
    """A bus as its config describes it; `start()` before use, `stop()` after."""

    def __init__(
        self,
        config: BusConfig,
        storage: Storage | None = None,
        *,
        peers: Mapping[str, Bus] | None = None,
    ) -> None:
        """`peers`: the buses of the same process (this one included), for rules that emit there."""
        self.config = config
        self.storage = storage if storage is not None else open_storage(config)
        self.peers: Mapping[str, Bus] = peers if peers is not None else {config.id: self}
        self._stats = {
            "emitted": 0,
            "duplicates": 0,
            "batches": 0,
            "batches_split": 0,
            "rejected_overloaded": 0,
            "storage_errors": 0,
            **dict.fromkeys(CONNECTION_EVENTS, 0),
        }
        #: Refusals other than a full queue (the writer counts those as rejected_overloaded).
        self._rejected = dict.fromkeys(REJECTION_REASONS, 0)
        self._rules = self._rule_engine() if config.enable_rules else None
        self._fanout = FanOut(
            self.storage,
            subscriber_buffer=config.subscriber_buffer,
            max_subscriptions=config.max_subscriptions,
            max_held_bytes=config.max_output_bytes,
        )
        if self._rules is not None:
            self._rules.on_finished = self._fanout.publish_firing
        self._topics = TopicTable()
        self._feed = CommitFeed(self.storage, self._deliver, bus_id=config.id)
        self._writer = GroupCommitWriter(
            self.storage,
            self._feed.committed_here,
            deliver_now=self._feed.committed_now,
            bus_id=config.id,
            queue_size=config.queue_size,
            max_queue_bytes=config.max_queue_bytes,
            dedup_window_s=config.dedup_window,
            stats=self._stats,
        )
        self._consumers = Consumers(
            self.storage, bus_id=config.id, max_consumers=config.max_consumers
        )
        self._scheduler = Scheduler(
            self.storage,
            self._writer,
            bus_id=config.id,
            max_scheduled=config.max_scheduled,
            max_schedules=config.max_schedules,
        )
        self._followers: list[asyncio.Task[None]] = []  # feed and watch, for shared storage
        self._connections: set[Client] = set()
        self._retention: asyncio.Task[None] | None = None
        self._allowed = AllowList(config.allowed_sources, bus_id=config.id)
        self._started_at = time.monotonic()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def last_event_id(self) -> int:
        """The newest event this node has delivered (committed here or by another node)."""
        return self._topics.last_event_id

    def _rule_engine(self) -> RuleEngine:
        config = self.config
        tools = ToolRouter(
            config.tools,
            max_reply_bytes=config.max_tool_reply_bytes,
            import_dir=config.config_dir,
            max_threads=config.max_concurrency,
            bus_id=config.id,
        )
        return RuleEngine(
            self.storage,
            RuleBook(
                self.storage,
                bus_id=config.id,
                accepted_by=self._accepted_by,
                max_rules=config.max_rules,
                check_tool=tools.check,
            ),
            ActionRunner(config.id, tools, self._emit_as_rule),
            bus_id=config.id,
            max_concurrency=config.max_concurrency,
            retry=RetryPolicy(attempts=config.retry.attempts, backoff_ms=config.retry.backoff_ms),
            max_hops=config.max_hops,
            max_action_bytes=config.max_message_bytes,
        )

    def _accepted_by(self) -> dict[str, tuple[str, ...]]:
        return {bus_id: bus.config.accept_from_buses for bus_id, bus in self.peers.items()}

    async def _emit_as_rule(self, bus_id: str | None, params: EmitParams) -> int:
        """Emit an event a rule made, here or on a sibling bus that accepts this one's rules.

        Rule-made events skip the allow-list (it guards clients), but not topic
        validation or the `_sys.` reservation. The sibling's consent is checked
        again here: a rule stored under an older config may no longer have it.
        """
        target = self._peer(bus_id, "events from rules of")
        return (await target.emit(params, trusted=True)).event_id

    def _peer(self, bus_id: str | None, what: str) -> Bus:
        """This bus, or a sibling whose config accepts `what` this bus (accept_from_buses)."""
        if bus_id is None or bus_id == self.id:
            return self
        target = self.peers.get(bus_id)
        if target is None:
            raise NotFound(f"bus {bus_id!r} is not running in this process")
        if self.id not in target.config.accept_from_buses:
            raise SourceNotAllowed(
                f"bus {bus_id!r} does not accept {what} bus {self.id!r}"
                f" (add {self.id!r} to accept_from_buses of {bus_id!r} in its config)"
            )
        return target

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open storage (migrations run there), load topic counters, start the writer."""
        await self.storage.open()
        self._topics.load(await self.storage.list_topics())
        self._topics.last_event_id = await self.storage.last_event_id()
        self._feed.start(self._topics.last_event_id)
        self._started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._writer.start()
        if self.storage.shared:
            # Other nodes write this bus too: follow their commits and rule changes.
            self._followers = [
                loop.create_task(self._feed.run(), name=f"feed:{self.id}"),
                loop.create_task(
                    self.storage.watch(
                        self._feed.committed_elsewhere, self._rules_changed_elsewhere
                    ),
                    name=f"watch:{self.id}",
                ),
            ]
        if self._rules is not None:
            # The port is not bound yet, so nothing has committed since last_event_id;
            # the writer runs already, for firings a crash left pending that emit.
            await self._rules.start(self._topics.last_event_id)
        if self.config.retention is not None:
            self._retention = asyncio.get_running_loop().create_task(
                prune_forever(self.config.retention, self.storage, self._topics, bus_id=self.id),
                name=f"retention:{self.id}",
            )
        # Last: what fell due while the bus was down is appended now, and reaches the rules.
        self._scheduler.start()

    async def stop_rules(self) -> None:
        """Stop matching and let running firings finish (or stay pending for the next start).

        The app does this for every bus before stopping any, so a rule that emits
        on a sibling bus still finds it running.
        """
        if self._rules is not None:
            await self._rules.stop()

    async def stop(self) -> None:
        """Stop the scheduler and the rules, drain the queue (every queued emit is committed
        and acked), close storage."""
        await self._scheduler.stop()  # what falls due from now on stays stored for the next start
        await self.stop_rules()
        if self._retention is not None:
            self._retention.cancel()
        for task in self._followers:
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        await self._writer.stop()
        await self._fanout.close()
        await self.storage.close()

    async def wait_idle(self) -> None:
        """Return once everything queued so far is committed and fanned out, and every
        rule firing it caused (and their events' firings) has finished."""
        while True:
            await self._writer.join()
            if self._rules is None:
                return
            await self._rules.wait_idle()
            # Not just an empty queue: the writer may hold a batch it took but has
            # not delivered yet (its fan-out can wait for the feed's lock).
            if not self._writer.busy and self._rules.idle:
                return

    # -- connections ---------------------------------------------------------

    def admit(self, client: Client) -> bool:
        """Count a new connection in; False (and counted as refused) past max_connections."""
        if len(self._connections) >= self.config.max_connections:
            self.note("refused_connections")
            return False
        self._connections.add(client)
        return True

    def release(self, client: Client) -> None:
        """The connection no longer holds a max_connections slot (refused, or gone)."""
        self._connections.discard(client)

    def disconnected(self, client: Client) -> None:
        """The connection is gone: its subscriptions end and its slot is free."""
        self._fanout.drop_all(client)
        self.release(client)

    def connections(self) -> Iterator[Client]:
        """The connections that hold a slot now."""
        return iter(list(self._connections))

    def note(self, what: str) -> None:
        """Count a connection event (one of CONNECTION_EVENTS) for `bus_info`."""
        self._stats[what] += 1

    def note_rejected(self, reason: str) -> None:
        """Count an event refused before the bus saw it (one of REJECTION_REASONS): an
        adapter's invalid, unauthorized or too large request."""
        self._rejected[reason] += 1

    # -- emitting ------------------------------------------------------------

    async def emit(self, params: EmitParams, *, trusted: bool = False) -> EmitResult:
        """Store one event; returns after the commit."""
        return (await self.submit([params], trusted=trusted))[0]

    async def emit_many(
        self, events: Sequence[EmitParams], *, trusted: bool = False
    ) -> list[EmitResult]:
        """Store several events in one transaction: all of them or none."""
        return await self.submit(events, trusted=trusted, batch=True) if events else []

    def submit(
        self,
        events: Sequence[EmitParams],
        *,
        trusted: bool = False,
        batch: bool = False,
        size: int = 0,
    ) -> asyncio.Future[list[EmitResult]]:
        """Check and queue events; the future resolves once they are committed.

        Not a coroutine: it raises at once for what can be refused before the
        queue: reserved topics, sources outside the allow-list, a full queue
        (in requests, or in bytes: `size` is what the request weighs).
        """
        now = now_ms()
        future: asyncio.Future[list[EmitResult]] = asyncio.get_running_loop().create_future()
        self.submit_rows(
            [row_of(params, now) for params in events],
            trusted=trusted,
            batch=batch,
            size=size,
            done=functools.partial(_resolve, future),
        )
        return future

    def submit_rows(
        self,
        rows: list[NewEvent],
        *,
        done: Callable[[Outcome], None],
        trusted: bool = False,
        batch: bool = False,
        size: int = 0,
        at_once: bool = False,
    ) -> None:
        """`submit` for events already validated into their rows (`emit_rows`: the RPC hot
        path), with the same checks and queue; `done` is called once, from the writer, with
        their `Committed` or the error. One call per request instead of a chain of futures.
        `at_once`: a lone request, which an idle writer may commit (and answer) before this
        returns (writer.py)."""
        check_sources = not (trusted or self._allowed.everyone)
        seen = self._allowed.seen
        for index, row in enumerate(rows):
            if row.topic.startswith(RESERVED_PREFIX) or (
                check_sources and row.source_trn not in seen
            ):
                self._admit(row.topic, row.source_trn, trusted, index if batch else None)
        if tracing.enabled():
            done = self._traced(rows, done)
        self._writer.enqueue(rows, size, done, at_once=at_once)

    def _traced(
        self, accepted: list[NewEvent], done: Callable[[Outcome], None]
    ) -> Callable[[Outcome], None]:
        """`done`, then the end of an `emit` span per event, started now (DESIGN §13)."""
        spans = [
            tracing.start_span(
                "emit", new.metadata, {"eventbus.bus": self.id, "eventbus.topic": new.topic}
            )
            for new in accepted
        ]

        def end(outcome: Outcome) -> None:
            try:
                done(outcome)  # the emitter's answer first: a span never holds it up
            finally:
                results = outcome.results() if isinstance(outcome, Committed) else None
                for index, span in enumerate(spans):
                    if results is not None:
                        span.set_attribute("eventbus.event_id", results[index].event_id)
                        span.set_attribute("eventbus.duplicate", results[index].duplicate)
                    else:
                        span.set_attribute("error", True)
                    span.end()

        return end

    def _admit(
        self, topic: str, source_trn: str | None, trusted: bool, index: int | None = None
    ) -> None:
        """Raise for an event a client may not emit: a reserved topic, or (unless `trusted`) a
        source outside the allow-list. `index`: the event's place in a batch."""
        where = "" if index is None else f"events[{index}]: "
        if is_reserved_topic(topic):
            self._rejected["reserved_topic"] += 1
            raise ReservedTopic(
                f"{where}topic {topic!r} is reserved: the _sys. prefix belongs to the bus"
            )
        if not trusted:
            self._check_source(source_trn, where)

    async def schedule(
        self, events: Sequence[EmitParams], *, batch: bool = False
    ) -> list[ScheduledResult]:
        """Delayed emits (DESIGN §11): checked now like any emit, stored at once (all of
        them or none), appended to the log when due (scheduler.py)."""
        now = now_ms()
        max_delay_ms = int(self.config.max_schedule_delay_s * 1000)
        items = []
        method, days = (
            ("emit_events" if batch else "emit_event"),
            self.config.max_schedule_delay_s / 86_400,
        )
        for index, params in enumerate(events):
            where = f"events.{index}." if batch else ""
            self._admit(params.topic, params.source_trn, False, index if batch else None)
            if params.deliver_at is not None:
                deliver_at, field, ahead = params.deliver_at, "deliver_at", params.deliver_at - now
            else:
                assert params.delay_ms is not None
                field, ahead = "delay_ms", params.delay_ms
                deliver_at = now + ahead if ahead <= max_delay_ms else 0
            if ahead > max_delay_ms:
                msg = f"must be at most {max_delay_ms} ms ahead ({days:g} days, max_schedule_delay_s), not {ahead}"
                loc = f"{where}{field}"
                raise InvalidParams(
                    f"invalid params for {method}: {loc}: {msg}", [{"loc": loc, "msg": msg}]
                )
            items.append(
                ScheduledEvent(
                    new_schedule_id(),
                    deliver_at,
                    now,
                    params.topic,
                    params.payload,
                    params.timestamp,
                    params.metadata,
                    params.source_trn,
                    params.target_trn,
                    params.correlation_id,
                    params.idempotency_key,
                )
            )
        return await self._scheduler.add(items)

    async def cancel_scheduled(self, schedule_id: str) -> None:
        """Drop a pending delayed event; -32002 once it is appended (or was never there)."""
        await self._scheduler.cancel(schedule_id)

    async def list_scheduled(
        self, *, after: tuple[int, str] | None, limit: int, max_bytes: int | None = None
    ) -> list[ScheduledEvent]:
        """Pending delayed events, due first."""
        return await self._scheduler.pending(after=after, limit=limit, max_bytes=max_bytes)

    def _check_source(self, source_trn: str | None, where: str) -> None:
        try:
            self._allowed.check(source_trn, where)
        except SourceNotAllowed:
            self._rejected["source_not_allowed"] += 1
            raise

    def _deliver(self, events: list[Event]) -> None:
        """Committed events, in id order, from this node or another (see feed.py)."""
        self._topics.add(events)
        self._fanout.publish(events)
        self._consumers.on_commit(events)
        if self._rules is not None:
            self._rules.on_commit(events)

    def _rules_changed_elsewhere(self) -> None:
        if self._rules is not None:
            self._rules.rules.reload_soon()

    # -- reading -------------------------------------------------------------

    async def poll(self, query: EventQuery) -> list[Event]:
        return await self.storage.query(query)

    async def replay(self, request: ReplayRequest) -> ReplayResult:
        """`replay_events`: stored events emitted again as the bus's own (replay.py), here
        or on a sibling bus that accepts this one's events."""
        if request.to_bus is not None and request.to_bus not in self.peers:
            msg = f"no bus {request.to_bus!r} runs in this process (buses: {', '.join(sorted(self.peers))})"
            raise InvalidParams(
                f"invalid params for replay_events: to_bus: {msg}", [{"loc": "to_bus", "msg": msg}]
            )
        target = self._peer(request.to_bus, "events replayed from")
        # From storage, not the topic table: an emit is acknowledged before its fan-out.
        until_id = (
            request.until_id if request.until_id is not None else await self.storage.last_event_id()
        )
        return await replay(
            self.storage,
            lambda copies: target.emit_many(copies, trusted=True),
            request,
            until_id=until_id,
        )

    async def list_topics(self) -> list[TopicInfo]:
        """Per-topic counts of what is stored now."""
        if self.storage.kind == "memory":
            # The ring forgets its oldest events; it counts what it still holds, cheaply.
            return [
                {
                    "topic": s.topic,
                    "count": s.count,
                    "last_event_id": s.last_event_id,
                    "last_timestamp": s.last_timestamp,
                }
                for s in await self.storage.list_topics()
            ]
        return self._topics.snapshot()

    # -- subscriptions -------------------------------------------------------

    def subscribe(self, query: EventQuery, subscriber: Subscriber, *, replay: bool) -> Subscription:
        """A subscription that holds live events until its `start()` (after the reply is
        written); with `replay`, it first sends stored events after `query.since`.
        -32005 once the connection holds `max_subscriptions` (both kinds together)."""
        return self._fanout.subscribe(query, subscriber, replay=replay)

    def subscribe_sse(
        self, query: EventQuery, subscriber: Subscriber, *, replay: bool
    ) -> Subscription:
        """`subscribe` framed as Server-Sent Events (`GET /events`), under the same buffer
        and `lagged` policy."""
        return self._fanout.subscribe(query, subscriber, replay=replay, kind=SseSubscription)

    def subscribe_firings(self, rule_id: str | None, subscriber: Subscriber) -> FiringSubscription:
        """Finished firings (of one rule, or all) from now on, once `start()`ed."""
        self._engine()
        return self._fanout.subscribe_firings(rule_id, subscriber)

    def unsubscribe(self, sub_id: str, subscriber: Subscriber) -> None:
        """End a subscription the connection holds; -32002 when it holds none by that id."""
        if not self._fanout.unsubscribe_own(subscriber, sub_id):
            raise NotFound(f"no subscription {sub_id!r} on this connection")

    def drop_streams(self, subscriber: Subscriber) -> None:
        """A subscriber that holds no connection slot (an SSE stream) is gone: its subscriptions end."""
        self._fanout.drop_all(subscriber)

    def resume_streams(self, subscriber: Subscriber) -> None:
        """The subscriber drains again: its subscriptions send what they held."""
        self._fanout.resume(subscriber)

    # -- rules ---------------------------------------------------------------

    def _engine(self) -> RuleEngine:
        if self._rules is None:
            raise RulesDisabled(
                f"rules are disabled on bus {self.id!r} (its config has enable_rules: false)"
            )
        return self._rules

    async def register_rule(self, body: dict[str, Any], *, replace: bool) -> bool:
        """Store and index a rule; True when it is new."""
        return await self._engine().rules.register(body, replace=replace)

    async def list_rules(self) -> list[StoredRule]:
        return await self._engine().rules.list()

    async def get_rule(self, rule_id: str) -> StoredRule:
        return await self._engine().rules.get(rule_id)

    async def delete_rule(self, rule_id: str) -> None:
        await self._engine().rules.delete(rule_id)

    async def set_rule_enabled(self, rule_id: str, enabled: bool) -> StoredRule:
        book = self._engine().rules
        await book.set_enabled(rule_id, enabled)
        return await book.get(rule_id)

    async def test_rule(
        self,
        event: dict[str, Any],
        *,
        rule: dict[str, Any] | None = None,
        rule_id: str | None = None,
    ) -> dict[str, Any]:
        """Match a rule (given, or stored) against an event and render its action; nothing runs."""
        return await test_rule(
            self._engine().rules,
            event,
            rule=rule,
            rule_id=rule_id,
            max_action_bytes=self.config.max_message_bytes,
        )

    async def list_firings(self, query: FiringQuery) -> list[Firing]:
        return await self._engine().list_firings(query)

    async def retry_firings(self, selection: FiringSelection) -> int:
        """Dead-letter redrive: run the selected final firings again; how many run."""
        return await self._engine().redrive(selection)

    # -- schedules -----------------------------------------------------------

    async def create_schedule(self, params: CreateScheduleParams) -> ScheduleCreated:
        """Store a recurring schedule. Its events are the bus's own (source
        `trn:eventbus:<bus>:schedule:<id>`), but a source it names itself must be
        one a client could emit with (allowed_sources)."""
        topic = params.event.topic
        if is_reserved_topic(topic):
            raise ReservedTopic(
                f"event.topic {topic!r} is reserved: the _sys. prefix belongs to the bus"
            )
        if params.event.source_trn is not None:
            self._check_source(params.event.source_trn, "event.")
        return await self._scheduler.create(params)

    async def list_schedules(
        self, *, after_id: str | None = None, limit: int = 1000
    ) -> list[StoredSchedule]:
        return await self._scheduler.list(after_id=after_id, limit=limit)

    async def get_schedule(self, schedule_id: str) -> StoredSchedule:
        return await self._scheduler.get(schedule_id)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._scheduler.delete(schedule_id)

    async def set_schedule_enabled(self, schedule_id: str, enabled: bool) -> StoredSchedule:
        return await self._scheduler.set_enabled(schedule_id, enabled)

    # -- info ----------------------------------------------------------------

    def info(self) -> BusInfo:
        config = self.config
        rules = self._rules
        return {
            "id": self.id,
            "version": __version__,
            "persist": config.persist,
            "storage": config.storage_description(),
            "enable_rules": config.enable_rules,
            "allowed_sources": list(config.allowed_sources)
            if config.allowed_sources is not None
            else None,
            "max_concurrency": config.max_concurrency,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
            "stats": {
                **self._stats,  # type: ignore[typeddict-item]  # the writer's and the connections' counters
                "last_event_id": self._topics.last_event_id,
                "topics": len(self._topics),
                "subscriptions": len(self._fanout),
                "lagged": self._fanout.lagged_total,
                "connections": len(self._connections),
                "queue_depth": self._writer.depth,
                "queue_bytes": self._writer.queued_bytes,
                "scheduled_appended": self._scheduler.appended,
                **(
                    {
                        "rules_enabled": len(rules.rules.index),
                        "rule_reloads": rules.rules.reloads,
                        "firings": dict(rules.stats),
                    }
                    if rules
                    else {}
                ),
            },
        }

    def metrics(self) -> MetricsSnapshot:
        """The counters /metrics turns into series, read at scrape time."""
        rejected = dict(self._rejected)
        rejected["overloaded"] += self._stats["rejected_overloaded"]
        rules = self._rules
        return MetricsSnapshot(
            self.info(),
            rejected,
            self._writer.emit_duration,
            self._writer.batch_size,
            dict(rules.firings_by_rule) if rules else {},
            dict(rules.firing_durations) if rules else {},
            dict(rules.actions.tools.calls) if rules else {},
        )

    async def readiness(self) -> str | None:
        """None when the bus can take events (the writer runs, storage answers); else why not."""
        if not self._writer.running:
            return "the writer is not running (starting or shutting down)"
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self.storage.last_event_id()
        except TimeoutError:
            return f"storage did not answer within {READY_TIMEOUT_S:g} s"
        except EventBusError as exc:
            return f"storage unavailable: {exc}"
        return None


def _resolve(future: asyncio.Future[list[EmitResult]], outcome: Outcome) -> None:
    if future.done():  # its awaiter was cancelled
        return
    if isinstance(outcome, Committed):
        future.set_result(outcome.results())
    else:
        future.set_exception(outcome)
