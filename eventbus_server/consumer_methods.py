"""The JSON-RPC methods of durable consumers (DESIGN.md §10), part of rpc's table.

Each checks its params with its model in `eventbus_core.params` and calls a
bus verb. A fetch is bounded like a poll: its messages fit the reply budget
of the call, and its events are read one page at a time per connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventbus_core.errors import InvalidParams
from eventbus_core.params import (
    AckParams,
    ConsumerNameParams,
    CreateConsumerParams,
    DeadLettersParams,
    FetchParams,
    NackParams,
    NoParams,
    RedriveParams,
    StartAfter,
    TermParams,
)
from eventbus_server.consumers import Start
from eventbus_server.storage.consumers import ConsumerConfig

if TYPE_CHECKING:
    from eventbus_server.rpc import CallContext, Handler

__all__ = ["CONSUMER_METHODS"]


async def create_consumer(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = CreateConsumerParams.model_validate(params)
    config = ConsumerConfig(
        topic=request.topic,
        source_trn=request.source_trn,
        target_trn=request.target_trn,
        pattern=request.pattern,
        ack_wait_ms=request.ack_wait_ms,
        max_deliver=request.max_deliver,
        backoff_ms=tuple(request.backoff_ms),
        max_ack_pending=request.max_ack_pending,
    )
    start: Start
    if isinstance(request.start, str):
        start = request.start
    elif isinstance(request.start, StartAfter):
        start = ("after_id", request.start.after_id)
    else:
        start = ("from_ts", request.start.from_ts)
    created = await ctx.bus.create_consumer(request.name, config, start, replace=request.replace)
    return {"name": request.name, "created": created}


async def list_consumers(ctx: CallContext, params: dict[str, Any]) -> Any:
    NoParams.model_validate(params)
    return {"consumers": await ctx.bus.list_consumers()}


async def get_consumer(ctx: CallContext, params: dict[str, Any]) -> Any:
    return await ctx.bus.get_consumer(ConsumerNameParams.model_validate(params).name)


async def delete_consumer(ctx: CallContext, params: dict[str, Any]) -> Any:
    await ctx.bus.delete_consumer(ConsumerNameParams.model_validate(params).name)
    return {"ok": True}


async def fetch(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = FetchParams.model_validate(params)
    ctx.budget.check("fetch")
    messages = await ctx.bus.fetch(
        request.consumer,
        max_messages=request.max,
        wait_ms=request.wait_ms,
        max_bytes=ctx.budget.left,
        hold=ctx.subscriber.heavy_read,
        abandoned=ctx.subscriber.input_closed,
    )
    page = ctx.budget.page(message.wire() for message in messages)
    if len(page) < len(messages):
        # What does not fit this reply goes back at once, not after its lease.
        rest = [m.event.event_id for m in messages[len(page) :]]
        await ctx.bus.settle(request.consumer, rest, "nack", delay_ms=0)
    return {"messages": page}


async def ack(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = AckParams.model_validate(params)
    return {"count": await ctx.bus.settle(request.consumer, request.event_ids, "ack")}


async def nack(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = NackParams.model_validate(params)
    return {
        "count": await ctx.bus.settle(
            request.consumer, request.event_ids, "nack", delay_ms=request.delay_ms
        )
    }


async def extend(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = AckParams.model_validate(params)
    return {"count": await ctx.bus.settle(request.consumer, request.event_ids, "extend")}


async def term(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = TermParams.model_validate(params)
    return {
        "count": await ctx.bus.settle(
            request.consumer, request.event_ids, "term", reason=request.reason
        )
    }


async def list_dead_letters(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = DeadLettersParams.model_validate(params)
    async with ctx.subscriber.heavy_read():
        ctx.budget.check("list_dead_letters")
        dead = await ctx.bus.dead_letters(
            request.consumer, after_id=request.after_id, limit=request.limit
        )
        page = ctx.budget.page(dead)
    next_after = dead[len(page) - 1]["event_id"] if page else request.after_id
    return {"dead": page, "next_after_id": next_after}


async def redrive(ctx: CallContext, params: dict[str, Any]) -> Any:
    request = RedriveParams.model_validate(params)
    if request.event_ids is not None and not request.event_ids:
        raise InvalidParams(
            "invalid params for redrive: event_ids: give some ids, or leave it out for all"
        )
    return {"redriven": await ctx.bus.redrive(request.consumer, request.event_ids)}


CONSUMER_METHODS: dict[str, Handler] = {
    "create_consumer": create_consumer,
    "list_consumers": list_consumers,
    "get_consumer": get_consumer,
    "delete_consumer": delete_consumer,
    "fetch": fetch,
    "ack": ack,
    "nack": nack,
    "extend": extend,
    "term": term,
    "list_dead_letters": list_dead_letters,
    "redrive": redrive,
}
