"""The rule engine of one bus: committed events in, firings out (DESIGN.md §6).

    commit hook ─▶ inbox ─▶ match (index, then conditions) ─▶ claim in storage
                                                                  │
    rule_fired ◀─ finish in storage ◀─ run with retries ◀─────────┘
                                       under Semaphore(max_concurrency)

Exactly once, to completion: a matched (rule, event) pair is *claimed* — a
`pending` row under a unique key, written in the same transaction that moves
the engine's cursor past the event — before anything runs. After a crash the
engine re-runs every pending firing (same `firing_id`) and re-matches the
events after its cursor; claims already made are not made again. So a pair
never fires zero times and never finishes `ok` twice; only a call cut off by
the crash may reach a tool twice, with the same `firing_id`.

Events that match nothing move the cursor in memory only; it is written at
most once a second (and at stop), because re-matching them after a crash
claims nothing.

A poison event cannot stall matching: a rule that raises on an event does not
match it (logged once per rule), so the cursor moves past it instead of
re-reading it forever; and a batch gives the event loop a turn every
`MATCH_SLICE_S`, so other connections and buses keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from eventbus_core.errors import EventBusError, InvalidParams, Overloaded, StorageUnavailable
from eventbus_core.event import Event, now_ms
from eventbus_core.rules import RetryPolicy
from eventbus_server import tracing
from eventbus_server.histogram import DURATION_BUCKETS_S, Histogram
from eventbus_server.rules.actions import ActionRunner, hops_of
from eventbus_server.rules.lang.limits import TooManyValues
from eventbus_server.rules.lang.matcher import CompiledRule, envelope_of
from eventbus_server.rules.lang.plan import TopicPlan
from eventbus_server.rules.lang.templates import TemplateTooLarge
from eventbus_server.rules.outages import through_outages
from eventbus_server.rules.rulebook import RuleBook
from eventbus_server.rules.tools.invoke import NoToolRoute, ToolError
from eventbus_server.storage.base import Firing, FiringQuery, FiringSelection, Storage
from eventbus_server.storage.reader import READ_PAGE, LogReader

__all__ = ["RuleEngine"]

log = logging.getLogger("eventbus.rules")

#: Committed events held in memory for matching; beyond it the engine reads from storage.
INBOX_LIMIT = 10_000
#: Claimed firings waiting for the semaphore; beyond it matching pauses.
MAX_WAITING_FIRINGS = 1000
CURSOR_SAVE_INTERVAL_S = 1.0
#: Matching runs this long at most before it lets the event loop serve others.
MATCH_SLICE_S = 0.005
#: How often an engine on shared storage looks for firings a dead node left unfinished.
ADOPT_INTERVAL_S = 2.0
#: Errors worth another attempt: the tool's, a bus that is briefly full, and a sibling bus's
#: storage outage (this bus's own is waited out, not retried: rules/outages.py).
RETRYABLE = (ToolError, Overloaded, StorageUnavailable)


@dataclass(slots=True)
class _Job:
    firing: Firing
    rule: CompiledRule
    event: Event


class RuleEngine:
    def __init__(
        self,
        storage: Storage,
        rules: RuleBook,
        actions: ActionRunner,
        *,
        bus_id: str,
        max_concurrency: int,
        retry: RetryPolicy,
        max_hops: int,
        max_action_bytes: int = 1_048_576,
    ) -> None:
        """`max_action_bytes`: how large a rendered payload or tool input may be (the
        bus's max_message_bytes: a rule makes no larger event than a client may send)."""
        self.storage = storage
        self.reader = LogReader(storage)
        self.rules = rules
        self.actions = actions
        self.bus_id = bus_id
        self.retry = retry
        self.max_hops = max_hops
        self.max_action_bytes = max_action_bytes
        self.semaphore = asyncio.Semaphore(max_concurrency)
        #: Told of every firing once it is recorded final (the bus fans it out to `rule_fired`).
        self.on_finished: Callable[[Firing], None] | None = None
        self.stats = {
            "matched": 0,
            "ok": 0,
            "failed": 0,
            "skipped": 0,
            "running": 0,
            "match_errors": 0,
            "match_too_large": 0,
        }
        #: Finished firings by (rule, status) and their durations by rule, for /metrics.
        self.firings_by_rule: dict[tuple[str, str], int] = {}
        self.firing_durations: dict[str, Histogram] = {}
        self._raised: dict[str, CompiledRule] = {}  # rules whose matching raised, each logged once
        self._inbox: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._matching = False  # a batch is between the inbox and its claimed jobs
        self._cursor = 0
        self._saved_cursor = 0
        self._saved_at = 0.0
        self._read_until = 0  # events up to here are read from storage, not the inbox
        self._seen = 0  # the newest event committed so far
        self._jobs: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()  # set while fewer than MAX_WAITING_FIRINGS wait
        self._room.set()
        self._idle = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._adopt_task: asyncio.Task[None] | None = None
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------

    async def start(self, last_event_id: int) -> None:
        """Load rules, re-run firings a crash cut off, and catch up from the cursor.

        Called before the bus accepts connections, so no event commits
        meanwhile: every event after `last_event_id` comes through `on_commit`.
        """
        await self.rules.load()
        cursor = await self.storage.load_cursor()
        # A first start does not fire rules for history that predates the engine.
        self._cursor = self._saved_cursor = last_event_id if cursor is None else cursor
        self._read_until = self._seen = last_event_id
        for firing in await self.storage.pending_firings():
            await self._resume(firing)
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._match_loop(), name=f"rules:{self.bus_id}")
        if self._cursor < self._read_until:
            # Events a crash left unmatched (committed after the cursor was last saved):
            # match them now. Nothing else wakes the loop until the next commit, which on
            # a quiet bus may be hours away (and wait_idle waited for it).
            self._wake.set()
        if self.storage.shared:
            self._adopt_task = loop.create_task(
                self._adopt_loop(), name=f"rules-adopt:{self.bus_id}"
            )
        self._update_idle()

    async def _adopt_loop(self) -> None:
        """With other nodes on the same storage: take over the firings of one that died."""
        while True:
            await asyncio.sleep(ADOPT_INTERVAL_S)
            try:
                orphans = await self.storage.pending_firings()
            except EventBusError as exc:
                log.warning("bus=%s cannot look for orphaned firings: %s", self.bus_id, exc)
                continue
            for firing in orphans:
                log.info(
                    "bus=%s adopting firing=%d of a node that is gone",
                    self.bus_id,
                    firing.firing_id,
                )
                try:
                    await self._resume(firing)
                except EventBusError as exc:  # reading its event failed: the next round retries
                    log.warning(
                        "bus=%s cannot adopt firing=%d yet: %s", self.bus_id, firing.firing_id, exc
                    )

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """Stop matching; let running firings finish for `grace_s`; the rest stay pending."""
        if self._stopped:
            return
        self._stopped = True
        await self.rules.close()
        if self._adopt_task is not None:
            self._adopt_task.cancel()
            await asyncio.gather(self._adopt_task, return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._jobs:
            _, unfinished = await asyncio.wait(set(self._jobs), timeout=grace_s)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        try:
            await self._save_cursor()
        except EventBusError as exc:
            log.warning("bus=%s rule cursor not saved at stop: %s", self.bus_id, exc)
        await self.actions.tools.aclose()

    async def wait_idle(self) -> None:
        """Return once every committed event is matched and every firing finished."""
        await self._idle.wait()

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    # -- matching ------------------------------------------------------------

    def on_commit(self, events: list[Event]) -> None:
        """The bus's commit hook: queue committed events for matching."""
        if not events:
            return
        self._seen = events[-1].event_id
        if len(self._inbox) + len(events) > INBOX_LIMIT:
            # Too far behind to hold them all: read them back from storage instead.
            self._inbox.clear()
            self._read_until = max(self._read_until, events[-1].event_id)
        else:
            self._inbox.extend(events)
        self._idle.clear()
        self._wake.set()

    async def _match_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Events taken from the inbox are neither there nor in _jobs while
            # they are being claimed; this keeps idle() honest meanwhile.
            self._matching = True
            while True:
                await self._room.wait()
                try:
                    events = await self._next_events()
                    if not events:
                        break
                    await self._match(events)
                except EventBusError as exc:
                    log.warning("bus=%s rule matching paused: %s", self.bus_id, exc)
                    await self._rewind()
                except Exception:
                    log.exception(
                        "bus=%s rule matching failed; retrying from the cursor", self.bus_id
                    )
                    await self._rewind()
            self._matching = False
            await self._maybe_save_cursor()
            self._update_idle()

    async def _rewind(self) -> None:
        """After a failed batch: the cursor has not moved, so read everything after it from storage."""
        self._read_until = max(self._read_until, self._seen)
        self._inbox.clear()
        await asyncio.sleep(1.0)

    async def _next_events(self) -> list[Event]:
        if self._cursor < self._read_until:
            page = await self.reader.page(self._cursor, up_to=self._read_until)
            if page:
                return page
            self._cursor = self._read_until  # nothing left there (pruned, or a memory ring)
        inbox = self._inbox
        while inbox and inbox[0].event_id <= self._cursor:
            inbox.popleft()
        taken = [inbox.popleft() for _ in range(min(len(inbox), READ_PAGE))]
        return taken

    async def _match(self, events: list[Event]) -> None:
        matched = await self._matching_pairs(events)
        last = events[-1].event_id
        if not matched:
            self._cursor = last
            return
        # One claim for exactly the pairs matched in this batch, moving the cursor past it.
        claimed = await self.storage.claim_firings(
            [(rule.id, event.event_id) for rule, event in matched], last
        )
        self._cursor = self._saved_cursor = last
        self._saved_at = time.monotonic()
        by_pair = {(rule.id, event.event_id): (rule, event) for rule, event in matched}
        for firing in claimed:
            rule, event = by_pair[(firing.rule_id, firing.event_id)]
            self._schedule(_Job(firing, rule, event))
        self.stats["matched"] += len(claimed)

    async def _matching_pairs(self, events: list[Event]) -> list[tuple[CompiledRule, Event]]:
        """Every (rule, event) of the batch that matches, against one snapshot of the rules.

        Most rules read a few fields and are matched here, giving the loop a turn
        every MATCH_SLICE_S. A JSONPath that may walk the whole event (`$..x`,
        filters) costs about 1 µs a node, 0.6 s over a 1 MiB event, in one call
        that cannot be cut: the events of a topic with such a rule are matched in
        a worker thread, once per batch, so the event loop keeps serving meanwhile.
        """
        index = self.rules.index
        matched: list[tuple[CompiledRule, Event]] = []
        if not len(index):
            return matched
        # The snapshot: every plan of the batch, taken before the first await. The
        # index changes in place when a rule does; a plan never changes once built.
        plans = {topic: index.plan(topic) for topic in {event.topic for event in events}}
        heavy: list[tuple[TopicPlan, Event, dict[str, Any]]] = []
        turn_ends = time.monotonic() + MATCH_SLICE_S
        for event in events:
            plan = plans[event.topic]
            if not plan:
                continue
            envelope = envelope_of(event)
            if plan.reads_whole_event:
                heavy.append((plan, event, envelope))
                continue
            matched += self._event_matches(plan, event, envelope)
            if time.monotonic() >= turn_ends:
                # A heavy batch (1,000 events times many rules) must not hold
                # the loop that every connection and bus of the process shares.
                await asyncio.sleep(0)
                turn_ends = time.monotonic() + MATCH_SLICE_S
        if heavy:
            # The rules and events are only read there. Order within the batch does
            # not matter: the batch is claimed as a whole.
            matched += await asyncio.to_thread(
                lambda: [
                    pair
                    for plan, event, envelope in heavy
                    for pair in self._event_matches(plan, event, envelope)
                ]
            )
        return matched

    def _event_matches(
        self, plan: TopicPlan, event: Event, envelope: dict[str, Any]
    ) -> list[tuple[CompiledRule, Event]]:
        return [
            (rule, event)
            for rule in plan.candidates(envelope)
            if self._matches(rule, event, envelope)
        ]

    def _matches(self, rule: CompiledRule, event: Event, envelope: dict[str, Any]) -> bool:
        """Whether `rule` matches `event`; a rule that raises on it does not.

        Matching should never raise (rules are checked when compiled), but if it
        does, retrying cannot help: the same event raises again. Counting it as
        no match lets the engine move on; other rules still see the event. An
        event with a field too large to test (MAX_FIELD_VALUES) is no match too.
        """
        try:
            return rule.matches(event, envelope)
        except TooManyValues as exc:
            self.stats["match_too_large"] += 1
            if self._raised.get(rule.id) is not rule:
                self._raised[rule.id] = rule
                log.warning(
                    "bus=%s rule=%s does not match event=%d: %s (logged once per rule)",
                    self.bus_id,
                    rule.id,
                    event.event_id,
                    exc,
                )
            return False
        except Exception:
            self.stats["match_errors"] += 1
            if self._raised.get(rule.id) is not rule:  # once per rule (and per version of it)
                self._raised[rule.id] = rule
                log.exception(
                    "bus=%s rule=%s raised while matching event=%d; such events count as no match "
                    "for it (logged once per rule)",
                    self.bus_id,
                    rule.id,
                    event.event_id,
                )
            return False

    async def _maybe_save_cursor(self) -> None:
        if (
            self._cursor > self._saved_cursor
            and time.monotonic() - self._saved_at >= CURSOR_SAVE_INTERVAL_S
        ):
            try:
                await self._save_cursor()
            except EventBusError as exc:
                log.warning("bus=%s rule cursor not saved: %s", self.bus_id, exc)

    async def _save_cursor(self) -> None:
        if self._cursor > self._saved_cursor:
            await self.storage.save_cursor(self._cursor)
            self._saved_cursor = self._cursor
        self._saved_at = time.monotonic()

    async def redrive(self, selection: FiringSelection) -> int:
        """Dead-letter redrive: run the selected final firings again (same firing_id,
        attempts continue), recorded as before. Returns how many run again."""
        firings = await self.storage.rearm_firings(selection)
        for firing in firings:
            await self._resume(firing, why="retrying")
        return len(firings)

    async def _resume(self, firing: Firing, *, why: str = "resuming") -> None:
        """Schedule a pending firing (a crash left it, or a retry re-armed it), or close it
        if it cannot run."""
        rule = self.rules.compiled(firing.rule_id)
        event = await self.reader.event(firing.event_id)
        if rule is None or event is None:
            firing.status = "skipped"
            firing.error = (
                f"rule {firing.rule_id!r} was deleted"
                if rule is None
                else f"event {firing.event_id} is no longer stored"
            )
            # Recorded in the background, as a firing is: a storage outage meanwhile is
            # waited out there, not by the caller (a start, the adopt loop, retry_firings).
            self._spawn(self._finish(firing))
            return
        log.info(
            "bus=%s %s firing=%d rule=%s event=%d",
            self.bus_id,
            why,
            firing.firing_id,
            rule.id,
            event.event_id,
        )
        self._schedule(_Job(firing, rule, event))

    # -- firing --------------------------------------------------------------

    def _schedule(self, job: _Job) -> None:
        self._spawn(self._fire(job))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a firing, or recording one) as one of the engine's jobs: counted
        against MAX_WAITING_FIRINGS, awaited by wait_idle, given grace at stop."""
        task = asyncio.get_running_loop().create_task(work)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)
        if len(self._jobs) >= MAX_WAITING_FIRINGS:
            self._room.clear()
        self._idle.clear()

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        if len(self._jobs) < MAX_WAITING_FIRINGS:
            self._room.set()
        self._update_idle()

    async def _fire(self, job: _Job) -> None:
        attributes = {
            "eventbus.bus": self.bus_id,
            "eventbus.rule_id": job.rule.id,
            "eventbus.event_id": job.event.event_id,
            "eventbus.firing_id": job.firing.firing_id,
        }
        with tracing.span("rule.fire", attributes, metadata=job.event.metadata) as span:
            await self._fire_traced(job)
            if span is not None:
                span.set_attribute("eventbus.attempts", job.firing.attempts)
                span.set_attribute("eventbus.status", job.firing.status)
                if job.firing.status == "failed":
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR, job.firing.error))

    async def _fire_traced(self, job: _Job) -> None:
        firing, event = job.firing, job.event
        firing.started_at = now_ms()
        tool_s = 0.0
        if hops_of(event) + 1 > self.max_hops:
            firing.status = "skipped"
            firing.error = f"loop guard: event {event.event_id} is {hops_of(event)} hops from a client event (max_hops {self.max_hops})"
        else:
            try:
                action = await self._render(job.rule, event)
            except TemplateTooLarge as exc:
                firing.status = "failed"
                firing.error = f"the action rendered for event {event.event_id} is too large: {exc} (max_message_bytes)"
            except Exception as exc:  # a template the compiler let through; never leave it pending
                log.exception(
                    "bus=%s rule=%s could not render its action", self.bus_id, job.rule.id
                )
                firing.status, firing.error = "failed", f"could not render the action: {exc}"
            else:
                tool_s = await self._attempt(job, action, job.rule.rule.retry or self.retry)
        firing.duration_ms = round(tool_s * 1000)
        await self._finish(firing)

    async def _render(self, rule: CompiledRule, event: Event) -> dict[str, Any]:
        """The rule's action for this event, at most max_action_bytes of it."""
        envelope = envelope_of(event)
        if rule.renders_whole_event:
            # A `..` or filter path walks every node of the event (0.4 s over 100,000 of them):
            # not on the loop every connection and bus shares, as for matching.
            return await asyncio.to_thread(
                rule.render_action, envelope, max_bytes=self.max_action_bytes
            )
        return rule.render_action(envelope, max_bytes=self.max_action_bytes)

    async def _attempt(self, job: _Job, action: dict[str, Any], retry: RetryPolicy) -> float:
        """Runs the action with retries; returns the seconds spent in its tool calls, which
        is the firing's duration (DESIGN §6): not the waits for a concurrency slot, nor the
        backoff between attempts."""
        firing = job.firing
        tool_s = 0.0
        earlier = firing.attempts  # a redriven dead letter's attempts continue (retry_firings)
        backoff_s = retry.backoff_ms / 1000
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retry.attempts),
            wait=wait_exponential(multiplier=backoff_s, max=max(backoff_s, 60.0))
            + wait_random(0, backoff_s),
            retry=retry_if_exception_type(RETRYABLE),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    firing.attempts = earlier + attempt.retry_state.attempt_number
                    async with self.semaphore:
                        self.stats["running"] += 1
                        called = time.monotonic()
                        try:
                            firing.result = await self.actions.run(
                                action,
                                rule_id=job.rule.id,
                                event=job.event,
                                firing_id=firing.firing_id,
                            )
                        finally:
                            self.stats["running"] -= 1
                            tool_s += time.monotonic() - called
            firing.status, firing.error = "ok", None
        except (*RETRYABLE, NoToolRoute, EventBusError) as exc:
            firing.status, firing.error = "failed", str(exc)
        except Exception as exc:
            log.exception(
                "bus=%s firing=%d rule=%s failed unexpectedly",
                self.bus_id,
                firing.firing_id,
                job.rule.id,
            )
            firing.status, firing.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        return tool_s

    async def _finish(self, firing: Firing) -> None:
        """Record the firing final, waiting out a storage outage (rules/outages.py)."""

        async def record() -> None:
            try:
                await self.storage.finish_firing(firing)
            except InvalidParams as exc:
                if firing.result is None and firing.status == "failed":
                    raise  # not even the error can be stored: a bug, not the tool's doing
                # The storage cannot hold what the tool answered (PostgreSQL and \u0000, say):
                # record the firing as failed with the reason, or it would stay pending forever.
                firing.status, firing.result, firing.error = (
                    "failed",
                    None,
                    f"the result cannot be stored: {exc}",
                )
                await self.storage.finish_firing(firing)

        await through_outages(
            record, doing=lambda: f"bus={self.bus_id} firing={firing.firing_id} will be recorded"
        )
        self.stats[firing.status] = self.stats.get(firing.status, 0) + 1
        self._count(firing)
        if (
            firing.status == "failed"
        ):  # a dead letter: once, with what an operator needs (DESIGN §6)
            log.warning(
                "bus=%s rule=%s event=%d firing=%d failed after %d attempts: %s",
                self.bus_id,
                firing.rule_id,
                firing.event_id,
                firing.firing_id,
                firing.attempts,
                firing.error,
                extra={
                    "bus": self.bus_id,
                    "rule_id": firing.rule_id,
                    "event_id": firing.event_id,
                    "firing_id": firing.firing_id,
                },
            )
        if self.on_finished is not None:
            self.on_finished(firing)

    def _count(self, firing: Firing) -> None:
        """Per-rule counters for /metrics; a deleted rule's go once there are too many."""
        key = (firing.rule_id, firing.status)
        self.firings_by_rule[key] = self.firings_by_rule.get(key, 0) + 1
        if firing.duration_ms is not None:
            histogram = self.firing_durations.get(firing.rule_id)
            if histogram is None:
                histogram = self.firing_durations[firing.rule_id] = Histogram(DURATION_BUCKETS_S)
            histogram.observe(firing.duration_ms / 1000)
        if len(self.firing_durations) > 2 * self.rules.max_rules:
            known = self.rules.holds
            self.firing_durations = {
                rule: h for rule, h in self.firing_durations.items() if known(rule)
            }
            self.firings_by_rule = {k: n for k, n in self.firings_by_rule.items() if known(k[0])}

    def _update_idle(self) -> None:
        busy = (
            self._matching
            or self._inbox
            or self._cursor < self._read_until
            or self._jobs
            or self._wake.is_set()
        )
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    async def list_firings(self, query: FiringQuery) -> list[Firing]:
        return await self.storage.list_firings(query)
