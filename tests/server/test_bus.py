"""`Bus` (eventbus_server/bus.py) through its own verbs, in process.

The bus is the one door of connections, rules and sibling buses; here it is
called directly, as `connection` and `rpc` call it, over real storage
(memory, and a SQLite file), with a `RecordingSubscriber` (tests/subscriber.py)
as the connection. What it answers over the wire is in test_emit_poll.py and
test_subscribe.py; here: its connection slots, its refusals (which error,
naming which event), `wait_idle` and the `bus_info` stats.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.envelope import EmitParams
from eventbus_core.errors import (
    NotFound,
    Overloaded,
    ReservedTopic,
    RulesDisabled,
    SourceNotAllowed,
)
from eventbus_server.bus import Bus
from eventbus_server.storage.base import EventQuery, FiringQuery, FiringSelection
from tests.in_process import running_bus
from tests.subscriber import RecordingSubscriber


def emit(topic: str, payload: Any = None, **fields: Any) -> EmitParams:
    return EmitParams(topic=topic, payload=payload, **fields)


async def test_admit_release_and_disconnected_keep_max_connections_and_the_connections_stat(
    tmp_path: Path,
) -> None:
    async with running_bus(tmp_path, max_connections=2) as bus:
        a, b, c = RecordingSubscriber(), RecordingSubscriber(), RecordingSubscriber()
        assert bus.admit(a) and bus.admit(b)
        assert not bus.admit(c)  # over max_connections: refused, and counted
        bus.release(c)  # what a refused connection does as it goes: no slot of anyone's is freed
        stats = bus.info()["stats"]
        assert (stats["connections"], stats["refused_connections"]) == (2, 1)
        assert set(bus.connections()) == {a, b}

        bus.subscribe(EventQuery(), b, replay=False)
        bus.disconnected(b)  # gone: its slot is free and its subscriptions end
        stats = bus.info()["stats"]
        assert (stats["connections"], stats["subscriptions"]) == (1, 0)
        assert bus.admit(c)
        bus.release(a)
        assert list(bus.connections()) == [c]
        assert bus.info()["stats"]["connections"] == 1


RULE_VERBS: dict[str, Callable[[Bus], Any]] = {
    "register_rule": lambda bus: bus.register_rule(
        {"id": "r", "topic": "t", "action": {"type": "EmitEvent", "topic": "u"}}, replace=False
    ),
    "list_rules": lambda bus: bus.list_rules(),
    "get_rule": lambda bus: bus.get_rule("r"),
    "delete_rule": lambda bus: bus.delete_rule("r"),
    "set_rule_enabled": lambda bus: bus.set_rule_enabled("r", False),
    "test_rule": lambda bus: bus.test_rule({"topic": "t"}, rule_id="r"),
    "list_firings": lambda bus: bus.list_firings(FiringQuery()),
    "retry_firings": lambda bus: bus.retry_firings(FiringSelection()),
    "subscribe_firings": lambda bus: bus.subscribe_firings(None, RecordingSubscriber()),
}


@pytest.mark.parametrize("verb", list(RULE_VERBS))
async def test_rule_verbs_answer_32003_on_a_bus_without_rules(tmp_path: Path, verb: str) -> None:
    async with running_bus(tmp_path) as bus:
        with pytest.raises(
            RulesDisabled,
            match="rules are disabled on bus 'b' \\(its config has enable_rules: false\\)",
        ) as refused:
            call = RULE_VERBS[verb](bus)
            if hasattr(call, "__await__"):
                await call
        assert refused.value.code == -32003
        assert bus.info()["stats"]["subscriptions"] == 0  # subscribe_firings registered nothing


async def test_unsubscribe_of_a_subscription_the_connection_does_not_hold_is_32002(
    tmp_path: Path,
) -> None:
    async with running_bus(tmp_path) as bus:
        owner, stranger = RecordingSubscriber(), RecordingSubscriber()
        sub = bus.subscribe(EventQuery(), owner, replay=False)
        with pytest.raises(
            NotFound, match=f"no subscription '{sub.id}' on this connection"
        ) as refused:
            bus.unsubscribe(sub.id, stranger)
        assert refused.value.code == -32002
        with pytest.raises(NotFound):
            bus.unsubscribe("sub-999", owner)
        assert bus.info()["stats"]["subscriptions"] == 1  # the stranger's attempt changed nothing

        bus.unsubscribe(sub.id, owner)
        assert bus.info()["stats"]["subscriptions"] == 0
        with pytest.raises(NotFound):
            bus.unsubscribe(sub.id, owner)  # once


async def test_submit_refuses_reserved_topics_and_sources_outside_the_allow_list_at_once(
    tmp_path: Path,
) -> None:
    async with running_bus(tmp_path, allowed_sources=["trn:user:", "trn:org:acme:*"]) as bus:
        alice = "trn:user:alice:cli:v1"
        # Raised by submit() itself, before anything is queued; a batch names the event at fault.
        with pytest.raises(ReservedTopic, match=r"^topic '_sys\.x' is reserved") as reserved:
            bus.submit([emit("_sys.x", source_trn=alice)])
        assert reserved.value.code == -32009
        with pytest.raises(ReservedTopic, match=r"^events\[2\]: topic '_sys\.y' is reserved"):
            bus.submit(
                [
                    emit("a", source_trn=alice),
                    emit("b", source_trn=alice),
                    emit("_sys.y", source_trn=alice),
                ],
                batch=True,
            )
        with pytest.raises(
            SourceNotAllowed,
            match=r"^source_trn is required on bus 'b' \(allowed: trn:user:, trn:org:acme:\*\)",
        ) as refused:
            bus.submit([emit("a")])
        assert refused.value.code == -32001
        with pytest.raises(
            SourceNotAllowed,
            match=r"^events\[1\]: source_trn 'trn:org:other:x' is not allowed on bus 'b'",
        ):
            bus.submit(
                [
                    emit("a", source_trn="trn:org:acme:tool:x"),
                    emit("a", source_trn="trn:org:other:x"),
                ],
                batch=True,
            )
        assert bus.info()["stats"]["queue_depth"] == 0

        # A rule's emit (trusted) skips the allow-list, never the reservation.
        with pytest.raises(ReservedTopic):
            bus.submit([emit("_sys.z")], trusted=True)
        (made_by_a_rule,) = await bus.submit([emit("a")], trusted=True)
        allowed = await bus.emit(emit("a", source_trn="trn:org:acme:tool:x"))
        await bus.wait_idle()
        stored = await bus.poll(EventQuery(topic=">"))
        assert [e.event_id for e in stored] == [
            made_by_a_rule.event_id,
            allowed.event_id,
        ]  # none of the refused
        assert bus.info()["stats"]["emitted"] == 2


async def test_a_full_queue_refuses_at_once_with_32005(tmp_path: Path) -> None:
    async with running_bus(tmp_path, queue_size=1) as bus:
        queued = bus.submit([emit("a", 1)])  # the writer has not had a turn: it waits in the queue
        with pytest.raises(
            Overloaded, match="emit queue is full \\(1 requests\\); back off and retry"
        ) as refused:
            bus.submit([emit("a", 2)])
        assert refused.value.code == -32005
        assert bus.info()["stats"]["rejected_overloaded"] == 1
        (result,) = await queued
        assert result.event_id == 1


async def test_wait_idle_returns_once_everything_submitted_is_committed_and_delivered(
    tmp_path: Path, storage_fields: dict[str, Any]
) -> None:
    async with running_bus(tmp_path, **storage_fields) as bus:
        peer = RecordingSubscriber()
        assert bus.admit(peer)
        sub = bus.subscribe(EventQuery(topic="t.>"), peer, replay=False)
        sub.start()
        # `size`: what each request's line weighed, as the RPC layer tells it.
        pending = [bus.submit([emit(f"t.{i % 3}", i)], size=64) for i in range(200)]
        pending.append(bus.submit([emit("t.batch", i) for i in range(50)], batch=True, size=640))
        assert peer.lines == []  # queued, not yet committed
        assert bus.info()["stats"]["queue_bytes"] == 200 * 64 + 640

        await bus.wait_idle()
        assert all(future.done() for future in pending)
        assert peer.event_ids() == list(range(1, 251))
        stats = bus.info()["stats"]
        assert (stats["last_event_id"], stats["queue_bytes"], stats["emitted"]) == (250, 0, 250)
        assert bus.last_event_id == 250


async def test_a_connection_that_drains_again_gets_what_its_subscriptions_held(
    tmp_path: Path,
) -> None:
    async with running_bus(tmp_path) as bus:
        peer = RecordingSubscriber()
        sub = bus.subscribe(EventQuery(topic="t"), peer, replay=False)
        sub.start()
        peer.pause()
        await bus.emit_many([emit("t", i) for i in range(3)])
        await bus.wait_idle()
        assert peer.lines == []
        peer.drain()
        bus.resume_streams(peer)
        assert peer.event_ids() == [1, 2, 3]


async def test_info_stats_move_with_what_the_bus_does(
    tmp_path: Path, storage_fields: dict[str, Any]
) -> None:
    async with running_bus(tmp_path, subscriber_buffer=1, **storage_fields) as bus:
        counters = (
            "emitted",
            "batches",
            "topics",
            "subscriptions",
            "lagged",
            "connections",
            "last_event_id",
        )
        stats = bus.info()["stats"]
        assert [stats[name] for name in counters] == [0] * len(counters)
        peer = RecordingSubscriber()
        bus.admit(peer)
        bus.subscribe(EventQuery(topic="a"), peer, replay=False).start()
        await bus.emit(emit("a", 1, idempotency_key="k"))
        await bus.emit(emit("a", 1, idempotency_key="k"))  # a repeat: answered, not stored
        await bus.emit_many([emit("b", 2), emit("c", 3)])
        await bus.wait_idle()
        stats = bus.info()["stats"]
        assert (stats["emitted"], stats["duplicates"], stats["batches"]) == (3, 1, 3)
        assert (
            stats["topics"],
            stats["last_event_id"],
            stats["subscriptions"],
            stats["connections"],
        ) == (3, 3, 1, 1)
        assert [t["topic"] for t in await bus.list_topics()] == ["a", "b", "c"]

        peer.pause()
        await bus.emit_many([emit("a", 4), emit("a", 5)])  # two held where one may be: it lags
        await bus.wait_idle()
        stats = bus.info()["stats"]
        assert (stats["lagged"], stats["subscriptions"]) == (1, 0)
        assert peer.lagged() == [{"subscription": "sub-1", "resume_since": 1}]

        bus.note("closed_partial_line")
        assert bus.info()["stats"]["closed_partial_line"] == 1
