"""Rules firing for real: actions, templates, retries, dead letters, the
concurrency limit, the loop guard, cross-bus emits and rule_fired notices."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_core.errors import InvalidParams, ReservedTopic, SourceNotAllowed
from eventbus_server.app import EventBusApp
from tests import postgres
from tests.conftest import start_buses

from . import python_tools
from .conftest import rules_bus, settle


async def test_invoke_tool_renders_input_and_records_an_ok_firing(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(
        {
            "id": "fetch",
            "topic": "repo.*",
            "match_fields": {"$.payload.branch": "main"},
            "action": {
                "type": "InvokeTool",
                "tool_id": "trn:user:test:python:echo:v1",
                "input": {"repo": "{{ $.payload.repo }}", "note": "pushed by {{ $.source_trn }}"},
            },
        }
    )
    hit = await bus.emit(
        "repo.pushed", {"repo": "acme/api", "branch": "main"}, source_trn="trn:user:alice:cli:v1"
    )
    await bus.emit("repo.pushed", {"repo": "acme/web", "branch": "dev"})
    await settle(rules_app)

    (call,) = python_tools.CALLS
    assert call["input"] == {"repo": "acme/api", "note": "pushed by trn:user:alice:cli:v1"}
    assert (
        call["event"]["event_id"] == hit.event_id
        and call["tool_id"] == "trn:user:test:python:echo:v1"
    )
    (firing,) = await bus.list_firings()
    assert firing["rule_id"] == "fetch" and firing["event_id"] == hit.event_id
    assert firing["status"] == "ok" and firing["attempts"] == 1 and firing["error"] is None
    assert firing["result"] == {"echo": call["input"], "tool": "trn:user:test:python:echo:v1"}
    assert firing["firing_id"] == call["firing_id"] and firing["duration_ms"] >= 0
    counters = await bus.get_rule("fetch")
    assert (counters["fired"], counters["failed"]) == (1, 0) and counters[
        "last_fired_at"
    ] == firing["started_at"]


async def test_the_tool_result_is_emitted_on_the_result_topic(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(
        {
            "id": "with-result",
            "topic": "jobs.start",
            "action": {
                "type": "InvokeTool",
                "tool_id": "trn:user:test:python:echo:v1",
                "input": "{{ $.payload }}",
                "result_topic": "jobs.done",
            },
        }
    )
    cause = await bus.emit("jobs.start", {"n": 1}, correlation_id="c-9")
    await settle(rules_app)
    (result,) = (await bus.poll("jobs.done")).events
    assert result.payload == {"echo": {"n": 1}, "tool": "trn:user:test:python:echo:v1"}
    assert result.source_trn == "trn:user:test:python:echo:v1"
    assert result.correlation_id == "c-9"
    assert result.metadata == {
        "caused_by": {"event_id": cause.event_id, "rule_id": "with-result", "hops": 1}
    }


async def test_emit_event_carries_caused_by_and_the_rule_source(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(
        {
            "id": "notify",
            "topic": "orders.created",
            "match_fields": {"total": {"numeric": [">=", 100]}},
            "action": {
                "type": "EmitEvent",
                "topic": "orders.big",
                "payload": {"order": "{{ $.payload.id }}", "total": "{{ $.payload.total }}"},
            },
        }
    )
    big = await bus.emit("orders.created", {"id": "o-1", "total": 250})
    await bus.emit("orders.created", {"id": "o-2", "total": 5})
    await settle(rules_app)
    (derived,) = (await bus.poll("orders.big")).events
    assert derived.payload == {"order": "o-1", "total": 250}
    assert derived.source_trn == "trn:eventbus:rules:rule:notify"
    assert derived.correlation_id == f"evt-{big.event_id}"
    assert derived.metadata == {
        "caused_by": {"event_id": big.event_id, "rule_id": "notify", "hops": 1}
    }
    (firing,) = await bus.list_firings()
    assert firing["result"] == {"event_id": derived.event_id, "bus": "rules", "topic": "orders.big"}


async def test_a_rule_that_triggers_itself_stops_at_max_hops(
    tmp_path: Path, storage_kind: str
) -> None:
    async with (
        start_buses(tmp_path, rules_bus(storage_kind, tmp_path, max_hops=3)) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.register_rule(
            {
                "id": "loop",
                "topic": "loop.x",
                "action": {"type": "EmitEvent", "topic": "loop.x", "payload": "{{ $.payload }}"},
            }
        )
        await bus.emit("loop.x", "go")
        await settle(app)
        firings = await bus.list_firings()
        assert [f["status"] for f in firings] == ["ok", "ok", "ok", "skipped"]
        assert "max_hops 3" in firings[-1]["error"]
        hops = [
            (e.metadata or {}).get("caused_by", {}).get("hops", 0)
            for e in (await bus.poll("loop.x")).events
        ]
        assert hops == [0, 1, 2, 3]


async def test_emit_event_on_another_bus_of_the_process(tmp_path: Path) -> None:
    buses = [
        rules_bus("memory", tmp_path),
        {"id": "audit", "allowed_sources": ["trn:org:"], "accept_from_buses": ["rules"]},
    ]
    async with start_buses(tmp_path, *buses) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(
            {
                "id": "copy",
                "topic": "a.b",
                "action": {
                    "type": "EmitEvent",
                    "topic": "copied",
                    "payload": "{{ $.payload }}",
                    "bus": "audit",
                },
            }
        )
        await bus.emit("a.b", {"x": 1})
        await settle(app)
        async with await connect(app.url("audit")) as audit:
            (copied,) = (await audit.poll("copied")).events
        # Rule events are the bus's own: the audit bus's allow-list does not apply to them.
        assert copied.payload == {"x": 1} and copied.source_trn == "trn:eventbus:rules:rule:copy"


async def test_a_rule_may_not_emit_on_a_bus_that_does_not_accept_its_bus(tmp_path: Path) -> None:
    # The attack: a client of an open bus aims a rule at a token-protected bus.
    buses = [
        rules_bus("memory", tmp_path),
        {"id": "vault", "auth_token_env": "VAULT_TOKEN", "allowed_sources": ["trn:org:"]},
    ]
    async with (
        start_buses(tmp_path, *buses, env={"VAULT_TOKEN": "s3cret"}) as app,
        await connect(app.url("rules")) as bus,
    ):
        rule = {
            "id": "inject",
            "topic": "a.b",
            "action": {
                "type": "EmitEvent",
                "topic": "injected",
                "payload": "{{ $.payload }}",
                "bus": "vault",
            },
        }
        with pytest.raises(SourceNotAllowed) as refused:
            await bus.register_rule(rule)
        assert "bus 'vault' does not accept events from rules of bus 'rules'" in str(refused.value)
        assert "accept_from_buses" in str(refused.value)
        await bus.emit("a.b", {"x": 1})
        await settle(app)
        assert await app.buses["vault"].storage.count() == 0


@pytest.mark.parametrize(
    ("action", "where"),
    [
        ({"type": "EmitEvent", "topic": "_sys.injected", "payload": 1}, "action.topic"),
        (
            {"type": "EmitEvent", "topic": "_sys.injected", "payload": 1, "bus": "audit"},
            "action.topic",
        ),
        (
            {
                "type": "InvokeTool",
                "tool_id": "trn:user:test:python:echo:v1",
                "result_topic": "_sys.x",
            },
            "action.result_topic",
        ),
    ],
)
async def test_rule_made_events_may_not_use_reserved_topics(
    tmp_path: Path, action: dict[str, Any], where: str
) -> None:
    buses = [rules_bus("memory", tmp_path), {"id": "audit", "accept_from_buses": ["rules"]}]
    async with start_buses(tmp_path, *buses) as app, await connect(app.url("rules")) as bus:
        with pytest.raises(ReservedTopic) as refused:
            await bus.register_rule({"id": "sys", "topic": "a.b", "action": action})
        assert f"{where} '_sys." in str(refused.value)


async def test_consent_is_checked_again_when_the_rule_fires(tmp_path: Path) -> None:
    """A rule stored while the target accepted it stops reaching it once the config says no."""
    stored = rules_bus("sqlite", tmp_path)
    rule = {
        "id": "copy",
        "topic": "a.b",
        "action": {"type": "EmitEvent", "topic": "copied", "payload": 1, "bus": "audit"},
    }
    async with (
        start_buses(tmp_path, stored, {"id": "audit", "accept_from_buses": ["rules"]}) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.register_rule(rule)
    async with (
        start_buses(tmp_path, stored, {"id": "audit"}) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.emit("a.b", 1)
        await settle(app)
        (firing,) = await bus.list_firings()
        assert firing["status"] == "failed"
        assert "bus 'audit' does not accept events from rules of bus 'rules'" in firing["error"]
        assert await app.buses["audit"].storage.count() == 0


async def test_tool_errors_are_retried_with_backoff_until_they_succeed(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    python_tools.reset(fail_first=2)
    await bus.register_rule(
        {
            "id": "flaky",
            "topic": "t",
            "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:flaky:v1"},
        }
    )
    await bus.emit("t", 1)
    await settle(rules_app)
    (firing,) = await bus.list_firings()
    assert (firing["status"], firing["attempts"], firing["result"]) == ("ok", 3, {"tries": 3})
    assert (
        len({c["firing_id"] for c in python_tools.CALLS}) == 1
    )  # one firing_id across the retries


async def test_exhausted_retries_leave_a_dead_letter(
    bus: EventBusClient, rules_app: EventBusApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus.rules")
    python_tools.reset(fail_first=99)
    await bus.register_rule(
        {
            "id": "doomed",
            "topic": "t",
            "retry": {"attempts": 2, "backoff_ms": 1},
            "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:flaky:v1"},
        }
    )
    await bus.register_rule(
        {
            "id": "fine",
            "topic": "t",
            "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:echo:v1"},
        }
    )
    event = await bus.emit("t", 1)
    await settle(rules_app)
    (dead,) = await bus.list_firings(status="failed")
    assert (
        dead["rule_id"] == "doomed" and dead["event_id"] == event.event_id and dead["attempts"] == 2
    )
    assert "try 2 failed on purpose" in dead["error"]
    assert len(python_tools.CALLS) == 3
    assert (await bus.get_rule("doomed"))["failed"] == 1
    # Logged once, at WARNING, with what an operator needs to find it.
    (line,) = [r.getMessage() for r in caplog.records if "failed after" in r.getMessage()]
    assert (
        f"rule=doomed event={event.event_id} firing={dead['firing_id']} failed after 2 attempts"
        in line
    )


async def test_a_tool_without_a_route_fails_at_once(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(
        {
            "id": "lost",
            "topic": "t",
            "action": {"type": "InvokeTool", "tool_id": "trn:org:nobody:tool:x:v1"},
        }
    )
    await bus.emit("t", 1)
    await settle(rules_app)
    (firing,) = await bus.list_firings()
    assert firing["status"] == "failed" and firing["attempts"] == 1
    assert "trn:org:nobody:tool:x:v1" in firing["error"]


async def register_slow_rule(bus: EventBusClient, *, sleep_s: float) -> None:
    """Rule `slow` on topic `t`: every event calls the `slow` tool, which sleeps `sleep_s`."""
    await bus.register_rule(
        {
            "id": "slow",
            "topic": "t",
            "action": {
                "type": "InvokeTool",
                "tool_id": "trn:user:test:python:slow:v1",
                "input": {"sleep_s": sleep_s},
            },
        }
    )


async def test_firings_never_exceed_max_concurrency(tmp_path: Path) -> None:
    config = rules_bus("memory", tmp_path, max_concurrency=2)
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        await register_slow_rule(bus, sleep_s=0.05)
        await bus.emit_many([{"topic": "t", "payload": i} for i in range(10)])
        await settle(app)
        assert python_tools.STATE["peak"] == 2
        assert len(python_tools.CALLS) == 10
        assert [f["status"] for f in await bus.list_firings()] == ["ok"] * 10


async def test_duration_counts_the_tool_call_not_the_wait_for_a_slot(tmp_path: Path) -> None:
    # DESIGN §6: with one slot, the fourth firing waits for three 0.2 s calls before its
    # own; its duration_ms is still its own call's, not the 0.8 s since it was claimed.
    config = rules_bus("memory", tmp_path, max_concurrency=1)
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        await register_slow_rule(bus, sleep_s=0.2)
        await bus.emit_many([{"topic": "t", "payload": i} for i in range(4)])
        await settle(app)
        firings = await bus.list_firings()
        assert [f["status"] for f in firings] == ["ok"] * 4
        last = max(firings, key=lambda f: f["started_at"])
        first = min(firings, key=lambda f: f["started_at"])
        assert all(200 <= f["duration_ms"] < 600 for f in firings), firings
        # …while the slot really was taken in turn: the calls did not overlap.
        assert python_tools.STATE["peak"] == 1 and last["started_at"] >= first["started_at"]


async def test_subscribe_firings_streams_finished_firings(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(
        {"id": "a", "topic": "t", "action": {"type": "EmitEvent", "topic": "u"}}
    )
    await bus.register_rule(
        {
            "id": "b",
            "topic": "t",
            "action": {"type": "InvokeTool", "tool_id": "trn:org:nobody:tool:x:v1"},
        }
    )
    every = await bus.subscribe_firings()
    only_b = await bus.subscribe_firings(rule_id="b")
    event = await bus.emit("t", 1)
    seen = sorted(
        [await every.next(timeout_s=5), await every.next(timeout_s=5)], key=lambda f: f["rule_id"]
    )
    assert [(f["rule_id"], f["event_id"], f["status"]) for f in seen] == [
        ("a", event.event_id, "ok"),
        ("b", event.event_id, "failed"),
    ]
    b = await only_b.next(timeout_s=5)
    assert b["rule_id"] == "b" and "subscription" not in b
    await only_b.unsubscribe()
    await every.unsubscribe()


async def test_disabled_rules_do_not_fire_and_list_firings_pages(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(
        {"id": "on", "topic": "t", "action": {"type": "EmitEvent", "topic": "u"}}
    )
    await bus.register_rule(
        {"id": "off", "topic": "t", "enabled": False, "action": {"type": "EmitEvent", "topic": "u"}}
    )
    await bus.emit_many([{"topic": "t", "payload": i} for i in range(5)])
    await settle(rules_app)
    firings = await bus.list_firings(limit=3)
    assert [f["rule_id"] for f in firings] == ["on"] * 3
    rest = await bus.list_firings(since=firings[-1]["firing_id"])
    assert len(rest) == 2
    newest = await bus.list_firings(order="desc", limit=1)
    assert newest[0]["firing_id"] == rest[-1]["firing_id"]


def _ids(firings: list[dict[str, Any]]) -> list[int]:
    return [f["event_id"] for f in firings]


async def test_a_result_the_storage_cannot_hold_fails_the_firing_instead_of_leaving_it_pending(
    tmp_path: Path,
) -> None:
    postgres.require()
    async with (
        start_buses(tmp_path, rules_bus("postgres", tmp_path)) as app,
        await connect(app.url("rules")) as bus,
    ):
        await bus.register_rule(
            {
                "id": "nul",
                "topic": "t",
                "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:nul:v1"},
            }
        )
        await bus.emit("t", 1)
        await settle(app)
        (firing,) = await bus.list_firings()
        assert firing["status"] == "failed" and firing["result"] is None
        assert "the result cannot be stored" in firing["error"] and "\\u0000" in firing["error"]


async def test_a_path_that_cannot_be_evaluated_is_refused_and_stops_no_other_rule(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    """Found by tests/hostile/test_fuzz.py: jsonpath-ng raised TypeError (sorting mixed
    values) inside the engine's match loop, which then retried the same events every
    second and fired nothing more. Such a path is refused now, naming why."""
    odd = {
        "id": "odd",
        "topic": "repo.*",
        "match_fields": {"$.payload[/a]": 1},
        "action": {"type": "EmitEvent", "topic": "odd.out"},
    }
    with pytest.raises(InvalidParams) as refused:
        await bus.register_rule(odd)
    assert "sorting" in str(refused.value)
    await bus.register_rule(
        {
            "id": "echo",
            "topic": "repo.*",
            "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:echo:v1"},
        }
    )
    await bus.emit("repo.pushed", {"a": 1})
    await settle(rules_app)
    (firing,) = await bus.list_firings()
    assert firing["rule_id"] == "echo" and firing["status"] == "ok"


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


async def test_an_action_its_templates_nest_too_deep_fails_its_firing_and_nothing_else(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    """Found by tests/hostile/test_fuzz.py: the rule-made event (a template nested around a nested event value) failed
    the group commit it shared with other emitters (-32603), or on a memory bus was
    stored and broke every poll that met it."""
    await bus.register_rule(
        {
            "id": "deep",
            "topic": "deep.in",
            "action": {
                "type": "EmitEvent",
                "topic": "deep.out",
                "payload": nested(30, "{{ $.payload }}"),
            },
        }
    )
    await bus.emit("deep.in", nested(180, 1))  # 30 + 180 levels: past 200
    others = await asyncio.gather(*(bus.emit("deep.other", i) for i in range(20)))
    await settle(rules_app)
    (firing,) = await bus.list_firings()
    assert firing["status"] == "failed" and "nests deeper than 200 levels" in firing["error"]
    assert [e.topic for e in (await bus.poll(">", limit=100)).events] == ["deep.in"] + [
        "deep.other"
    ] * len(others)


async def test_no_rule_fired_precedes_the_batch_reply_that_names_its_subscription(
    tmp_path: Path,
) -> None:
    """Found by tests/hostile/test_fuzz.py: in a batch [subscribe_firings, emit_event, …]
    the firing could finish, and be pushed, before the batch reply told the subscription's id."""
    from tests.wire import RawPeer

    bus = rules_bus("memory", tmp_path, auth_token_env="FIRINGS_TOKEN")
    async with start_buses(tmp_path, bus, env={"FIRINGS_TOKEN": "secret"}) as app:
        async with await connect(app.url("rules"), token="secret") as client:
            await client.register_rule(
                {"id": "a", "topic": "t", "action": {"type": "EmitEvent", "topic": "u"}}
            )
        peer = await RawPeer.open(app.address("rules"))
        try:
            assert (await peer.call("authenticate", {"token": "secret"}))["result"] == {"ok": True}
            await peer.send(
                [
                    {"jsonrpc": "2.0", "method": "subscribe_firings", "id": 1},
                    {"jsonrpc": "2.0", "method": "emit_event", "params": {"topic": "t"}, "id": 2},
                    # A wrong token is answered 100 ms late: the batch reply waits for it.
                    {
                        "jsonrpc": "2.0",
                        "method": "authenticate",
                        "params": {"token": "wrong"},
                        "id": 3,
                    },
                ]
            )
            batch = await peer.recv()
            assert isinstance(batch, list), batch
            subscription = next(r["result"]["subscription"] for r in batch if r["id"] == 1)
            pushed = await peer.recv()
            assert (
                pushed["method"] == "rule_fired"
                and pushed["params"]["subscription"] == subscription
            )
        finally:
            await peer.close()


