"""One bus: the emit path, queries and subscriptions over one storage (DESIGN.md §6).

emit → validate → allow-list → bounded queue (full: -32005) → one writer task
that drains the queue in batches and commits each batch in one transaction
(group commit) → acks every emitter of the batch → fan-out → commit hooks
(the rule engine).

Acknowledging only after the commit is what makes "nothing acknowledged is
lost" true; batching is what makes it fast, because a commit costs the same
for one event as for a thousand.

A batch holds many clients' requests, so one bad event must not fail the
others (DESIGN.md §3, "Isolation in group commit"): a batch whose commit
fails for any reason but a storage outage is split in two halves, committed
again in order, and so on down to single requests, so only the request at
fault gets the error. Halving instead of committing each request alone keeps
the cost of one poisoned request at about 2·log2(n) commits instead of n:
5,000 one-event commits on PostgreSQL hold the writer for ~7 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventbus_core import __version__
from eventbus_core.envelope import EmitParams, Event, now_ms
from eventbus_core.errors import (
    EventBusError,
    InternalError,
    NotFound,
    Overloaded,
    ReservedTopic,
    SourceNotAllowed,
    StorageUnavailable,
)
from eventbus_core.rules import RetryPolicy
from eventbus_core.topics import is_reserved_topic
from eventbus_core.trn import compile_trn_pattern

from .config import BusConfig
from .dispatcher import Dispatcher, Subscriber, Subscription
from .feed import CommitFeed
from .router.actions import ActionRunner
from .router.engine import RuleEngine
from .router.rulebook import RuleBook
from .router.tools import ToolRouter
from .storage import open_storage
from .storage.base import EventQuery, KeysTaken, NewEvent, Storage, StoredKey
from .topic_table import TopicTable

__all__ = ["Bus", "EmitResult"]

log = logging.getLogger("eventbus.bus")

#: Upper bound of events per group commit; larger batches only add latency.
MAX_BATCH_EVENTS = 5000

CommitHook = Callable[[list[Event]], None]

#: What connections report through `Bus.note`, counted in `bus_info` stats.
CONNECTION_EVENTS = (
    "refused_connections",  # over max_connections
    "closed_partial_line",  # read_timeout_s
    "closed_unauthenticated",  # auth_timeout_s
    "closed_wrong_tokens",  # the 5th wrong token
    "closed_not_reading",  # over max_output_bytes for write_timeout_s
)


@dataclass(frozen=True, slots=True)
class EmitResult:
    event_id: int
    timestamp: int
    duplicate: bool = False


@dataclass(slots=True)
class _Request:
    events: list[NewEvent]
    future: asyncio.Future[list[EmitResult]]


_STOP: Any = object()


class Bus:
    """A bus as its config describes it; `start()` before use, `stop()` after."""

    def __init__(
        self, config: BusConfig, storage: Storage | None = None, *, peers: Mapping[str, Bus] | None = None
    ) -> None:
        """`peers`: the buses of the same process (this one included), for rules that emit there."""
        self.config = config
        self.storage = storage if storage is not None else open_storage(config)
        self.peers: Mapping[str, Bus] = peers if peers is not None else {config.id: self}
        self.rules = self._rule_engine() if config.enable_rules else None
        self.dispatcher = Dispatcher(
            self.storage, subscriber_buffer=config.subscriber_buffer, max_subscriptions=config.max_subscriptions
        )
        if self.rules is not None:
            self.rules.on_finished = self.dispatcher.publish_firing
        self.topics = TopicTable()
        self.commit_hooks: list[CommitHook] = []
        self.feed = CommitFeed(self.storage, self._deliver, bus_id=config.id)
        self._followers: list[asyncio.Task[None]] = []  # feed and watch, for shared storage
        self.connections = 0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=config.queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._committing = False  # the writer holds a batch between the queue and its fan-out
        self._retention: asyncio.Task[None] | None = None
        self._allowed = (
            [compile_trn_pattern(p) for p in config.allowed_sources] if config.allowed_sources is not None else None
        )
        self._started_at = time.monotonic()
        self._stats = {
            "emitted": 0,
            "duplicates": 0,
            "batches": 0,
            "batches_split": 0,
            "rejected_overloaded": 0,
            **dict.fromkeys(CONNECTION_EVENTS, 0),
        }

    @property
    def id(self) -> str:
        return self.config.id

    def _rule_engine(self) -> RuleEngine:
        config = self.config
        tools = ToolRouter(config.tools, max_reply_bytes=config.max_tool_reply_bytes, import_dir=config.config_dir)
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
        )

    def _accepted_by(self) -> dict[str, tuple[str, ...]]:
        return {bus_id: bus.config.accept_from_buses for bus_id, bus in self.peers.items()}

    async def _emit_as_rule(self, bus_id: str | None, params: EmitParams) -> int:
        """Emit an event a rule made, here or on a sibling bus that accepts this one's rules.

        Rule-made events skip the allow-list (it guards clients), but not topic
        validation or the `_sys.` reservation. The sibling's consent is checked
        again here: a rule stored under an older config may no longer have it.
        """
        if bus_id is None or bus_id == self.id:
            target = self
        else:
            target = self.peers.get(bus_id)  # type: ignore[assignment]
            if target is None:
                raise NotFound(f"bus {bus_id!r} is not running in this process")
            if self.id not in target.config.accept_from_buses:
                raise SourceNotAllowed(
                    f"bus {bus_id!r} does not accept events from rules of bus {self.id!r} (its accept_from_buses)"
                )
        return (await target.emit(params, trusted=True)).event_id

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open storage (migrations run there), load topic counters, start the writer."""
        await self.storage.open()
        self.topics.load(await self.storage.list_topics())
        self.topics.last_event_id = await self.storage.last_event_id()
        self.feed.start(self.topics.last_event_id)
        self._started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name=f"writer:{self.id}")
        if self.storage.shared:
            # Other nodes write this bus too: follow their commits and rule changes.
            self._followers = [
                loop.create_task(self.feed.run(), name=f"feed:{self.id}"),
                loop.create_task(
                    self.storage.watch(self.feed.committed_elsewhere, self._rules_changed_elsewhere),
                    name=f"watch:{self.id}",
                ),
            ]
        if self.rules is not None:
            # The port is not bound yet, so nothing has committed since last_event_id;
            # the writer runs already, for firings a crash left pending that emit.
            self.commit_hooks.append(self.rules.on_commit)
            await self.rules.start(self.topics.last_event_id)
        if self.config.retention is not None:
            self._retention = asyncio.get_running_loop().create_task(self._retention_loop())

    async def stop_rules(self) -> None:
        """Stop matching and let running firings finish (or stay pending for the next start).

        The app does this for every bus before stopping any, so a rule that emits
        on a sibling bus still finds it running.
        """
        if self.rules is not None:
            await self.rules.stop()

    async def stop(self) -> None:
        """Stop the rules, drain the queue (every queued emit is committed and acked), close storage."""
        await self.stop_rules()
        if self._retention is not None:
            self._retention.cancel()
        for task in self._followers:
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        if self._writer is not None and not self._writer.done():
            await self._queue.put(_STOP)
            await self._writer
        await self.dispatcher.close()
        await self.storage.close()

    async def wait_idle(self) -> None:
        """Return once everything queued so far is committed and fanned out, and every
        rule firing it caused (and their events' firings) has finished."""
        while True:
            await self._queue.join()
            if self.rules is None:
                return
            await self.rules.wait_idle()
            # Not just an empty queue: the writer may hold a batch it took but has
            # not delivered yet (its fan-out can wait for the feed's lock).
            if self._queue.empty() and not self._committing and self.rules.idle:
                return

    # -- emitting ------------------------------------------------------------

    async def emit(self, params: EmitParams, *, trusted: bool = False) -> EmitResult:
        """Store one event; returns after the commit."""
        return (await self.submit([params], trusted=trusted))[0]

    async def emit_many(self, events: Sequence[EmitParams], *, trusted: bool = False) -> list[EmitResult]:
        """Store several events in one transaction: all of them or none."""
        return await self.submit(events, trusted=trusted, batch=True) if events else []

    def submit(
        self, events: Sequence[EmitParams], *, trusted: bool = False, batch: bool = False
    ) -> asyncio.Future[list[EmitResult]]:
        """Check and queue events; the future resolves once they are committed.

        Not a coroutine, so the RPC layer can answer an emit without a task per
        request. Raises at once for what can be refused before the queue:
        reserved topics, sources outside the allow-list, a full queue.
        """
        if batch:
            accepted = [self._accept(params, trusted, index) for index, params in enumerate(events)]
        else:
            accepted = [self._accept(params, trusted) for params in events]
        return self._enqueue(accepted)

    def _accept(self, params: EmitParams, trusted: bool, index: int | None = None) -> NewEvent:
        where = "" if index is None else f"events[{index}]: "
        if is_reserved_topic(params.topic):
            raise ReservedTopic(f"{where}topic {params.topic!r} is reserved: the _sys. prefix belongs to the bus")
        if not trusted:
            self._check_source(params.source_trn, where)
        return NewEvent(
            topic=params.topic,
            payload=params.payload,
            timestamp=params.timestamp if params.timestamp is not None else now_ms(),
            metadata=params.metadata,
            source_trn=params.source_trn,
            target_trn=params.target_trn,
            correlation_id=params.correlation_id,
            idempotency_key=params.idempotency_key,
        )

    def _check_source(self, source_trn: str | None, where: str) -> None:
        if self._allowed is None:
            return
        allowed = ", ".join(self.config.allowed_sources or ())
        if source_trn is None:
            raise SourceNotAllowed(f"{where}source_trn is required on bus {self.id!r} (allowed: {allowed})")
        if not any(match(source_trn) for match in self._allowed):
            raise SourceNotAllowed(f"{where}source_trn {source_trn!r} is not allowed on bus {self.id!r} (allowed: {allowed})")

    def _enqueue(self, events: list[NewEvent]) -> asyncio.Future[list[EmitResult]]:
        if self._writer is None or self._writer.done():
            raise Overloaded(f"bus {self.id!r} is not accepting events (shutting down)")
        future: asyncio.Future[list[EmitResult]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Request(events, future))
        except asyncio.QueueFull:
            self._stats["rejected_overloaded"] += 1
            raise Overloaded(
                f"bus {self.id!r} emit queue is full ({self.config.queue_size} requests); back off and retry"
            ) from None
        return future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            batch = [first]
            size = len(first.events)
            stop = False
            while size < MAX_BATCH_EVENTS and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop = True
                    self._queue.task_done()
                    break
                batch.append(item)
                size += len(item.events)
            self._committing = True
            try:
                await self._commit(batch)
            finally:
                self._committing = False
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    async def _commit(self, batch: list[_Request]) -> None:
        since_ts = now_ms() - int(self.config.dedup_window * 1000)
        try:
            await self._commit_isolated(batch, since_ts, {})
        except StorageUnavailable as exc:
            # An outage fails everyone not answered yet; retrying the parts would only fail them again, slower.
            _fail(batch, exc)

    async def _commit_isolated(self, batch: list[_Request], since_ts: int, stored_here: dict[str, StoredKey]) -> None:
        """Commit `batch` in one transaction, or else its halves, in order, down to
        the single request at fault, which alone gets the error.

        Idempotency keys stay right across the parts: keys are looked up per
        part (so a key that cannot even be looked up fails only its own
        request), and `stored_here` holds the keys that earlier parts of the
        batch stored, so a repeat in a later part answers as their event, as
        one plan for the whole batch would have.
        """
        try:
            earlier = {**await self._find_duplicates(batch, since_ts), **stored_here}
            plan, stored = await self._append(batch, earlier, since_ts)
        except StorageUnavailable:
            raise
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, self._error_for(exc))
                return
            log.debug("bus=%s group commit of %d requests failed (%r); splitting it", self.id, len(batch), exc)
            self._stats["batches_split"] += 1
            middle = len(batch) // 2
            await self._commit_isolated(batch[:middle], since_ts, stored_here)
            await self._commit_isolated(batch[middle:], since_ts, stored_here)
            return
        stored_here.update(plan.keys_stored(stored))
        await self._committed(batch, plan, stored)

    async def _append(
        self, batch: list[_Request], earlier: dict[str, StoredKey], since_ts: int
    ) -> tuple[_DedupPlan, list[Event]]:
        """Store the batch's new events in one transaction; which ones are new is `earlier`'s call."""
        while True:
            plan = _DedupPlan(earlier, batch)
            try:
                return plan, await self.storage.append(plan.fresh, keys_since_ts=since_ts)
            except KeysTaken as taken:
                # Another node stored some of these keys since we looked (shared
                # storage): answer those as duplicates of its events, store the rest.
                earlier = {**earlier, **taken.found}

    def _error_for(self, exc: Exception) -> EventBusError:
        """What a request whose own commit failed is told; anything but the bus's errors is a bug."""
        if isinstance(exc, EventBusError):
            return exc
        log.error("bus=%s commit failed", self.id, exc_info=exc)
        return InternalError("the bus could not store the events; see the server log")

    async def _committed(self, batch: list[_Request], plan: _DedupPlan, stored: list[Event]) -> None:
        """Acknowledge the batch's emitters, then fan its events out."""
        for request, slots in zip(batch, plan.slots, strict=True):
            if not request.future.done():
                request.future.set_result([plan.result(slot, stored) for slot in slots])
        self._stats["emitted"] += len(stored)
        self._stats["duplicates"] += plan.duplicates
        self._stats["batches"] += 1
        if stored:
            await self.feed.committed_here(stored)

    def _deliver(self, events: list[Event]) -> None:
        """Committed events, in id order, from this node or another (see feed.py)."""
        self.topics.add(events)
        self.dispatcher.publish(events)
        for hook in self.commit_hooks:
            hook(events)

    def _rules_changed_elsewhere(self) -> None:
        if self.rules is not None:
            self.rules.rules.reload_soon()

    async def _find_duplicates(self, batch: list[_Request], since_ts: int) -> dict[str, StoredKey]:
        keys = [e.idempotency_key for r in batch for e in r.events if e.idempotency_key is not None]
        if not keys:
            return {}
        return await self.storage.find_keys(sorted(set(keys)), since_ts)

    # -- reading -------------------------------------------------------------

    async def poll(self, query: EventQuery) -> list[Event]:
        return await self.storage.query(query)

    async def list_topics(self) -> list[dict[str, Any]]:
        """Per-topic counts of what is stored now."""
        if self.storage.kind == "memory":
            # The ring forgets its oldest events; it counts what it still holds, cheaply.
            return [
                {"topic": s.topic, "count": s.count, "last_event_id": s.last_event_id, "last_timestamp": s.last_timestamp}
                for s in await self.storage.list_topics()
            ]
        return self.topics.snapshot()

    def subscribe(self, query: EventQuery, subscriber: Subscriber) -> Subscription:
        """-32005 once the connection holds `max_subscriptions` (both kinds together)."""
        return self.dispatcher.subscribe(query, subscriber)

    def subscribe_firings(self, rule_id: str | None, subscriber: Subscriber) -> Subscription:
        return self.dispatcher.subscribe_firings(rule_id, subscriber)

    def unsubscribe(self, sub_id: str) -> None:
        if not self.dispatcher.unsubscribe(sub_id):
            raise NotFound(f"no subscription {sub_id!r} on bus {self.id!r}")

    def note(self, what: str) -> None:
        """Count a connection event (one of CONNECTION_EVENTS) for `bus_info`."""
        self._stats[what] += 1

    def info(self) -> dict[str, Any]:
        config = self.config
        return {
            "id": self.id,
            "version": __version__,
            "persist": config.persist,
            "storage": config.storage_description(),
            "enable_rules": config.enable_rules,
            "allowed_sources": list(config.allowed_sources) if config.allowed_sources is not None else None,
            "max_concurrency": config.max_concurrency,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
            "stats": {
                **self._stats,
                "last_event_id": self.topics.last_event_id,
                "topics": len(self.topics),
                "subscriptions": len(self.dispatcher),
                "lagged": self.dispatcher.lagged_total,
                "connections": self.connections,
                "queue_depth": self._queue.qsize(),
                **({"rules_enabled": len(self.rules.rules.index), "firings": dict(self.rules.stats)} if self.rules else {}),
            },
        }

    async def _retention_loop(self) -> None:
        retention = self.config.retention
        assert retention is not None
        interval_s = min(60.0, max(1.0, (retention.max_age or 600.0) / 10))
        while True:
            await asyncio.sleep(interval_s)
            try:
                min_ts = now_ms() - int(retention.max_age * 1000) if retention.max_age else None
                pruned = await self.storage.prune(max_events=retention.max_events, min_timestamp=min_ts)
                if pruned:
                    self.topics.load(await self.storage.list_topics(), keep_last_id=True)
                    log.info("bus=%s retention pruned=%d", self.id, pruned)
            except EventBusError as exc:
                log.warning("bus=%s retention skipped: %s", self.id, exc)


