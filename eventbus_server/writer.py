"""The single writer of a bus: group commit with isolation (DESIGN.md §3, §6).

emits → bounded queue (full: -32005) → one task drains it in batches and
commits each batch in one transaction → answers every emitter of the batch →
`on_commit` (the bus's fan-out and hooks).

An emitter is answered by one call of the callback it queued with, made by
the write loop as soon as the commit returns: a `Committed` (its events'
ids, read in the shape the caller needs) or the error. No future per emit
on the hot path: the RPC layer writes the reply from that call.

Acknowledging only after the commit is what makes "nothing acknowledged is
lost" true; batching is what makes it fast, because a commit costs the same
for one event as for a thousand.

A batch holds many clients' requests, so one bad event must not fail the
others ("Isolation in group commit"): a batch whose commit fails for any
reason but a storage outage is split in two halves, committed again in
order, and so on down to single requests, so only the request at fault gets
the error. Halving instead of committing each request alone keeps the cost
of one poisoned request at about 2·log2(n) commits instead of n: 5,000
one-event commits on PostgreSQL hold the writer for ~7 s.

A lone request (the only one its connection's read brought) skips the queue
when the writer is idle and the storage commits it without waiting (SQLite
at `durability: normal`, memory): it is committed, answered and handed to
the feed before `enqueue` returns, so its reply leaves in the turn of the
loop that read it, not two turns later (the writer task's, then the
flush's). Once per turn: the other requests read in that turn queue up and
commit as one group, after it. And only while lone requests come one at a
time: once one finds others waiting, they all queue (group commits cost less
per event when many clients emit at once) until the writer takes a batch of
one request again.

Besides emits, the queue carries operations: a storage call that appends
events of its own in one transaction (the scheduler's "append what is due",
scheduler.py). Each runs alone, in its place in the queue, and its events
go to `on_commit` like any batch's, so what the log gets from either path
reaches the feed in id order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventbus_core.errors import EventBusError, InternalError, Overloaded, StorageUnavailable
from eventbus_core.event import Event, now_ms
from eventbus_core.results import EmitResult
from eventbus_server.histogram import BATCH_SIZE_BUCKETS, DURATION_BUCKETS_S, Histogram
from eventbus_server.storage.base import KeysTaken, NewEvent, Storage, StoredKey

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "Committed",
    "EmitResult",
    "GroupCommitWriter",
    "Outcome",
]

log = logging.getLogger("eventbus.bus")

#: Upper bound of events per group commit; larger batches only add latency.
MAX_BATCH_EVENTS = 5000
#: And of the requests' bytes in one group commit: 5,000 events of 1 MB each were
#: 5 GB to encode and insert in one go, while every connection waited.
MAX_BATCH_BYTES = 16 * 1_048_576


@dataclass(slots=True)
class _Request:
    events: list[NewEvent]
    done: Callable[[Outcome], None]
    #: What the request weighs in the queue (its line's bytes; 0 for the bus's own emits).
    size: int = 0
    received: float = 0.0  # time.monotonic() when queued, for the emit duration
    #: The idempotency keys its events carry (usually none: the commit then skips them).
    keys: list[str] = field(default_factory=list)
    answered: bool = False


@dataclass(slots=True)
class _Operation:
    """A storage call that appends events in one transaction, run in queue order."""

    run: Callable[[], Awaitable[list[Event]]]
    future: asyncio.Future[list[Event]]


_STOP: Any = object()


class GroupCommitWriter:
    """Commits queued emits in batches; `start()` before use, `stop()` drains and ends it."""

    def __init__(
        self,
        storage: Storage,
        on_commit: Callable[[list[Event]], Awaitable[None]],
        *,
        deliver_now: Callable[[list[Event]], bool],
        bus_id: str,
        queue_size: int,
        dedup_window_s: float,
        stats: dict[str, int],
        max_queue_bytes: int = 64 * 1_048_576,
    ) -> None:
        """`queue_size` requests, and `max_queue_bytes` of their lines, may wait.
        `deliver_now` is `on_commit` if it need not wait (else False, nothing done)."""
        self.storage = storage
        self.on_commit = on_commit
        self.deliver_now = deliver_now
        self.bus_id = bus_id
        self.dedup_window_s = dedup_window_s
        self.stats = stats
        self.queue_size = queue_size
        self._queue: asyncio.Queue[_Request | _Operation] = asyncio.Queue(maxsize=queue_size)
        self.max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0  # of the requests in the queue and in the batch being committed
        self._task: asyncio.Task[None] | None = None
        self._committing = False  # holds a batch between the queue and its fan-out
        #: An operation taken from the queue while gathering a batch: it runs after that batch.
        self._held: _Operation | None = None
        #: A request was committed at once in this turn of the loop (the rest queue up).
        self._turn_taken = False
        #: Lone requests were seen to come several at a time: they queue, until a batch of one.
        self._crowded = False
        #: Events committed at once whose `on_commit` had to wait: the next batch waits for it.
        self._handing_on: asyncio.Task[None] | None = None
        #: Queued → acknowledged, per request; events per group commit (read by /metrics).
        self.emit_duration = Histogram(DURATION_BUCKETS_S)
        self.batch_size = Histogram(BATCH_SIZE_BUCKETS)

    @property
    def running(self) -> bool:
        """Whether the writer task runs (for /readyz)."""
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        """Requests waiting for the writer."""
        return self._queue.qsize()

    @property
    def queued_bytes(self) -> int:
        """What the waiting requests (and the batch being committed) weigh."""
        return self._queued_bytes

    @property
    def busy(self) -> bool:
        """Whether anything queued is not yet committed and handed to `on_commit`."""
        return (
            not self._queue.empty()
            or self._committing
            or self._held is not None
            or self._handing_on is not None
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._write_loop(), name=f"writer:{self.bus_id}"
        )

    async def stop(self) -> None:
        """Commit and answer everything queued so far, then end."""
        if self._task is not None and not self._task.done():
            await self._queue.put(_STOP)
            await self._task

    async def join(self) -> None:
        """Return once everything queued so far has been committed."""
        await self._queue.join()

    def enqueue(
        self,
        events: list[NewEvent],
        size: int,
        done: Callable[[Outcome], None],
        *,
        at_once: bool = False,
    ) -> None:
        """Queue checked events weighing `size` bytes; `done` is called once, from the write
        loop, with their `Committed` or the error. Raises `Overloaded` when full.

        `at_once`: nothing else of the caller's is coming this turn. Then, if the writer
        is idle and the storage commits without waiting, `done` is called before this
        returns (see the module docstring).
        """
        if self._task is None or self._task.done():
            raise Overloaded(f"bus {self.bus_id!r} is not accepting events (shutting down)")
        limit = self.max_queue_bytes
        if size and self._queued_bytes and self._queued_bytes + size > limit:
            # Requests of 1 MB from twenty connections filled 10,000 slots with 1.6 GB in 8 s.
            # One request always fits an empty queue, however large its line.
            self.stats["rejected_overloaded"] += 1
            raise Overloaded(
                f"bus {self.bus_id!r} emit queue is full ({self._queued_bytes} bytes of requests waiting,"
                f" max_queue_bytes {limit}); back off and retry"
            )
        keys = [e.idempotency_key for e in events if e.idempotency_key is not None]
        request = _Request(events, done, size, time.monotonic(), keys)
        if at_once and not keys:
            if not self._idle():
                self._crowded = True
            elif self._commit_at_once(request):
                return
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            self.stats["rejected_overloaded"] += 1
            raise Overloaded(
                f"bus {self.bus_id!r} emit queue is full ({self.queue_size} requests); back off and retry"
            ) from None
        self._queued_bytes += size

    def _idle(self) -> bool:
        """Nothing queued, committing or being handed on, and no request committed at once
        this turn: a request committed now is next in id order and delivery order."""
        return (
            not self._turn_taken
            and not self._crowded
            and not self._committing
            and self._held is None
            and self._handing_on is None
            and self._queue.empty()
        )

    def _commit_at_once(self, request: _Request) -> bool:
        """Commit a lone request (no idempotency keys) as a batch of one, here, if the
        storage can without waiting; False, with nothing done, if it cannot."""
        self._committing = True
        try:
            try:
                stored = self.storage.append_now(request.events)
            except StorageUnavailable as exc:
                self.stats["storage_errors"] += 1
                self._fail([request], exc)
                stored = []
            except Exception as exc:
                self._fail([request], self._error_for(exc))
                stored = []
            else:
                if stored is None:
                    return False
                self._acknowledge([request], _DedupPlan({}, [request]), stored)
            # Concurrent requests read in the rest of this turn commit as one group.
            self._turn_taken = True
            asyncio.get_running_loop().call_soon(self._end_turn)
            if stored:
                self._deliver_at_once(stored)
            return True
        finally:
            self._committing = False

    def _end_turn(self) -> None:
        self._turn_taken = False

    def _deliver_at_once(self, stored: list[Event]) -> None:
        try:
            if self.deliver_now(stored):
                return
        except Exception:
            # Stored and acknowledged: the emitter is not told otherwise.
            log.exception("bus=%s handing on committed events failed", self.bus_id)
            return
        self._handing_on = asyncio.get_running_loop().create_task(self._hand_on(stored))

    async def _hand_on(self, stored: list[Event]) -> None:
        try:
            await self.on_commit(stored)
        finally:
            self._handing_on = None

    async def run_operation(self, run: Callable[[], Awaitable[list[Event]]]) -> list[Event]:
        """Run `run` (a storage call that appends events) in the write loop's order;
        its events are handed on like a batch's. Waits for room in the queue."""
        if self._task is None or self._task.done():
            raise Overloaded(f"bus {self.bus_id!r} is not accepting events (shutting down)")
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Operation(run, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            if self._held is not None:
                first: Any = self._held
                self._held = None
            else:
                first = await self._queue.get()
            if self._handing_on is not None:
                await self._handing_on  # events committed at once reach the feed first
            if first is _STOP:
                self._queue.task_done()
                return
            if isinstance(first, _Operation):
                await self._operate(first)
                continue
            batch = [first]
            size, weight = len(first.events), first.size
            stop = False
            while size < MAX_BATCH_EVENTS and weight < MAX_BATCH_BYTES and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop = True
                    self._queue.task_done()
                    break
                if isinstance(item, _Operation):
                    self._held = item  # after this batch, in its turn
                    break
                batch.append(item)
                size += len(item.events)
                weight += item.size
            if len(batch) == 1:
                self._crowded = False
            self._committing = True
            try:
                await self._commit(batch)
            finally:
                self._committing = False
                self._queued_bytes -= weight
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    async def _operate(self, operation: _Operation) -> None:
        self._committing = True
        try:
            try:
                stored = await operation.run()
            except Exception as exc:
                if not operation.future.done():
                    operation.future.set_exception(self._error_for(exc))
                return
            if not operation.future.done():
                operation.future.set_result(stored)
            if stored:
                self.stats["emitted"] += len(stored)
                await self.on_commit(stored)
        finally:
            self._committing = False
            self._queue.task_done()

    async def _commit(self, batch: list[_Request]) -> None:
        since_ts = now_ms() - int(self.dedup_window_s * 1000)
        try:
            await self._commit_isolated(batch, since_ts, {})
        except StorageUnavailable as exc:
            # An outage fails everyone not answered yet; retrying the parts would only fail them again, slower.
            self.stats["storage_errors"] += 1
            self._fail(batch, exc)

    async def _commit_isolated(
        self, batch: list[_Request], since_ts: int, stored_here: dict[str, StoredKey]
    ) -> None:
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
                self._fail(batch, self._error_for(exc))
                return
            log.debug(
                "bus=%s group commit of %d requests failed (%r); splitting it",
                self.bus_id,
                len(batch),
                exc,
            )
            self.stats["batches_split"] += 1
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

    def _answer(self, request: _Request, outcome: Outcome) -> None:
        """Tell the request's emitter, once; its callback's failure is not the writer's."""
        if request.answered:
            return
        request.answered = True
        try:
            request.done(outcome)
        except Exception:
            log.exception("bus=%s an emitter's callback failed", self.bus_id)

    def _fail(self, batch: list[_Request], exc: EventBusError) -> None:
        for request in batch:
            self._answer(request, exc)

    def _error_for(self, exc: Exception) -> EventBusError:
        """What a request whose own commit failed is told; anything but the bus's errors is a bug."""
        if isinstance(exc, EventBusError):
            return exc
        log.error("bus=%s commit failed", self.bus_id, exc_info=exc)
        return InternalError("the bus could not store the events; see the server log")

    async def _committed(
        self, batch: list[_Request], plan: _DedupPlan, stored: list[Event]
    ) -> None:
        """Acknowledge the batch's emitters, then hand its events on."""
        self._acknowledge(batch, plan, stored)
        if stored:
            await self.on_commit(stored)

    def _acknowledge(self, batch: list[_Request], plan: _DedupPlan, stored: list[Event]) -> None:
        acked_at = time.monotonic()
        observe = self.emit_duration.observe
        for request, slots in zip(batch, plan.slots, strict=True):
            if not request.answered:
                self._answer(request, Committed(plan, stored, slots))
                observe(acked_at - request.received)
        if stored:
            self.batch_size.observe(len(stored))
        self.stats["emitted"] += len(stored)
        self.stats["duplicates"] += plan.duplicates
        self.stats["batches"] += 1

    async def _find_duplicates(self, batch: list[_Request], since_ts: int) -> dict[str, StoredKey]:
        keys = [key for request in batch for key in request.keys]
        if not keys:
            return {}
        return await self.storage.find_keys(sorted(set(keys)), since_ts)


class _DedupPlan:
    """Which events of a batch get stored, and which repeat an idempotency key.

    A slot is an index into `fresh` (stored now) or the key of a duplicate,
    whose answer is the first event with that key: stored earlier, or earlier
    in this same batch. A request without keys (the usual one) has a range of
    fresh indexes, found without looking at its events one by one.
    """

    def __init__(self, earlier: dict[str, StoredKey], batch: list[_Request]) -> None:
        self.earlier = earlier
        self.fresh: list[NewEvent] = []
        self.first_index: dict[str, int] = {}
        self.slots: list[Sequence[int | str]] = []
        self.duplicates = 0
        for request in batch:
            if not request.keys:
                start = len(self.fresh)
                self.fresh += request.events
                self.slots.append(range(start, len(self.fresh)))
                continue
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
        return {
            key: StoredKey(stored[index].event_id, stored[index].timestamp)
            for key, index in self.first_index.items()
        }

    def result(self, slot: int | str, stored: list[Event]) -> EmitResult:
        if isinstance(slot, int):
            return EmitResult(stored[slot].event_id, stored[slot].timestamp)
        first = self.earlier.get(slot)
        if first is not None:
            return EmitResult(first.event_id, first.timestamp, duplicate=True)
        event = stored[self.first_index[slot]]
        return EmitResult(event.event_id, event.timestamp, duplicate=True)


class Committed:
    """One request's events, committed: built once per request by the write loop, read
    in the shape its caller needs (nothing per event until a caller asks)."""

    __slots__ = ("_plan", "_slots", "_stored")

    def __init__(self, plan: _DedupPlan, stored: list[Event], slots: Sequence[int | str]) -> None:
        self._plan = plan
        self._stored = stored
        self._slots = slots

    def results(self) -> list[EmitResult]:
        """Each event's id and timestamp (or those of the event it repeats), in order."""
        return [self._plan.result(slot, self._stored) for slot in self._slots]

    def first(self) -> EmitResult:
        """The first event's result (an `emit_event`'s only one)."""
        return self._plan.result(self._slots[0], self._stored)

    def event_ids(self) -> list[int]:
        """The events' ids, in order: a range when they were stored together in one run."""
        slots = self._slots
        if type(slots) is range and slots:
            first = self._stored[slots[0]].event_id
            last = self._stored[slots[-1]].event_id
            # Ids only increase, so these n ids are consecutive iff they span n.
            if last - first == len(slots) - 1:
                return list(range(first, last + 1))
        return [result.event_id for result in self.results()]


#: What an emitter's callback is given: its events, committed, or why they were not.
Outcome = Committed | EventBusError
