"""The tools `eventbus mcp` offers (DESIGN §12): each one bus method, called through the client.

Every input schema is generated from the pydantic model the bus validates that
method's params with (`eventbus_core.params`, `EmitParams`, `Rule`), so what an
agent is told and what the bus accepts are one definition. The bus validates
the arguments itself: a wrong one comes back as the bus's -32602 message.
`wait_for_event` is the adapter's own (a subscription opened and closed for
one event), so it validates its arguments here.

A result is the bus's result as `structuredContent` plus a one-line summary;
lists that would pass `max_reply_bytes` are cut to what fits, with the cursor
moved to match, like the bus's own pages. `consumer_fetch` has no cursor to
move: the messages it cannot pass on are handed back to the consumer at once
(nacked without delay), as the bus does with what passes its own reply budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel, Field

from eventbus_cli.output import format_ts
from eventbus_client import EventBusClient
from eventbus_core.codec import dumps
from eventbus_core.envelope import EmitParams
from eventbus_core.errors import EventBusError
from eventbus_core.params import (
    AckParams,
    FetchParams,
    ListFiringsParams,
    MethodParams,
    NackParams,
    PollParams,
    SubscribeParams,
    TestRuleParams,
)
from eventbus_core.rules import Rule

__all__ = ["MAX_WAIT_MS", "TOOLS", "Reply", "Tool", "WaitForEventParams", "fit"]

#: wait_for_event waits at most this long (DESIGN §12).
MAX_WAIT_MS = 300_000


class NoParams(MethodParams):
    pass


class WaitForEventParams(SubscribeParams):
    """Wait for the first event stored after `since` (or after now) that matches."""

    timeout_ms: int = Field(default=30_000, ge=0, le=MAX_WAIT_MS)


class RegisterRuleParams(Rule):
    replace: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    result: dict[str, Any]
    summary: str


#: A tool's work: the bus client, its arguments, and the reply size limit → its reply.
Run = Callable[[EventBusClient, dict[str, Any], int], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    params: type[BaseModel]
    run: Run
    #: It may wait (for an event, for a message): counted in the session's concurrent waits.
    waits: bool = False

    def input_schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()


def fit(
    result: dict[str, Any], key: str, cursor: str, cursor_of: str, max_bytes: int
) -> dict[str, Any]:
    """`result` with its list `key` cut to fit `max_bytes` (at least one item), `cursor` moved to match."""
    items = result.get(key)
    if not isinstance(items, list) or len(dumps(result)) <= max_bytes:
        return result
    kept = _fitting(items, max_bytes)
    last = kept[-1] if kept else None
    moved = last.get(cursor_of) if isinstance(last, dict) else None
    return {
        **result,
        key: kept,
        cursor: moved if moved is not None else result.get(cursor),
        "truncated": True,
    }


def _fitting(items: list[Any], max_bytes: int) -> list[Any]:
    """The first items whose JSON fits `max_bytes` (at least one)."""
    kept: list[Any] = []
    size = 200  # room for the rest of the result
    for item in items:
        size += len(dumps(item)) + 1
        if kept and size > max_bytes:
            break
        kept.append(item)
    return kept


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def emit_event(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = await client.call("emit_event", args)
    topic = args.get("topic")
    if "schedule_id" in result:  # deliver_at / delay_ms: stored, appended when due
        again = " (a pending duplicate: same idempotency_key)" if result.get("duplicate") else ""
        return Reply(
            result,
            f"scheduled {result['schedule_id']} on {topic} for {result['deliver_at']} (epoch ms){again}",
        )
    if result.get("duplicate"):
        return Reply(
            result,
            f"duplicate of event {result['event_id']} on {topic} (same idempotency_key); nothing stored",
        )
    return Reply(result, f"stored event {result['event_id']} on {topic}")


async def poll_events(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = fit(
        await client.call("poll_events", args), "events", "next_since", "event_id", max_bytes
    )
    cut = " (cut to fit the reply limit)" if result.get("truncated") else ""
    topic = args.get("topic", ">")
    return Reply(
        result,
        f"{_plural(len(result['events']), 'event')} on {topic}{cut}; next since {result['next_since']}",
    )


async def list_topics(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = fit(await client.call("list_topics", args), "topics", "cursor", "topic", max_bytes)
    result.pop("cursor", None)
    return Reply(
        result,
        _plural(len(result["topics"]), "topic")
        + (" (cut to fit the reply limit)" if result.get("truncated") else ""),
    )


async def wait_for_event(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    request = WaitForEventParams.model_validate(args)
    filters = {"source_trn": request.source_trn, "target_trn": request.target_trn}
    since = request.since
    if since is not None:
        # Already stored? Then no subscription is needed (and none replays a long history).
        query = {
            "topic": request.topic,
            "since": since,
            "limit": 1,
            **{k: v for k, v in filters.items() if v},
        }
        found = (await client.call("poll_events", query))["events"]
        if found:
            return _event_reply(found[0])
    subscription = await client.subscribe(request.topic, since=since, **filters)
    try:
        event = await subscription.next(timeout_s=request.timeout_ms / 1000)
    except TimeoutError:
        return Reply(
            {"timed_out": True}, f"no event on {request.topic} within {request.timeout_ms} ms"
        )
    finally:
        with contextlib.suppress(
            EventBusError
        ):  # the bus may be gone; the answer stands either way
            await subscription.unsubscribe()
    return _event_reply(event.model_dump(mode="json"))


def _event_reply(event: dict[str, Any]) -> Reply:
    return Reply(
        {"timed_out": False, "event": event}, f"event {event['event_id']} on {event['topic']}"
    )


async def list_rules(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = fit(await client.call("list_rules", args), "rules", "cursor", "id", max_bytes)
    result.pop("cursor", None)
    return Reply(
        result,
        _plural(len(result["rules"]), "rule")
        + (" (cut to fit the reply limit)" if result.get("truncated") else ""),
    )


async def register_rule(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = await client.call("register_rule", args)
    return Reply(
        result, f"rule {result['id']} {'registered' if result.get('created') else 'replaced'}"
    )


async def test_rule(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = await client.call("test_rule", args)
    if result.get("matched"):
        return Reply(result, "the rule matches the event")
    return Reply(
        result,
        f"the rule does not match: {_plural(len(result.get('failures') or []), 'condition')} failed",
    )


async def list_firings(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = fit(
        await client.call("list_firings", args), "firings", "next_since", "firing_id", max_bytes
    )
    counts: dict[str, int] = {}
    for firing in result["firings"]:
        counts[str(firing.get("status"))] = counts.get(str(firing.get("status")), 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    return Reply(
        result,
        f"{_plural(len(result['firings']), 'firing')} ({tally}); next since {result['next_since']}",
    )


async def consumer_fetch(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    call = asyncio.ensure_future(client.call("fetch", args))
    try:
        result = await asyncio.shield(call)
    except asyncio.CancelledError:
        # The agent gave up (notifications/cancelled) while the bus's fetch waits on:
        # what it leases after all goes back at once rather than when its lease runs out.
        call.add_done_callback(partial(_hand_back, client, str(args.get("consumer"))))
        raise
    consumer, messages = args["consumer"], result["messages"]
    cut = ""
    kept = _fitting(messages, max_bytes) if len(dumps(result)) > max_bytes else messages
    if len(kept) < len(messages):
        rest = [message["event"]["event_id"] for message in messages[len(kept) :]]
        await client.call(
            "nack", {"consumer": consumer, "event_ids": rest, "delay_ms": 0}
        )  # due again at once
        result, messages = {"messages": kept, "truncated": True}, kept
        cut = f" ({len(rest)} more handed back: past the reply limit)"
    if not messages:
        return Reply(
            result, f"no message for consumer {consumer} within {args.get('wait_ms', 0)} ms"
        )
    ids = [message["event"]["event_id"] for message in messages]
    shown = ", ".join(map(str, ids[:10])) + (", …" if len(ids) > 10 else "")
    until = format_ts(min(message["lease_until"] for message in messages))
    return Reply(
        result,
        f"leased {_plural(len(ids), 'message')} of consumer {consumer} (event id{'s' if len(ids) > 1 else ''} {shown}) "
        f"until {until}{cut}; consumer_ack each when done, consumer_nack to hand it back",
    )


#: Hand-backs under way (held so that they run to their end).
_handing_back: set[asyncio.Task[None]] = set()


def _hand_back(client: EventBusClient, consumer: str, call: asyncio.Future[Any]) -> None:
    if call.cancelled() or call.exception() is not None:
        return
    ids = [message["event"]["event_id"] for message in call.result()["messages"]]
    if ids:
        task = asyncio.ensure_future(_nack_at_once(client, consumer, ids))
        _handing_back.add(task)
        task.add_done_callback(_handing_back.discard)


async def _nack_at_once(client: EventBusClient, consumer: str, event_ids: list[int]) -> None:
    with contextlib.suppress(EventBusError):  # the bus may be gone: then the leases run out there
        await client.call("nack", {"consumer": consumer, "event_ids": event_ids, "delay_ms": 0})


async def consumer_ack(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = await client.call("ack", args)
    return Reply(result, _settled("acked", result["count"], args) + ": never delivered again")


async def consumer_nack(client: EventBusClient, args: dict[str, Any], max_bytes: int) -> Reply:
    result = await client.call("nack", args)
    delay_ms = args.get("delay_ms")
    when = (
        f"due again in {delay_ms} ms"
        if delay_ms is not None
        else "due again after the consumer's backoff"
    )
    return Reply(result, _settled("nacked", result["count"], args) + f": {when}")


def _settled(done: str, count: int, args: dict[str, Any]) -> str:
    """`acked 2 of 3 events of consumer jobs (the others were not leased: …)`."""
    asked = len(args["event_ids"])
    summary = f"{done} {count} of {_plural(asked, 'event')} of consumer {args['consumer']}"
    if count < asked:
        summary += " (the others were not leased: acked already, or their lease ran out)"
    return summary


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "emit_event",
            "Emit one event on the bus; answers once it is stored ({event_id, timestamp, duplicate}).",
            EmitParams,
            emit_event,
        ),
        Tool(
            "poll_events",
            "Stored events after the cursor `since` (an event_id), oldest first; filter by topic pattern, TRN patterns, correlation id, time.",
            PollParams,
            poll_events,
        ),
        Tool(
            "list_topics", "Every topic with its event count and last event.", NoParams, list_topics
        ),
        Tool(
            "wait_for_event",
            "Wait for the first event matching `topic` (and the TRN filters) stored after `since` (default: after now), "
            f"up to timeout_ms (at most {MAX_WAIT_MS}); answers {{event}} or {{timed_out: true}}. Use it instead of polling.",
            WaitForEventParams,
            wait_for_event,
            waits=True,
        ),
        Tool(
            "list_rules",
            "Every rule with its counters (fired, failed, last_fired_at).",
            NoParams,
            list_rules,
        ),
        Tool(
            "register_rule",
            "Register a rule: when an event matches its topic, match_fields and pattern, the bus invokes a tool (by TRN) "
            "or emits an event. replace: true replaces a rule with the same id.",
            RegisterRuleParams,
            register_rule,
        ),
        Tool(
            "test_rule",
            "Dry-run a rule (or a registered rule_id) against an event: whether it matches, which conditions failed, the rendered action.",
            TestRuleParams,
            test_rule,
        ),
        Tool(
            "list_firings",
            "Rule firings (status pending/ok/failed/skipped, attempts, result or error) after the cursor `since` (a firing_id).",
            ListFiringsParams,
            list_firings,
        ),
        Tool(
            "consumer_fetch",
            "Take work from a durable consumer (a named queue over the bus's events that a pool of workers shares): "
            "lease up to `max` events, waiting up to wait_ms (at most 60000) for one. Each message {event, deliveries, "
            "lease_until} is yours alone until lease_until: consumer_ack it when done, consumer_nack it to hand it back; "
            "one neither acked nor nacked is delivered again when its lease runs out.",
            FetchParams,
            consumer_fetch,
            waits=True,
        ),
        Tool(
            "consumer_ack",
            "Done with these leased events (by event_id) of the consumer: they are never delivered again. "
            "Answers {count}: how many were leased and are now acked.",
            AckParams,
            consumer_ack,
        ),
        Tool(
            "consumer_nack",
            "Not done: hand these leased events (by event_id) back to the consumer, due again after delay_ms "
            "(without it, the consumer's backoff). Answers {count}: how many were leased and are now handed back.",
            NackParams,
            consumer_nack,
        ),
    )
}