async def test_retry_firings_redrives_dead_letters_under_the_same_firing_id(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    python_tools.reset(
        fail_first=2
    )  # the tool fails twice, then works: the "fix" after the dead letter
    await bus.register_rule(
        {
            "id": "flaky",
            "topic": "t",
            "retry": {"attempts": 2, "backoff_ms": 1},
            "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:flaky:v1"},
        }
    )
    event = await bus.emit("t", 1)
    await settle(rules_app)
    (dead,) = await bus.list_firings(status="failed")
    assert (dead["attempts"], (await bus.get_rule("flaky"))["failed"]) == (2, 1)
    assert await bus.retry_firings(status="ok") == 0  # nothing ok yet
    assert await bus.retry_firings([dead["firing_id"]]) == 1
    await settle(rules_app)
    (again,) = await bus.list_firings()
    assert (again["firing_id"], again["event_id"], again["status"]) == (
        dead["firing_id"],
        event.event_id,
        "ok",
    )
    assert again["attempts"] == 3  # attempts continue
    rule = await bus.get_rule("flaky")
    assert (rule["failed"], rule["fired"]) == (0, 1)
    assert await bus.retry_firings([dead["firing_id"]]) == 0  # not a dead letter any more


async def test_retry_firings_by_rule_leaves_other_rules_alone(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    python_tools.reset(fail_first=99)
    for rule_id in ("a", "b"):
        await bus.register_rule(
            {
                "id": rule_id,
                "topic": "t",
                "retry": {"attempts": 1, "backoff_ms": 1},
                "action": {"type": "InvokeTool", "tool_id": "trn:user:test:python:flaky:v1"},
            }
        )
    await bus.emit("t", 1)
    await settle(rules_app)
    assert len(await bus.list_firings(status="failed")) == 2
    assert await bus.retry_firings(rule_id="a") == 1
    await settle(rules_app)
    failed = await bus.list_firings(status="failed")
    assert sorted((f["rule_id"], f["attempts"]) for f in failed) == [("a", 2), ("b", 1)]
    with pytest.raises(InvalidParams):
        await bus.retry_firings([])  # an empty list names nothing: refused, not "all"
