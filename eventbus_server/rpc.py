"""The JSON-RPC method table of a bus, and the one place errors become replies.

Every method takes its params by name; each has a pydantic model that rejects
unknown keys, so a typo is an error that says where, not a silently ignored
option. `dispatch` runs one call and returns its reply (None for a
notification): `EventBusError` → its code, `ValidationError` → -32602 with
`data: [{loc, msg}]`, anything else → -32603, logged with its traceback.

The emits are the exception to "each has a pydantic model" on the way in: a
valid immediate emit goes straight to its storage rows (`emit_rows`), and
only what that path does not take (errors, delayed emits) meets the model,
which words every refusal as before.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from eventbus_core.codec import compact, dumps
from eventbus_core.emit_rows import new_event, new_events, row_of
from eventbus_core.envelope import EmitParams
from eventbus_core.errors import (
    EventBusError,
    InternalError,
    InvalidParams,
    MethodNotFound,
    Overloaded,
    ReservedTopic,
    Unauthorized,
)
from eventbus_core.event import now_ms
from eventbus_core.jsonrpc import Call, error_reply, result_reply
from eventbus_core.locations import invalid_params
from eventbus_core.params import (
    AuthenticateParams,
    CancelScheduledParams,
    CreateScheduleParams,
    EmitEventsParams,
    ListFiringsParams,
    ListScheduledParams,
    ListSchedulesParams,
    NoParams,
    PollParams,
    ReplayParams,
    RetryFiringsParams,
    RuleIdParams,
    ScheduleIdParams,
    SetRuleEnabledParams,
    SetScheduleEnabledParams,
    SubscribeFiringsParams,
    SubscribeParams,
    TestRuleParams,
    UnsubscribeParams,
)
from eventbus_core.results import ScheduledResult
from eventbus_core.topics import is_reserved_topic
from eventbus_server.bus import Bus
from eventbus_server.consumer_methods import CONSUMER_METHODS
from eventbus_server.fanout import Subscriber
from eventbus_server.replay import ReplayRequest
from eventbus_server.storage.base import EventQuery, FiringQuery, FiringSelection, NewEvent
from eventbus_server.writer import Committed, Outcome

__all__ = [
    "LATER",
    "METHODS",
    "CallContext",
    "Caller",
    "Commit",
    "Later",
    "ReplyBudget",
    "dispatch",
    "start",
]

log = logging.getLogger("eventbus.rpc")


class Caller(Subscriber, Protocol):
    """The connection a call came in on."""

    authenticated: bool
    wrong_tokens: int
    auth_lock: asyncio.Lock
    #: Set once the client sends no more (half-close or gone): a call that would wait
    #: for something to happen (a fetch) answers with what it has instead.
    input_closed: asyncio.Event

    def close_after_reply(self) -> None: ...

    def heavy_read(self) -> AbstractAsyncContextManager[None]:
        """Held around a read whose reply may be large: one at a time per
        connection, and only once its unsent output is below max_output_bytes."""
        ...


class ReplyBudget:
    """Bytes the pages of one reply may still take; a batch's calls share one.

    A page (poll_events, list_firings) stops before it would pass the budget,
    with at least one item; once a batch has spent it, further pages in that
    batch are refused with -32005 rather than grow one reply without bound.
    `on_spend` is told the first time a budget is spent: the connection counts
    pages encoded but not yet written as output it holds.
    """

    __slots__ = ("left", "on_spend", "total")

    def __init__(self, total: int, on_spend: Callable[[ReplyBudget], None] | None = None) -> None:
        self.total = self.left = total
        self.on_spend = on_spend

    @property
    def spent(self) -> int:
        return self.total - self.left

    def check(self, method: str) -> None:
        if self.left <= 0:
            raise Overloaded(
                f"{method}: this batch's replies already hold {self.total} bytes (a quarter of max_output_bytes);"
                " ask for the rest in another request"
            )

    def page(self, items: Iterable[Any]) -> list[orjson.Fragment]:
        """Encode items until the next would pass the budget (at least one); spend it."""
        page: list[orjson.Fragment] = []
        for item in items:
            data = dumps(item)
            if page and len(data) > self.left:
                break
            # The page's items live until the reply is encoded: each in a buffer of its own size.
            page.append(orjson.Fragment(compact(data)))
            self.left -= len(data)
        if page and self.on_spend is not None:
            self.on_spend(self)
        return page

    def whole(self, items: Iterable[Any]) -> list[orjson.Fragment]:
        """Encode every item, spending what they take (past the budget if it must):
        for a reply that has no cursor to page by (list_rules, list_topics)."""
        encoded: list[orjson.Fragment] = []
        for item in items:
            data = compact(dumps(item))
            encoded.append(orjson.Fragment(data))
            self.left -= len(data)
        if encoded and self.on_spend is not None:
            self.on_spend(self)
        return encoded


@dataclass(frozen=True, slots=True)
class Commit:
    """An emit's result, which arrives once its rows are committed: what to queue, and
    how to shape the `Committed` into the result."""

    rows: list[NewEvent]
    batch: bool
    shape: Callable[[Committed], Any]


class Later(enum.Enum):
    """`start`'s answer for a call that replies later through `CallContext.answer`."""

    LATER = "later"