class _DedupPlan:
    """Which events of a batch get stored, and which repeat an idempotency key.

    A slot is an index into `fresh` (stored now) or the key of a duplicate,
    whose answer is the first event with that key: stored earlier, or earlier
    in this same batch.
    """

    def __init__(self, earlier: dict[str, StoredKey], batch: list[_Request]) -> None:
        self.earlier = earlier
        self.fresh: list[NewEvent] = []
        self.first_index: dict[str, int] = {}
        self.slots: list[list[int | str]] = []
        self.duplicates = 0
        for request in batch:
            slots: list[int | str] = []
            for new in request.events:
                key = new.idempotency_key
                if key is not None and (key in earlier or key in self.first_index):
                    slots.append(key)
                    self.duplicates += 1
                    continue
                if key is not None:
                    self.first_index[key] = len(self.fresh)
                slots.append(len(self.fresh))
                self.fresh.append(new)
            self.slots.append(slots)

    def keys_stored(self, stored: list[Event]) -> dict[str, StoredKey]:
        """The idempotency keys this plan stored, with the events that now hold them."""
        return {key: StoredKey(stored[index].event_id, stored[index].timestamp) for key, index in self.first_index.items()}

    def result(self, slot: int | str, stored: list[Event]) -> EmitResult:
        if isinstance(slot, int):
            return EmitResult(stored[slot].event_id, stored[slot].timestamp)
        first = self.earlier.get(slot)
        if first is not None:
            return EmitResult(first.event_id, first.timestamp, duplicate=True)
        event = stored[self.first_index[slot]]
        return EmitResult(event.event_id, event.timestamp, duplicate=True)


def _fail(batch: list[_Request], exc: EventBusError) -> None:
    for request in batch:
        if not request.future.done():
            request.future.set_exception(exc)
