"""The attacks of issue "No client can hurt a bus", each against a real server process.

Every test does what one hostile or broken client did in the review, on a
`victim` bus, while other clients use the victim bus and the `other` bus of
the same process, and asserts what those users see (DESIGN.md §3 "Limits").

Each row whose outcome can depend on the storage runs on memory, SQLite and
PostgreSQL (`storage_kind`): integers at and past int64 (in emits and in every
query), unread polls, unread event and firing subscriptions, the cross-bus
rule (rules are stored and outlive a config), the 100 MB tool reply (the
firing is stored), and in test_pattern_cost.py the backtracking wildcard
(a restarted engine reads the events after its cursor from the store).

The rest run on memory only, because the connection refuses them before any
request reaches the bus, so no storage is involved (eventbus_server/connection.py
and rpc.py):
- the 1 MiB array line: `parse_message` answers a batch longer than
  `max_batch` with one -32600 before it looks at any item; no call is made;
- slow partial lines: `LineFramer` holds the partial line and a timer of the
  connection closes it; no line is complete, so nothing is parsed;
- past `max_connections`: `Bus.admit` counts connections in memory, and
  `connection_made` writes the refusal before any byte is read;
- wrong tokens and the authentication deadline: `authenticate` compares with
  the token in the config, and `rpc.start` refuses every other method before
  its handler runs on a connection that has not authenticated.
The storage file deleted under a running bus is a SQLite row by its nature
(tests/server/test_sqlite_file_lost.py); PostgreSQL's counterpart, its schema
dropped under the bus, is in tests/storage/test_refusals.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect
from eventbus_core.errors import ReservedTopic

from .conftest import (
    RSS_GROWTH_BOUND_MB,
    HostileServer,
    assert_clean_log,
    assert_pings_answered,
    hostile_server,
    line,
    pinging,
    raw_connection,
    read_replies,
    sample_rss,
    victim_bus,
)

pytestmark = pytest.mark.slow


# -- integers beyond int64 -----------------------------------------------------------

BIG = [2**63, 2**63 + 1, 2**64 - 1]


async def test_out_of_range_timestamps_never_fail_another_clients_emits(
    storage_kind: str, tmp_path: Path
) -> None:
    async with hostile_server(tmp_path, victim_bus(storage_kind, tmp_path)) as server:
        reader, writer = await raw_connection(server.address("victim"))
        attacks = b"".join(
            line("emit_event", {"topic": "t", "payload": 1, "timestamp": BIG[i % 3]}, call_id=i)
            for i in range(500)
        )
        async with await connect(server.url("victim")) as victim:

            async def attack() -> None:
                for _ in range(10):  # interleaved with the victim's pipelined emits
                    writer.write(attacks)
                    await writer.drain()
                    await asyncio.sleep(0)

            results = await asyncio.gather(
                attack(), *(victim.emit("v", i) for i in range(5000)), return_exceptions=True
            )
            failures = [r for r in results[1:] if isinstance(r, BaseException)]
            assert failures == []
            assert len({r.event_id for r in results[1:]}) == 5000  # type: ignore[union-attr]
            page = await victim.poll("t", limit=10)
            assert page.events == []  # not one attacking event was stored
        replies = await read_replies(reader, 5000)
        assert {r["error"]["code"] for r in replies} == {-32602}
        assert {r["error"]["data"][0]["loc"] for r in replies} == {"timestamp"}
        writer.close()
    assert_clean_log(server)


MAX = 2**63 - 1

#: Every integer a query may carry, at int64's edge (reaches storage, answered like any other
#: value) and one past it (refused before storage, naming the field): each row is
#: (method, params at the edge, the field, params one past it).
QUERY_INTEGERS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("poll_events", {"since": MAX}, "since", {"since": 2**63}),
    ("poll_events", {"since": MAX, "order": "desc"}, "since", {"since": -1}),
    ("poll_events", {"from_ts": MAX}, "from_ts", {"from_ts": 2**64 - 1}),
    ("poll_events", {"from_ts": 0, "to_ts": MAX}, "to_ts", {"to_ts": 2**63}),
    ("poll_events", {"limit": 10_000}, "limit", {"limit": 2**63}),
    ("subscribe_topic", {"topic": "t", "since": MAX}, "since", {"topic": "t", "since": 2**63}),
    ("list_firings", {"since": MAX}, "since", {"since": 2**64 - 1}),
    ("list_firings", {"since": MAX, "order": "desc"}, "since", {"since": -1}),
    ("retry_firings", {"firing_ids": [MAX]}, "firing_ids", {"firing_ids": [2**63]}),
    (
        "replay_events",
        {"since_ts": MAX, "until_ts": MAX, "after_id": MAX, "until_id": MAX, "dry_run": True},
        "until_ts",
        {"since_ts": 0, "until_ts": 2**63, "dry_run": True},
    ),
    (
        "replay_events",
        {"since_ts": 0, "until_ts": MAX, "after_id": MAX, "dry_run": True},
        "after_id",
        {"since_ts": 0, "until_ts": 1, "after_id": 2**63, "dry_run": True},
    ),
    (
        "create_consumer",
        {"name": "after", "start": {"after_id": MAX}},
        "start",
        {"name": "x", "start": {"after_id": 2**63}},
    ),
    (
        "create_consumer",
        {"name": "from", "start": {"from_ts": MAX}},
        "start",
        {"name": "x", "start": {"from_ts": 2**64 - 1}},
    ),
    (
        "ack",
        {"consumer": "after", "event_ids": [MAX]},
        "event_ids",
        {"consumer": "after", "event_ids": [2**63]},
    ),
    (
        "nack",
        {"consumer": "after", "event_ids": [MAX]},
        "event_ids",
        {"consumer": "after", "event_ids": [-1]},
    ),
    (
        "extend",
        {"consumer": "after", "event_ids": [MAX]},
        "event_ids",
        {"consumer": "after", "event_ids": [2**63]},
    ),
    (
        "term",
        {"consumer": "after", "event_ids": [MAX]},
        "event_ids",
        {"consumer": "after", "event_ids": [2**63]},
    ),
    (
        "list_dead_letters",
        {"consumer": "after", "after_id": MAX},
        "after_id",
        {"consumer": "after", "after_id": 2**63},
    ),
    (
        "redrive",
        {"consumer": "after", "event_ids": [MAX]},
        "event_ids",
        {"consumer": "after", "event_ids": [2**63]},
    ),
    (
        "list_scheduled",
        {"after": {"deliver_at": MAX, "schedule_id": "x"}},
        "after",
        {"after": {"deliver_at": 2**63, "schedule_id": "x"}},
    ),
]


async def test_integers_in_every_query_are_answered_at_int64s_edge_and_refused_past_it(
    storage_kind: str, tmp_path: Path
) -> None:
    """The issue's -32603s came from values past int64 reaching SQLite or PostgreSQL; the
    edge itself (2^63-1) reaches them too, and must be answered, not overflow in a query."""
    bus = victim_bus(storage_kind, tmp_path, enable_rules=True)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw_connection(server.address("victim"), receive_buffer=65_536)
        writer.write(line("emit_event", {"topic": "t", "payload": 1, "timestamp": MAX}, "late"))
        [emitted] = await read_replies(reader, 1)
        assert emitted["result"]["event_id"] == 1
        for index, (method, edge, field, past) in enumerate(QUERY_INTEGERS):
            writer.write(line(method, edge, f"edge-{index}") + line(method, past, f"past-{index}"))
            replies = {r["id"]: r for r in await read_replies(reader, 2)}
            assert "result" in replies[f"edge-{index}"], (method, edge, replies)
            error = replies[f"past-{index}"]["error"]
            assert error["code"] == -32602, (method, past, error)
            assert error["data"][0]["loc"].startswith(field), (method, past, error)
        # The event stamped at the edge is found by its time, at the edge, by a poll and
        # by the consumer that starts there; nothing is after the last id.
        writer.write(
            line("poll_events", {"from_ts": MAX, "to_ts": MAX}, "poll")
            + line("fetch", {"consumer": "from"}, "from")
            + line("fetch", {"consumer": "after"}, "after")
        )
        found = {r["id"]: r["result"] for r in await read_replies(reader, 3)}
        assert [e["event_id"] for e in found["poll"]["events"]] == [1]
        assert [m["event"]["event_id"] for m in found["from"]["messages"]] == [1]
        assert found["after"]["messages"] == []
        writer.close()
    assert_clean_log(server)


# -- floods of requests that are never read -------------------------------------------


async def fill(server: HostileServer, events: int, payload_bytes: int) -> None:
    async with await connect(server.url("victim")) as client:
        payload = "x" * payload_bytes
        for start in range(0, events, 1000):
            await client.emit_many(
                [
                    {"topic": "fill", "payload": {"i": i, "s": payload}}
                    for i in range(start, start + 1000)
                ]
            )


async def test_pipelined_polls_that_are_never_read_stay_bounded(
    storage_kind: str, tmp_path: Path
) -> None:
    async with hostile_server(tmp_path, victim_bus(storage_kind, tmp_path)) as server:
        await fill(server, 10_000, 1000)
        before = server.rss_mb()
        _reader, writer = await raw_connection(server.address("victim"))
        polls = b"".join(line("poll_events", {"limit": 10_000}, call_id=i) for i in range(5000))
        async with pinging(server) as monitors:
            writer.write(
                polls
            )  # the server stops reading once its budget is full; the rest waits in the socket
            worst = await sample_rss(server, 4.0)
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        writer.transport.abort()  # the attacker goes; its calls are cancelled
        async with pinging(server) as monitors:
            await asyncio.sleep(0.5)
        assert_pings_answered(monitors)
    assert_clean_log(server)


async def test_huge_batches_of_junk_get_one_error_each(tmp_path: Path) -> None:
    async with hostile_server(tmp_path, victim_bus("memory", tmp_path)) as server:
        junk = b"[" + b",".join([b"1"] * 524_000) + b"]\n"
        assert len(junk) < 1_048_576
        before = server.rss_mb()
        connections = [await raw_connection(server.address("victim")) for _ in range(10)]
        async with pinging(server) as monitors:
            for _, writer in connections:
                writer.write(junk)
            worst = await sample_rss(server, 2.0)
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        for reader, writer in connections:
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert reply["id"] is None and reply["error"]["code"] == -32600
            assert "524000 items is over the limit of 1000" in reply["error"]["message"]
            writer.close()
    assert_clean_log(server)


async def test_ten_thousand_subscriptions_that_are_never_read(
    storage_kind: str, tmp_path: Path
) -> None:
    bus = victim_bus(storage_kind, tmp_path, subscriber_buffer=100)
    async with hostile_server(tmp_path, bus) as server:
        before = server.rss_mb()
        reader, writer = await raw_connection(server.address("victim"))
        writer.write(
            b"".join(line("subscribe_topic", {"topic": ">"}, call_id=i) for i in range(10_000))
        )
        await writer.drain()
        async with pinging(server) as monitors, await connect(server.url("victim")) as victim:
            worst_ack = 0.0
            for batch in range(20):
                started = time.monotonic()
                await victim.emit_many(
                    [{"topic": "v", "payload": {"batch": batch, "i": i}} for i in range(100)]
                )
                worst_ack = max(worst_ack, time.monotonic() - started)
            worst = server.rss_mb()
        assert_pings_answered(monitors)
        assert worst_ack < 1.0, f"a batch of 100 emits took {worst_ack:.2f} s to be acknowledged"
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        replies, lagged = [], 0
        async with asyncio.timeout(60):
            while len(replies) < 10_000:
                message = json.loads(await reader.readline())
                if "id" in message:
                    replies.append(message)
                lagged += message.get("method") == "lagged"
        accepted = [r for r in replies if "result" in r]
        refused = [r for r in replies if "error" in r]
        # At most max_subscriptions at a time: a subscription that lagged (and was dropped) frees its slot.
        assert 1000 <= len(accepted) <= 1000 + lagged
        assert len(refused) == 10_000 - len(accepted) and {r["error"]["code"] for r in refused} == {
            -32005
        }
        assert "max_subscriptions" in refused[0]["error"]["message"]
        writer.close()
    assert_clean_log(server)


async def test_firing_subscriptions_that_are_never_read_lag(
    storage_kind: str, tmp_path: Path
) -> None:
    echo = {
        "match": "trn:user:test:python:echo:*",
        "kind": "python",
        "function": "tests.rules.python_tools:echo",
    }
    bus = victim_bus(
        storage_kind,
        tmp_path,
        enable_rules=True,
        subscriber_buffer=50,
        max_output_bytes=65_536,
        tools=[echo],
    )
    async with hostile_server(tmp_path, bus) as server:
        async with await connect(server.url("victim")) as victim:
            # Each firing's result is the event's 10 KB payload, and so is each rule_fired notification.
            action = {
                "type": "InvokeTool",
                "tool_id": "trn:user:test:python:echo:v1",
                "input": "{{ $.payload }}",
            }
            await victim.register_rule({"id": "echo", "topic": "in", "action": action})
            # A window of 64 KiB, not 4: reading the backlog at the end must not take minutes.
            reader, writer = await raw_connection(
                server.address("victim"), receive_buffer=65_536, line_limit=65_536
            )
            writer.write(line("subscribe_firings", {}, call_id=1))
            [subscribed] = await read_replies(reader, 1)
            sub_id = subscribed["result"]["subscription"]
            before = server.rss_mb()
            async with pinging(server) as monitors:
                for start in range(0, 800, 50):
                    await victim.emit_many(
                        [
                            {"topic": "in", "payload": {"i": i, "pad": "x" * 10_000}}
                            for i in range(start, start + 50)
                        ]
                    )
                worst = server.rss_mb()
            assert_pings_answered(monitors)
            assert worst - before < RSS_GROWTH_BOUND_MB
            async with asyncio.timeout(30):  # every firing is done (and the subscriber fell behind)
                while (await victim.bus_info())["stats"]["firings"]["ok"] < 800:
                    await asyncio.sleep(0.05)
            lagged = None
            async with asyncio.timeout(30):
                while lagged is None:
                    message = json.loads(await reader.readline())
                    if message.get("method") == "lagged":
                        lagged = message["params"]
            assert lagged["subscription"] == sub_id
            # Everything missed is listed after resume_since.
            rest = await victim.list_firings(since=lagged["resume_since"], limit=10_000)
            assert len(rest) > 0 and all(f["firing_id"] > lagged["resume_since"] for f in rest)
            writer.close()
    assert_clean_log(server)


# -- tools that answer too much -------------------------------------------------------------


async def test_a_command_tool_printing_100_mb_fails_its_firing_and_nothing_is_kept(
    storage_kind: str, tmp_path: Path
) -> None:
    """The tool's 100 MB reply took the server to 576 MB and was stored as an event. It
    is cut at max_tool_reply_bytes; the firing (kept by the storage) fails, nothing else
    is stored, and the other buses answer meanwhile."""
    route = {
        "match": "trn:user:test:command:*",
        "kind": "command",
        "argv": [
            sys.executable,
            "-c",
            "import sys\nfor _ in range(100): sys.stdout.write('x' * 1_000_000)",
        ],
    }
    bus = victim_bus(storage_kind, tmp_path, enable_rules=True, tools=[route])
    action = {
        "type": "InvokeTool",
        "tool_id": "trn:user:test:command:big:v1",
        "result_topic": "big.done",
    }
    rule = {"id": "big", "topic": "in", "action": action, "retry": {"attempts": 1}}
    async with hostile_server(tmp_path, bus) as server:
        async with await connect(server.url("victim")) as victim:
            await victim.register_rule(rule)
            before = server.rss_mb()
            async with pinging(server) as monitors:
                event = await victim.emit("in", 1)
                worst = before
                async with asyncio.timeout(30):
                    while not (firings := await victim.list_firings(status="failed")):
                        worst = max(worst, server.rss_mb())
                        await asyncio.sleep(0.05)
            assert_pings_answered(monitors)
            assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
            [dead] = firings
            assert (dead["event_id"], dead["attempts"], dead["result"]) == (event.event_id, 1, None)
            assert dead["error"].endswith("reply larger than max_tool_reply_bytes (1048576 bytes)")
            assert (await victim.poll("big.done")).events == []
    assert_clean_log(server)


# -- rules aimed at another bus ----------------------------------------------------------


def inject(rule_id: str, topic: str) -> dict[str, Any]:
    """The attack's rule: copy each event's payload to the vault bus, under `topic`."""
    action = {"type": "EmitEvent", "topic": topic, "payload": "{{ $.payload }}", "bus": "vault"}
    return {"id": rule_id, "topic": "in", "action": action}


async def vault_topics(server: HostileServer) -> list[str]:
    async with await connect(server.url("vault"), token="right") as vault:
        return [event.topic for event in (await vault.poll(">", limit=1000)).events]


async def test_a_rule_reaches_a_token_protected_bus_only_if_it_opts_in(
    storage_kind: str, tmp_path: Path
) -> None:
    """A client of an open bus aimed a rule at a token-protected bus: its events landed
    there, past the token, `allowed_sources` and the `_sys.` reservation. Rules live in
    the storage (SQLite, PostgreSQL) and outlive a config that withdraws the consent."""
    victim = victim_bus(storage_kind, tmp_path, enable_rules=True)
    vault = victim_bus(
        storage_kind,
        tmp_path,
        bus_id="vault",
        auth_token_env="VICTIM_TOKEN",
        allowed_sources=["trn:org:"],
    )
    env = {"VICTIM_TOKEN": "right"}
    stored: list[str] = []  # what the vault holds from the consenting run
    if storage_kind != "memory":  # a rule registered while the vault consented, then kept
        consenting = [{**vault, "accept_from_buses": ["victim"]}]
        async with hostile_server(tmp_path, victim, env=env, others=consenting) as server:
            async with await connect(server.url("victim")) as client:
                # Consent opens the bus to rule-made events, not to the `_sys.` prefix.
                with pytest.raises(ReservedTopic):
                    await client.register_rule(inject("sys", "_sys.injected"))
                await client.register_rule(inject("copy", "copied"))
                await client.emit("in", {"x": 1})
                async with asyncio.timeout(10):
                    while not (stored := await vault_topics(server)):
                        await asyncio.sleep(0.05)
            assert stored == ["copied"]
        assert_clean_log(server)
    async with hostile_server(tmp_path, victim, env=env, others=[vault]) as server:
        reader, writer = await raw_connection(server.address("victim"), receive_buffer=65_536)
        writer.write(
            line("register_rule", inject("plain", "injected"), "plain")
            + line("register_rule", inject("sys", "_sys.injected"), "sys")
        )
        refused = {r["id"]: r["error"] for r in await read_replies(reader, 2)}
        assert refused["plain"]["code"] == -32001
        assert (
            "bus 'vault' does not accept events from rules of bus 'victim'"
            in (refused["plain"]["message"])
        )
        assert refused["sys"]["code"] == -32009  # reserved on any bus, checked first
        writer.write(line("emit_event", {"topic": "in", "payload": {"x": 2}}, "emit"))
        [emitted] = await read_replies(reader, 1)
        writer.close()
        async with await connect(server.url("victim")) as client:
            assert [rule["id"] for rule in await client.list_rules()] == (
                [] if storage_kind == "memory" else ["copy"]
            )
            if storage_kind != "memory":
                # The stored rule outlives the consent; it fires, and its firing fails.
                async with asyncio.timeout(10):
                    while not (failed := await client.list_firings(status="failed")):
                        await asyncio.sleep(0.05)
                assert failed[0]["event_id"] == emitted["result"]["event_id"]
                assert (
                    "bus 'vault' does not accept events from rules of bus 'victim'"
                    in (failed[0]["error"])
                )
        assert await vault_topics(server) == stored
    assert_clean_log(server)


# -- connections that hold slots ---------------------------------------------------------


async def test_slow_partial_lines_are_closed_and_free_their_slots(tmp_path: Path) -> None:
    bus = victim_bus("memory", tmp_path, max_connections=50, read_timeout_s=1)
    async with hostile_server(tmp_path, bus) as server:

        async def one_byte_at_a_time(writer: asyncio.StreamWriter) -> None:
            for byte in b'{"jsonrpc": "2.0", "method": "ping", "id": 1}':
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)

        async with pinging(server) as monitors:  # one of the 50 slots
            slow = [await raw_connection(server.address("victim")) for _ in range(49)]
            trickles = [asyncio.create_task(one_byte_at_a_time(w)) for _, w in slow]
            # Full: one more is refused while they trickle.
            reader, writer = await raw_connection(server.address("victim"))
            refusal = json.loads(await asyncio.wait_for(reader.readline(), 5))
            assert refusal["error"]["code"] == -32005
            writer.close()
            for reader, _ in slow:
                reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
                assert reply["error"]["code"] == -32600
                assert "not completed within 1 s" in reply["error"]["message"]
                assert await asyncio.wait_for(reader.read(), 5) == b""
            for task in trickles:
                task.cancel()
            await asyncio.gather(*trickles, return_exceptions=True)
            for _, writer in slow:
                writer.close()
            # Their slots are free again: a new client connects and is served.
            async with await connect(server.url("victim")) as late:
                assert await late.ping() == "pong"
        assert_pings_answered(monitors)
    assert_clean_log(server)


async def test_an_idle_connection_without_a_partial_line_stays_open(tmp_path: Path) -> None:
    bus = victim_bus("memory", tmp_path, read_timeout_s=0.5)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw_connection(server.address("victim"))
        await asyncio.sleep(1.5)
        writer.write(line("ping", call_id=3))
        assert await read_replies(reader, 1) == [{"jsonrpc": "2.0", "id": 3, "result": "pong"}]
        writer.close()


async def test_a_steady_stream_split_mid_line_is_not_a_slow_line(tmp_path: Path) -> None:
    """Every chunk ends inside a line, for longer than read_timeout_s: each line is on time."""
    bus = victim_bus("memory", tmp_path, read_timeout_s=0.5)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw_connection(server.address("victim"), receive_buffer=65_536)
        stream = b"".join(line("ping", call_id=i) for i in range(40))
        for start in range(0, len(stream), 50):  # 50-byte chunks: almost every one splits a line
            writer.write(stream[start : start + 50])
            await asyncio.sleep(0.04)
        replies = await read_replies(reader, 40)
        assert [r["id"] for r in replies] == list(range(40))
        writer.close()
    assert_clean_log(server)


async def test_a_client_past_max_connections_reads_the_refusal(tmp_path: Path) -> None:
    bus = victim_bus("memory", tmp_path, max_connections=3)
    async with hostile_server(tmp_path, bus) as server:
        held = [await raw_connection(server.address("victim")) for _ in range(3)]
        for attempt in range(20):
            reader, writer = await raw_connection(server.address("victim"))
            writer.write(line("ping", call_id=attempt))  # at once, before the refusal arrives
            raw = await asyncio.wait_for(reader.readline(), 5)  # a reset would raise here
            reply = json.loads(raw)
            assert reply["id"] is None and reply["error"]["code"] == -32005
            assert "too many connections (limit 3)" in reply["error"]["message"]
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        for _, writer in held:
            writer.close()
    assert_clean_log(server)


# -- authentication ----------------------------------------------------------------------


async def test_wrong_tokens_are_slow_and_the_fifth_closes(tmp_path: Path) -> None:
    bus = victim_bus("memory", tmp_path, auth_token_env="VICTIM_TOKEN")
    async with hostile_server(tmp_path, bus, env={"VICTIM_TOKEN": "right"}) as server:
        reader, writer = await raw_connection(server.address("victim"))
        started = time.monotonic()
        writer.write(
            b"".join(line("authenticate", {"token": f"guess-{i}"}, call_id=i) for i in range(3000))
        )
        replies = []
        async with asyncio.timeout(10):
            while raw := await reader.readline():
                replies.append(json.loads(raw))
        elapsed = time.monotonic() - started
        assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
        assert {r["error"]["code"] for r in replies} == {-32006}
        assert "5 wrong tokens, closing the connection" in replies[-1]["error"]["message"]
        assert elapsed >= 0.5  # five guesses, each answered no sooner than 100 ms
        writer.close()
    assert_clean_log(server)


async def test_a_connection_that_never_authenticates_is_closed_and_frees_its_slot(
    tmp_path: Path,
) -> None:
    bus = victim_bus(
        "memory", tmp_path, auth_token_env="VICTIM_TOKEN", auth_timeout_s=0.5, max_connections=1
    )
    async with hostile_server(tmp_path, bus, env={"VICTIM_TOKEN": "right"}) as server:
        reader, writer = await raw_connection(server.address("victim"))
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply["error"]["code"] == -32006
        assert "not authenticated within 0.5 s" in reply["error"]["message"]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        async with await connect(server.url("victim"), token="right") as client:
            assert await client.ping() == "pong"
    assert_clean_log(server)