LATER = Later.LATER


@dataclass(slots=True)
class CallContext:
    """What one call sees: the bus, the caller's connection, and its reply budget."""

    bus: Bus
    subscriber: Caller
    budget: ReplyBudget
    #: Bytes of the request line this call came in (its share of a batch's line):
    #: what an emit weighs in the bus's queue (max_queue_bytes).
    size: int = 0
    #: Run after the reply is written (a subscription starts delivering only then).
    after_reply: list[Callable[[], None]] = field(default_factory=list)
    #: Given, an emit answers by calling it with the reply once committed (`start`
    #: returns LATER) rather than through a future: one call, no future, per emit.
    answer: Callable[[CallContext, Reply], None] | None = None
    #: The only request its connection has to start now: an emit may be committed (and
    #: answered) at once, inside `start`, if the bus's writer is idle (writer.py).
    alone: bool = False


def _params(model: type[BaseModel], params: dict[str, Any]) -> Any:
    return model.model_validate(params)


def emit_event(ctx: CallContext, params: dict[str, Any]) -> Any:
    now = now_ms()
    row = new_event(params, now)
    if row is None:  # refused, delayed, or unusual: the model decides, and words any error
        event = EmitParams.model_validate(params)
        if event.delayed:
            return _scheduled(
                ctx.bus.schedule([event]), lambda results: _scheduled_result(results[0])
            )
        row = row_of(event, now)
    return Commit([row], False, _emit_event_result)


async def _scheduled(
    stored: Awaitable[list[ScheduledResult]], shape: Callable[[list[ScheduledResult]], Any]
) -> Any:
    return shape(await stored)


def _scheduled_result(result: ScheduledResult) -> dict[str, Any]:
    """A delayed emit's answer: where its event waits, not an event id (DESIGN §11)."""
    return {
        "schedule_id": result.schedule_id,
        "deliver_at": result.deliver_at,
        "duplicate": result.duplicate,
    }


def _emit_event_result(committed: Committed) -> dict[str, Any]:
    first = committed.first()
    return {"event_id": first.event_id, "timestamp": first.timestamp, "duplicate": first.duplicate}


def emit_events(ctx: CallContext, params: dict[str, Any]) -> Any:
    now = now_ms()
    rows = new_events(params, now)
    if rows is None:  # as in emit_event: the model decides
        request = _params(EmitEventsParams, params)
        if any(event.delayed for event in request.events):
            return _schedule_events(ctx, request)
        rows = [row_of(event, now) for event in request.events]
    if not rows:
        return {"event_ids": []}
    return Commit(rows, True, _event_ids)


def _event_ids(committed: Committed) -> dict[str, Any]:
    return {"event_ids": committed.event_ids()}


def _schedule_events(ctx: CallContext, request: EmitEventsParams) -> Any:
    delayed = [event.delayed for event in request.events]
    if not all(delayed):
        # All or nothing means one transaction: in the log now, or in the schedule.
        at = delayed.index(not delayed[0])
        msg = "a batch is delayed as a whole or not at all: every event needs deliver_at or delay_ms, or none does"
        raise InvalidParams(
            f"invalid params for emit_events: events[{at}]: {msg}",
            [{"loc": f"events.{at}", "msg": msg}],
        )
    return _scheduled(
        ctx.bus.schedule(request.events, batch=True),
        lambda results: {"scheduled": [_scheduled_result(r) for r in results]},
    )


async def poll_events(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(PollParams, params)
    async with ctx.subscriber.heavy_read():
        ctx.budget.check("poll_events")
        events = await ctx.bus.poll(EventQuery(**request.model_dump(), max_bytes=ctx.budget.left))
        page = ctx.budget.page(events)  # still holding the read: one page in memory per connection
    next_since = events[len(page) - 1].event_id if page else request.since
    return {"events": page, "next_since": next_since}


async def list_topics(ctx: CallContext, params: dict[str, Any]) -> Any:
    _params(NoParams, params)
    # Not paged (it has no cursor), but read like a page: one at a time per connection,
    # once its output has room, so pipelined calls never hold a copy each.
    async with ctx.subscriber.heavy_read():
        ctx.budget.check("list_topics")
        return {"topics": ctx.budget.whole(await ctx.bus.list_topics())}


def subscribe_topic(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(SubscribeParams, params)
    query = EventQuery(
        topic=request.topic,
        since=request.since or 0,
        source_trn=request.source_trn,
        target_trn=request.target_trn,
    )
    sub = ctx.bus.subscribe(query, ctx.subscriber, replay=request.since is not None)
    ctx.after_reply.append(sub.start)
    return {"subscription": sub.id, "last_event_id": ctx.bus.last_event_id}


def unsubscribe(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(UnsubscribeParams, params)
    ctx.bus.unsubscribe(request.subscription, ctx.subscriber)
    return {"ok": True}


# -- rules -------------------------------------------------------------------------


async def register_rule(ctx: CallContext, params: dict[str, Any]) -> Any:
    body = dict(params)
    replace = body.pop("replace", False)
    if not isinstance(replace, bool):
        raise InvalidParams(
            "invalid params for register_rule: replace must be true or false",
            [{"loc": "replace", "msg": "must be a boolean"}],
        )
    created = await ctx.bus.register_rule(body, replace=replace)
    return {"id": body["id"], "created": created}


async def list_rules(ctx: CallContext, params: dict[str, Any]) -> Any:
    _params(NoParams, params)
    async with ctx.subscriber.heavy_read():  # as list_topics: 200 unread calls held 2.5 GB
        ctx.budget.check("list_rules")
        return {"rules": ctx.budget.whole(stored.wire() for stored in await ctx.bus.list_rules())}


async def get_rule(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(RuleIdParams, params)
    return (await ctx.bus.get_rule(request.id)).wire()


async def delete_rule(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(RuleIdParams, params)
    await ctx.bus.delete_rule(request.id)
    return {"ok": True}


async def set_rule_enabled(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(SetRuleEnabledParams, params)
    return (await ctx.bus.set_rule_enabled(request.id, request.enabled)).wire()


async def test_rule(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(TestRuleParams, params)
    if (request.rule is None) == (request.rule_id is None):
        raise InvalidParams(
            "invalid params for test_rule: give either rule (a rule object) or rule_id",
            [{"loc": "rule", "msg": "give rule or rule_id"}],
        )
    return await ctx.bus.test_rule(request.event, rule=request.rule, rule_id=request.rule_id)


async def list_firings(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(ListFiringsParams, params)
    async with ctx.subscriber.heavy_read():
        ctx.budget.check("list_firings")
        firings = await ctx.bus.list_firings(FiringQuery(**request.model_dump()))
        page = ctx.budget.page(f.wire() for f in firings)
    next_since = firings[len(page) - 1].firing_id if page else request.since
    return {"firings": page, "next_since": next_since}


async def retry_firings(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Dead-letter redrive: at most 10,000 firings a call (call again while `retried` is 10,000)."""
    request = _params(RetryFiringsParams, params)
    ids = tuple(request.firing_ids) if request.firing_ids is not None else None
    selection = FiringSelection(firing_ids=ids, rule_id=request.rule_id, status=request.status)
    return {"retried": await ctx.bus.retry_firings(selection)}


def subscribe_firings(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(SubscribeFiringsParams, params)
    sub = ctx.bus.subscribe_firings(request.rule_id, ctx.subscriber)
    ctx.after_reply.append(sub.start)
    return {"subscription": sub.id}


async def replay_events(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Server-side replay (replay.py): at most `limit` events a call, for about
    CALL_BUDGET_S; call again from `last_replayed_id` with the same `until_id` until `done`."""
    request = _params(ReplayParams, params)
    if request.until_ts < request.since_ts:
        msg = f"must not be before since_ts ({request.until_ts} < {request.since_ts})"
        raise InvalidParams(
            f"invalid params for replay_events: until_ts: {msg}", [{"loc": "until_ts", "msg": msg}]
        )
    if request.to_topic is not None and is_reserved_topic(request.to_topic):
        raise ReservedTopic(
            f"to_topic {request.to_topic!r} is reserved: the _sys. prefix belongs to the bus"
        )
    # One heavy call at a time per connection: each holds a page of events and its copies.
    async with ctx.subscriber.heavy_read():
        result = await ctx.bus.replay(ReplayRequest(**request.model_dump()))
    return result.wire()


# -- scheduled events and schedules (DESIGN §11) -----------------------------------


async def cancel_scheduled(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(CancelScheduledParams, params)
    await ctx.bus.cancel_scheduled(request.schedule_id)
    return {"ok": True}


async def list_scheduled(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Pending delayed events, due first: at most `limit` (≤ 1,000) and the reply budget;
    `next` is the `after` of the next page (null: no more)."""
    request = _params(ListScheduledParams, params)
    after = None if request.after is None else (request.after.deliver_at, request.after.schedule_id)
    async with ctx.subscriber.heavy_read():
        ctx.budget.check("list_scheduled")
        items = await ctx.bus.list_scheduled(
            after=after, limit=request.limit, max_bytes=ctx.budget.left
        )
        page = ctx.budget.page(item.wire() for item in items)
    last = items[len(page) - 1] if page else None
    more = last is not None and (len(page) < len(items) or len(items) == request.limit)
    cursor = (
        {"deliver_at": last.deliver_at, "schedule_id": last.schedule_id}
        if more and last is not None
        else None
    )
    return {"scheduled": page, "next": cursor}


async def create_schedule(ctx: CallContext, params: dict[str, Any]) -> Any:
    return await ctx.bus.create_schedule(_params(CreateScheduleParams, params))


async def list_schedules(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Schedules in id order, at most `limit` and the reply budget; call again with
    `after_id` = `next_after_id` while it is not null."""
    request = _params(ListSchedulesParams, params)
    async with ctx.subscriber.heavy_read():
        ctx.budget.check("list_schedules")
        schedules = await ctx.bus.list_schedules(after_id=request.after_id, limit=request.limit)
        page = ctx.budget.page(s.wire() for s in schedules)
    more = len(page) < len(schedules) or len(schedules) == request.limit
    return {
        "schedules": page,
        "next_after_id": schedules[len(page) - 1].id if page and more else None,
    }


async def get_schedule(ctx: CallContext, params: dict[str, Any]) -> Any:
    return (await ctx.bus.get_schedule(_params(ScheduleIdParams, params).id)).wire()


async def delete_schedule(ctx: CallContext, params: dict[str, Any]) -> Any:
    await ctx.bus.delete_schedule(_params(ScheduleIdParams, params).id)
    return {"ok": True}


async def set_schedule_enabled(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(SetScheduleEnabledParams, params)
    return (await ctx.bus.set_schedule_enabled(request.id, request.enabled)).wire()


def bus_info(ctx: CallContext, params: dict[str, Any]) -> Any:
    _params(NoParams, params)
    return ctx.bus.info()


def ping(ctx: CallContext, params: dict[str, Any]) -> Any:
    _params(NoParams, params)
    return "pong"


#: A wrong token is answered this late, and the last one allowed ends the connection:
#: at most MAX_WRONG_TOKENS guesses per connection, one per WRONG_TOKEN_DELAY_S.
WRONG_TOKEN_DELAY_S = 0.1
MAX_WRONG_TOKENS = 5


async def authenticate(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = _params(AuthenticateParams, params)
    expected = ctx.bus.config.auth_token
    caller = ctx.subscriber
    if expected is None:
        caller.authenticated = True
        return {"ok": True}
    async with caller.auth_lock:  # pipelined guesses wait their turn, each delayed
        if hmac.compare_digest(request.token.encode(), expected.get_secret_value().encode()):
            caller.authenticated = True
            return {"ok": True}
        await asyncio.sleep(WRONG_TOKEN_DELAY_S)
        caller.wrong_tokens += 1
        left = MAX_WRONG_TOKENS - caller.wrong_tokens
        if left > 0:
            raise Unauthorized(
                f"wrong token for bus {ctx.bus.id!r} ({left} more {'try' if left == 1 else 'tries'} on this connection)"
            )
        ctx.bus.note("closed_wrong_tokens")
        ctx.after_reply.append(caller.close_after_reply)
        raise Unauthorized(
            f"wrong token for bus {ctx.bus.id!r}: {MAX_WRONG_TOKENS} wrong tokens, closing the connection"
        )


#: A handler returns its result, a coroutine (run as a task), or a Commit (an emit).
Handler = Callable[[CallContext, dict[str, Any]], Any]

METHODS: dict[str, Handler] = {
    "emit_event": emit_event,
    "emit_events": emit_events,
    "poll_events": poll_events,
    "list_topics": list_topics,
    "subscribe_topic": subscribe_topic,
    "unsubscribe": unsubscribe,
    "register_rule": register_rule,
    "list_rules": list_rules,
    "get_rule": get_rule,
    "delete_rule": delete_rule,
    "set_rule_enabled": set_rule_enabled,
    "test_rule": test_rule,
    "list_firings": list_firings,
    "retry_firings": retry_firings,
    "subscribe_firings": subscribe_firings,
    "replay_events": replay_events,
    **CONSUMER_METHODS,
    "cancel_scheduled": cancel_scheduled,
    "list_scheduled": list_scheduled,
    "create_schedule": create_schedule,
    "list_schedules": list_schedules,
    "get_schedule": get_schedule,
    "delete_schedule": delete_schedule,
    "set_schedule_enabled": set_schedule_enabled,
    "bus_info": bus_info,
    "ping": ping,
    "authenticate": authenticate,
}

#: Methods a connection may call before it has authenticated.
OPEN_METHODS = frozenset({"authenticate", "ping"})


Reply = dict[str, Any] | None


def start(ctx: CallContext, call: Call) -> Reply | asyncio.Future[Reply] | Later:
    """Begin one call: its reply now, or a future of it (None for a notification), or
    LATER when `ctx.answer` will be called with it.

    Most methods answer at once, and an emit answers from the writer's commit
    (a `Commit`); only methods that await storage cost a task.
    """
    try:
        handler = METHODS.get(call.method)
        if handler is None:
            raise MethodNotFound(f"method {call.method!r} not found")
        if not ctx.subscriber.authenticated and call.method not in OPEN_METHODS:
            raise Unauthorized(f"bus {ctx.bus.id!r} requires a token: call authenticate first")
        params = call.params if call.params is not None else {}
        if not isinstance(params, dict):
            raise InvalidParams(
                f"invalid params for {call.method}: params must be an object (by name), not an array"
            )
        result = handler(ctx, params)
        if isinstance(result, Commit):
            return _commit(ctx, call, result)
    except Exception as exc:
        return _reply(ctx, call, error=exc)
    if inspect.iscoroutine(result):
        task = asyncio.get_running_loop().create_task(_awaited(ctx, call, result))
        task.add_done_callback(functools.partial(_close_if_cancelled, result))
        return task
    return _reply(ctx, call, result=result)


async def dispatch(ctx: CallContext, call: Call) -> Reply:
    """Run one call to completion; its reply, or None for a notification."""
    ctx.answer = None  # so an emit's reply comes in a future, awaited here (never LATER)
    outcome = start(ctx, call)
    assert outcome is not LATER
    return await outcome if isinstance(outcome, asyncio.Future) else outcome


def _close_if_cancelled(coro: Coroutine[Any, Any, Any], task: asyncio.Future[Reply]) -> None:
    # Cancelled before it ran (its connection went at once), the task never started the
    # handler's coroutine: close it, or it is reported as "never awaited" when collected.
    if task.cancelled():
        coro.close()


async def _awaited(ctx: CallContext, call: Call, coro: Awaitable[Any]) -> Reply:
    try:
        result = await coro
    except Exception as exc:
        return _reply(ctx, call, error=exc)
    return _reply(ctx, call, result=result)


def _commit(ctx: CallContext, call: Call, commit: Commit) -> asyncio.Future[Reply] | Later:
    """Queue an emit's rows; its reply goes to `ctx.answer` (LATER) or into a future."""
    answer = ctx.answer
    if answer is None:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def settle(outcome: Outcome) -> None:
            if not future.done():  # the caller may have gone (cancelled)
                future.set_result(_committed_reply(ctx, call, commit.shape, outcome))

        ctx.bus.submit_rows(
            commit.rows, batch=commit.batch, size=ctx.size, done=settle, at_once=ctx.alone
        )
        return future

    def reply(outcome: Outcome) -> None:
        answer(ctx, _committed_reply(ctx, call, commit.shape, outcome))

    ctx.bus.submit_rows(
        commit.rows, batch=commit.batch, size=ctx.size, done=reply, at_once=ctx.alone
    )
    return LATER


def _committed_reply(
    ctx: CallContext, call: Call, shape: Callable[[Committed], Any], outcome: Outcome
) -> Reply:
    if not isinstance(outcome, Committed):
        return _reply(ctx, call, error=outcome)
    try:
        result = shape(outcome)
    except Exception as exc:
        return _reply(ctx, call, error=exc)
    return _reply(ctx, call, result=result)


def _reply(
    ctx: CallContext, call: Call, *, result: Any = None, error: BaseException | None = None
) -> Reply:
    """The one place an outcome becomes a JSON-RPC reply."""
    if error is None:
        reply = result_reply(call.id, result)
    elif isinstance(error, EventBusError):
        reply = error_reply(call.id, error)
    elif isinstance(error, ValidationError):
        reply = error_reply(call.id, invalid_params(call.method, error))
    else:
        log.error("bus=%s method=%s failed", ctx.bus.id, call.method, exc_info=error)
        reply = error_reply(
            call.id, InternalError(f"internal error in {call.method}; see the server log")
        )
    return None if call.is_notification else reply
