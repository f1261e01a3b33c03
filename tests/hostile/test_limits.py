"""Each limit of DESIGN.md §3 the review's table did not reach, against a real server process.

test_attacks.py repeats the attacks of the issue. These take the other limits
one at a time, as a client meets them: calls in flight, output a client does
not read, calls of a connection that is gone, subscriptions of both kinds,
the line limit's refusal, request ids and payload integers beyond int64. And
the two ways one connection still held hundreds of MB after the first round
of fixes: a thousand subscriptions replaying the log at once, and
notifications held for a slow connection bounded in count but not in size.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect

from .conftest import (
    RSS_GROWTH_BOUND_MB,
    HostileServer,
    RawConnect,
    assert_clean_log,
    assert_pings_answered,
    hostile_server,
    line,
    pinging,
    read_replies,
    sample_rss,
    victim_bus,
)

pytestmark = pytest.mark.slow

TOKEN_ENV = {"VICTIM_TOKEN": "right"}


async def fill(
    server: HostileServer, events: int, payload_bytes: int, *, per_call: int = 1000
) -> None:
    async with await connect(server.url("victim")) as client:
        payload = "x" * payload_bytes
        for start in range(0, events, per_call):
            batch = range(start, min(events, start + per_call))
            await client.emit_many(
                [{"topic": "fill", "payload": {"i": i, "s": payload}} for i in batch]
            )


async def stats(server: HostileServer, **connect_options: Any) -> dict[str, Any]:
    async with await connect(server.url("victim"), **connect_options) as client:
        return dict((await client.bus_info())["stats"])


# -- one connection's calls ----------------------------------------------------------------


async def test_at_max_inflight_the_next_request_is_not_read_until_a_call_is_answered(
    tmp_path: Path, raw: RawConnect
) -> None:
    bus = victim_bus("memory", tmp_path, auth_token_env="VICTIM_TOKEN", max_inflight=2)
    async with hostile_server(tmp_path, bus, env=TOKEN_ENV) as server:
        reader, writer = await raw(server.address("victim"))
        # Two wrong tokens take both slots (each answered after 100 ms, one at a time);
        # the ping behind them waits unread until the first is answered, then runs at once.
        writer.write(
            line("authenticate", {"token": "a"}, 1)
            + line("authenticate", {"token": "b"}, 2)
            + line("ping", call_id=3)
        )
        replies = await read_replies(reader, 3)
        assert [r["id"] for r in replies] == [1, 3, 2]
        assert replies[1]["result"] == "pong"
        writer.close()
    assert_clean_log(server)


async def test_calls_of_a_connection_that_is_gone_are_cancelled(
    tmp_path: Path, raw: RawConnect
) -> None:
    bus = victim_bus("memory", tmp_path, auth_token_env="VICTIM_TOKEN")
    async with hostile_server(tmp_path, bus, env=TOKEN_ENV) as server:
        _reader, writer = await raw(server.address("victim"))
        # Five wrong tokens: answered 100 ms apart, and the fifth would close the connection
        # (counted as closed_wrong_tokens). The client resets after the bus has read them.
        writer.write(
            b"".join(line("authenticate", {"token": f"guess-{i}"}, call_id=i) for i in range(5))
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
        await asyncio.sleep(1.0)  # twice what the five would take if they ran on
        after = await stats(server, token="right")
        assert after["closed_wrong_tokens"] == 0
        assert after["connections"] == 1  # the one asking
    assert_clean_log(server)


async def test_a_connection_over_max_output_bytes_for_write_timeout_s_is_closed(
    tmp_path: Path, raw: RawConnect
) -> None:
    bus = victim_bus(
        "memory", tmp_path, max_output_bytes=65_536, write_timeout_s=1, max_connections=2
    )
    async with hostile_server(tmp_path, bus) as server:
        await fill(server, 200, 10_000, per_call=50)
        _reader, writer = await raw(server.address("victim"))
        # 2,000 pages of 16 KiB (a quarter of max_output_bytes) and never a read: far more
        # than the kernel's buffers, so the bus holds output for it, and stops there.
        writer.write(
            b"".join(line("poll_events", {"limit": 10_000}, call_id=i) for i in range(2000))
        )
        started = time.monotonic()
        async with asyncio.timeout(20):
            while (await stats(server))["closed_not_reading"] == 0:
                await asyncio.sleep(0.2)
        assert time.monotonic() - started >= 1.0  # not before write_timeout_s
        # Its slot is free: max_connections is 2, and two clients get in.
        async with (
            await connect(server.url("victim")) as first,
            await connect(server.url("victim")) as second,
        ):
            assert [await first.ping(), await second.ping()] == ["pong", "pong"]
        writer.close()
    assert_clean_log(server)


async def test_the_emit_queue_is_bounded_in_bytes(tmp_path: Path, raw: RawConnect) -> None:
    """queue_size counts requests: 10,000 of 1 MB each were 10 GB waiting for the writer
    (twenty connections flooding SQLite took the server to 1.6 GB in 8 s). The queue
    takes max_queue_bytes of requests; past it, an emit is -32005, and the client retries."""
    bus = victim_bus("sqlite", tmp_path, max_queue_bytes=8 * 1_048_576)
    async with hostile_server(tmp_path, bus) as server:
        before = server.rss_mb()
        big = line("emit_event", {"topic": "big", "payload": "x" * 1_000_000}, call_id=1)
        codes: list[Any] = []

        async def flood() -> None:
            reader, writer = await raw(server.address("victim"), receive_buffer=65_536)
            for _ in range(150):  # each waits for the bus to read it (TCP back-pressure)
                writer.write(big)
                await writer.drain()
            for reply in await read_replies(reader, 150, timeout_s=60):
                codes.append(reply.get("error", {}).get("code", "ok"))
                if "error" in reply:
                    assert "max_queue_bytes" in reply["error"]["message"]
            writer.close()

        async with pinging(server) as monitors:
            flooding = asyncio.gather(*(flood() for _ in range(4)))
            worst = before
            while not flooding.done():
                await asyncio.sleep(0.1)
                worst = max(worst, server.rss_mb())
            await flooding
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        assert set(codes) <= {"ok", -32005} and len(codes) == 600
        async with await connect(server.url("victim")) as client:
            assert (await client.bus_info())["stats"]["emitted"] == codes.count("ok")
    assert_clean_log(server)


async def test_a_memory_bus_holds_at_most_memory_buffer_bytes_of_events(tmp_path: Path) -> None:
    """memory_buffer counts events: its 10,000 events of 1 MB would be 10 GB."""
    bus = victim_bus("memory", tmp_path, memory_buffer_bytes=16 * 1_048_576)
    async with hostile_server(tmp_path, bus) as server:
        before = server.rss_mb()
        async with pinging(server) as monitors, await connect(server.url("victim")) as victim:
            for i in range(300):  # 300 MB
                await victim.emit("big", {"i": i, "s": "x" * 1_000_000})
            worst = server.rss_mb()
            events, since = [], 0
            while page := (await victim.poll("big", since=since, limit=1000)).events:
                events += page
                since = page[-1].event_id
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        # The newest that fit in 16 MiB are kept, in order; the log's ids go on.
        assert [e.payload["i"] for e in events] == list(range(300 - len(events), 300))
        assert 10 <= len(events) <= 16
    assert_clean_log(server)


# -- subscriptions -------------------------------------------------------------------------


async def test_event_and_firing_subscriptions_count_together_against_max_subscriptions(
    tmp_path: Path, raw: RawConnect
) -> None:
    bus = victim_bus("memory", tmp_path, enable_rules=True, max_subscriptions=2)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw(server.address("victim"))
        writer.write(
            line("subscribe_topic", {"topic": "a"}, 1)
            + line("subscribe_firings", {}, 2)
            + line("subscribe_firings", {}, 3)
            + line("subscribe_topic", {"topic": "b"}, 4)
        )
        by_id = {r["id"]: r for r in await read_replies(reader, 4)}
        assert "result" in by_id[1] and "result" in by_id[2]
        for refused in (by_id[3], by_id[4]):
            assert refused["error"]["code"] == -32005
            assert (
                "holds 2 subscriptions, the limit (max_subscriptions)"
                in refused["error"]["message"]
            )
        # One ends: room for one more, of either kind.
        writer.write(line("unsubscribe", {"subscription": by_id[1]["result"]["subscription"]}, 5))
        writer.write(line("subscribe_firings", {}, 6) + line("subscribe_topic", {"topic": "c"}, 7))
        by_id = {r["id"]: r for r in await read_replies(reader, 3)}
        assert by_id[5]["result"] == {"ok": True} and "result" in by_id[6]
        assert by_id[7]["error"]["code"] == -32005
        writer.close()
    assert_clean_log(server)


async def test_a_thousand_replaying_subscriptions_that_are_never_read_stay_bounded(
    storage_kind: str, tmp_path: Path, raw: RawConnect
) -> None:
    """Each replay read its own page of the log (up to 8 MiB) and wrote all of it out
    before its connection could pause: one connection, 1.2 GB (SQLite) to 1.6 GB (memory)."""
    async with hostile_server(tmp_path, victim_bus(storage_kind, tmp_path)) as server:
        await fill(server, 2000, 1000)
        before = server.rss_mb()
        _reader, writer = await raw(server.address("victim"))
        writer.write(
            b"".join(
                line("subscribe_topic", {"topic": ">", "since": 0}, call_id=i) for i in range(1000)
            )
        )
        async with pinging(server) as monitors:
            worst = await sample_rss(server, 4.0)
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        writer.transport.abort()
        async with pinging(server) as monitors:
            await asyncio.sleep(0.5)
        assert_pings_answered(monitors)
    assert_clean_log(server)


async def many_rules(server: HostileServer, raw: RawConnect) -> None:
    """1,000 rules of 20 KB each: list_rules answers 20 MB."""
    reader, writer = await raw(server.address("victim"), receive_buffer=65_536)
    action = {"type": "EmitEvent", "topic": "o", "payload": {"pad": "x" * 20_000}}
    for start in range(0, 1000, 100):
        writer.write(
            b"".join(
                line("register_rule", {"id": f"r{i}", "topic": f"t{i}", "action": action}, i)
                for i in range(start, start + 100)
            )
        )
        assert all("result" in reply for reply in await read_replies(reader, 100))
    writer.close()


async def many_topics(server: HostileServer, raw: RawConnect) -> None:
    """100,000 topics of 200 characters: list_topics answers 25 MB."""
    async with await connect(server.url("victim")) as client:
        for start in range(0, 100_000, 2000):
            await client.emit_many(
                [{"topic": f"t{i}." + "x" * 190, "payload": 1} for i in range(start, start + 2000)]
            )


@pytest.mark.parametrize(
    ("method", "make"), [("list_rules", many_rules), ("list_topics", many_topics)]
)
async def test_pipelined_unpaged_lists_that_are_never_read_stay_bounded(
    tmp_path: Path, method: str, make: Any, raw: RawConnect
) -> None:
    """Neither has a cursor to page by, and each call built its whole reply: 200 unread
    list_rules over 20 MB of rules took the server past 2.5 GB, list_topics to 1 GB."""
    async with hostile_server(
        tmp_path, victim_bus("sqlite", tmp_path, enable_rules=True)
    ) as server:
        await make(server, raw)
        before = server.rss_mb()
        _reader, writer = await raw(server.address("victim"))
        writer.write(b"".join(line(method, {}, call_id=i) for i in range(200)))
        async with pinging(server) as monitors:
            worst = await sample_rss(server, 4.0)
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        writer.transport.abort()
    assert_clean_log(server)


async def read_until_lagged(
    reader: asyncio.StreamReader, method: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `method` notifications before `lagged`, and the lagged notification's params."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while True:
            message = json.loads(await reader.readline())
            if message.get("method") == method:
                received.append(message["params"])
            elif message.get("method") == "lagged":
                return received, message["params"]


async def test_events_held_for_a_slow_connection_are_bounded_in_bytes(
    tmp_path: Path, raw: RawConnect
) -> None:
    """subscriber_buffer (10,000 events) alone let one subscription hold 10,000 events
    of up to 1 MiB each: the bytes held for a connection are bounded by max_output_bytes."""
    bus = victim_bus("memory", tmp_path, memory_buffer=100, max_output_bytes=1_048_576)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw(server.address("victim"), line_limit=1_048_576)
        writer.write(line("subscribe_topic", {"topic": "big"}, 1))
        [subscribed] = await read_replies(reader, 1)
        before = server.rss_mb()
        async with pinging(server) as monitors, await connect(server.url("victim")) as victim:
            for start in range(0, 2000, 5):  # 200 MB in 100 KB events, 500 KB a request
                await victim.emit_many(
                    [
                        {"topic": "big", "payload": {"i": i, "s": "x" * 100_000}}
                        for i in range(start, start + 5)
                    ]
                )
            worst = server.rss_mb()
        assert_pings_answered(monitors)
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        received, lagged = await read_until_lagged(reader, "event")
        assert lagged["subscription"] == subscribed["result"]["subscription"]
        # Dropped a few MiB behind (what is held, the transport's buffer and the kernel's socket
        # buffers), not 10,000 events behind (with a count alone it never lagged here).
        assert len(received) < 1000
        assert lagged["resume_since"] == received[-1]["event"]["event_id"]
        writer.close()
    assert_clean_log(server)


async def test_firings_held_for_a_slow_connection_are_bounded_in_bytes(
    tmp_path: Path, raw: RawConnect
) -> None:
    """The same bound for `subscribe_firings`: an unread firing subscription held 10,000
    finished firings with their results (bench.hostile attack 9: RSS +100 MB)."""
    echo = {
        "match": "trn:user:test:python:echo:*",
        "kind": "python",
        "function": "tests.rules.python_tools:echo",
    }
    bus = victim_bus(
        "memory", tmp_path, enable_rules=True, max_output_bytes=1_048_576, tools=[echo]
    )
    async with hostile_server(tmp_path, bus) as server:
        async with await connect(server.url("victim")) as victim:
            # Each firing's result carries the event's 64 KB payload, and so does its rule_fired.
            action = {
                "type": "InvokeTool",
                "tool_id": "trn:user:test:python:echo:v1",
                "input": "{{ $.payload }}",
            }
            await victim.register_rule({"id": "echo", "topic": "in", "action": action})
            reader, writer = await raw(server.address("victim"), line_limit=1_048_576)
            writer.write(line("subscribe_firings", {}, 1))
            [subscribed] = await read_replies(reader, 1)
            before = server.rss_mb()
            for start in range(0, 300, 10):
                await victim.emit_many(
                    [
                        {"topic": "in", "payload": {"i": i, "s": "x" * 64_000}}
                        for i in range(start, start + 10)
                    ]
                )
            async with asyncio.timeout(30):
                while (await victim.bus_info())["stats"]["firings"]["ok"] < 300:
                    await asyncio.sleep(0.05)
            worst = server.rss_mb()
            assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
            received, lagged = await read_until_lagged(reader, "rule_fired")
            assert lagged["subscription"] == subscribed["result"]["subscription"]
            assert len(received) < 300  # it lagged before the last; by count alone it never would
            # Nothing is lost: what it missed is listed after resume_since (a page at a time:
            # a page is bounded in bytes too).
            listed, since = set(), lagged["resume_since"]
            while page := await victim.list_firings(since=since, limit=1000):
                listed |= {firing["firing_id"] for firing in page}
                since = page[-1]["firing_id"]
            assert listed | {firing["firing_id"] for firing in received} == set(range(1, 301))
            writer.close()
    assert_clean_log(server)


# -- refusals the client reads ---------------------------------------------------------------


async def test_a_line_over_max_message_bytes_is_refused_with_a_line_the_client_reads(
    tmp_path: Path, raw: RawConnect
) -> None:
    bus = victim_bus("memory", tmp_path, max_message_bytes=4096)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw(server.address("victim"), receive_buffer=65_536)
        # A 1 MiB line written whole: the bus refuses it after its first 4 KiB while the
        # rest still arrives. Closing on that unread input would reset the connection.
        writer.write(
            b'{"jsonrpc":"2.0","method":"ping","id":1,"pad":"' + b"x" * 1_048_576 + b'"}\n'
        )
        raw = await asyncio.wait_for(reader.readline(), 10)  # a reset would raise here
        assert json.loads(raw) == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32007, "message": "message too large: a line exceeded 4096 bytes"},
        }
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    assert_clean_log(server)


# -- integers beyond int64 -------------------------------------------------------------------

INVALID_ID = {"code": -32600, "message": 'invalid request: an integer "id" must be within int64'}


async def test_request_ids_beyond_int64_are_invalid_requests(
    tmp_path: Path, raw: RawConnect
) -> None:
    async with hostile_server(tmp_path, victim_bus("memory", tmp_path)) as server:
        reader, writer = await raw(server.address("victim"))
        for raw_id in (
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551615",
            b"18446744073709551616",
            b"1" * 60,
        ):
            writer.write(b'{"jsonrpc":"2.0","method":"ping","id":' + raw_id + b"}\n")
            [reply] = await read_replies(reader, 1)
            assert reply == {"jsonrpc": "2.0", "id": None, "error": INVALID_ID}, raw_id
        # In a batch, each item alone: the ids at the edges of int64 are echoed exactly.
        writer.write(
            b'[{"jsonrpc":"2.0","method":"ping","id":9223372036854775807},'
            b'{"jsonrpc":"2.0","method":"ping","id":9223372036854775808},'
            b'{"jsonrpc":"2.0","method":"ping","id":-9223372036854775808}]\n'
        )
        batch = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert sorted(batch, key=lambda r: (r["id"] is None, r["id"] or 0)) == [
            {"jsonrpc": "2.0", "id": -(2**63), "result": "pong"},
            {"jsonrpc": "2.0", "id": 2**63 - 1, "result": "pong"},
            {"jsonrpc": "2.0", "id": None, "error": INVALID_ID},
        ]
        writer.close()
    assert_clean_log(server)


EXACT = {
    "u64_max": 2**64 - 1,
    "i64_min": -(2**63),
    "past_i64": 2**63,
    "list": [2**63 - 1, -1, 0, 2**64 - 2],
}


async def test_payload_integers_are_kept_exactly_or_refused_naming_their_place(
    storage_kind: str, tmp_path: Path, raw: RawConnect
) -> None:
    """docs/protocol.md: integers in payload and metadata are kept exactly from -2^63 to
    2^64-1 (stored, polled, pushed, and copied by a rule's template), and refused beyond,
    never turned into floats."""
    bus = victim_bus(storage_kind, tmp_path, enable_rules=True)
    async with hostile_server(tmp_path, bus) as server:
        reader, writer = await raw(server.address("victim"), receive_buffer=65_536)
        copy = {"type": "EmitEvent", "topic": "copied", "payload": "{{ $.payload }}"}
        writer.write(line("register_rule", {"id": "copy", "topic": "ints", "action": copy}, "rule"))
        writer.write(line("subscribe_topic", {"topic": "ints"}, "sub"))
        await read_replies(reader, 2)
        writer.write(
            line(
                "emit_event",
                {"topic": "ints", "payload": EXACT, "metadata": {"m": 2**64 - 1}},
                "emit",
            )
        )
        pushed: dict[str, Any] | None = None
        emitted: dict[str, Any] | None = None
        async with asyncio.timeout(10):
            while pushed is None or emitted is None:
                message = json.loads(await reader.readline())  # the json module keeps every integer
                if message.get("method") == "event":
                    pushed = message["params"]["event"]
                elif message.get("id") == "emit":
                    emitted = message
        assert (pushed["payload"], pushed["metadata"]) == (EXACT, {"m": 2**64 - 1})

        async def poll(topic: str) -> list[dict[str, Any]]:
            writer.write(line("poll_events", {"topic": topic}, f"poll-{topic}"))
            [reply] = await read_replies(reader, 1)
            return list(reply["result"]["events"])

        [stored] = await poll("ints")
        assert (stored["payload"], stored["metadata"]) == (EXACT, {"m": 2**64 - 1})
        async with asyncio.timeout(10):
            while not (copied := await poll("copied")):
                await asyncio.sleep(0.05)
        assert copied[0]["payload"] == EXACT

        refusals = [
            (
                {"payload": {"n": [1, 2**64]}},
                "payload.n[1]",
                "integer 18446744073709551616 is outside",
            ),
            (
                {"payload": {"n": -(2**63) - 1}},
                "payload.n",
                "integer -9223372036854775809 is outside",
            ),
            ({"payload": 1, "metadata": {"m": 10**41}}, "metadata.m", "with more than 40 digits"),
        ]
        for index, (params, loc, msg) in enumerate(refusals):
            writer.write(line("emit_event", {"topic": "ints", **params}, index))
            [reply] = await read_replies(reader, 1)
            assert reply["error"]["code"] == -32602
            assert (
                reply["error"]["data"][0]["loc"] == loc and msg in reply["error"]["data"][0]["msg"]
            )
        assert len(await poll("ints")) == 1  # nothing more was stored
        writer.close()
    assert_clean_log(server)


# -- what one rule may make of one event -------------------------------------------------------


async def test_an_action_that_multiplies_its_event_fails_its_firing_and_stores_nothing(
    tmp_path: Path, raw: RawConnect
) -> None:
    """A template names `$.payload` 100 times: a 50 KB event would make a 5 MB event
    (2,000 names stored 100 MB; a 1 MiB rule of them, 60 GB). A rule makes no larger
    event than a client may send (max_message_bytes); the firing fails, nothing is built."""
    async with hostile_server(
        tmp_path, victim_bus("sqlite", tmp_path, enable_rules=True)
    ) as server:
        async with await connect(server.url("victim")) as victim:
            copies = {"type": "EmitEvent", "topic": "copies", "payload": ["{{ $.payload }}"] * 100}
            await victim.register_rule({"id": "copies", "topic": "in", "action": copies})
            before = server.rss_mb()
            async with pinging(server) as monitors:
                for _ in range(20):
                    await victim.emit("in", "x" * 50_000)
                async with asyncio.timeout(30):
                    while (await victim.bus_info())["stats"]["firings"]["failed"] < 20:
                        await asyncio.sleep(0.05)
            assert_pings_answered(monitors)
            assert server.rss_mb() - before < RSS_GROWTH_BOUND_MB
            firings = await victim.list_firings()
            assert {f["status"] for f in firings} == {"failed"} and len(firings) == 20
            assert firings[0]["error"] == (
                f"the action rendered for event {firings[0]['event_id']} is too large:"
                " it renders to more than 1048576 bytes as JSON (max_message_bytes)"
            )
            assert (await victim.poll("copies")).events == []
            # test_rule says the same for the same event.
            reader, writer = await raw(server.address("victim"), receive_buffer=65_536)
            writer.write(
                line(
                    "test_rule",
                    {"rule_id": "copies", "event": {"topic": "in", "payload": "x" * 50_000}},
                    1,
                )
            )
            [reply] = await read_replies(reader, 1)
            assert reply["error"]["code"] == -32602 and reply["error"]["data"][0]["loc"] == "event"
            assert "too large" in reply["error"]["message"]
            writer.close()
    assert (
        tmp_path / "victim.db"
    ).stat().st_size < 2_000_000  # the 20 causes: 1 MB; one copy would be 5 MB
    assert_clean_log(server)


async def test_an_action_naming_more_than_100_paths_is_refused(
    tmp_path: Path, raw: RawConnect
) -> None:
    async with hostile_server(
        tmp_path, victim_bus("memory", tmp_path, enable_rules=True)
    ) as server:
        reader, writer = await raw(server.address("victim"))
        # Each path is compiled when the rule is registered: 60,000 `..` paths held the loop 21 s.
        payload = {f"k{i}": f"{{{{ $..a{i} }}}}" for i in range(101)}
        action = {"type": "EmitEvent", "topic": "o", "payload": payload}
        writer.write(line("register_rule", {"id": "many", "topic": "in", "action": action}, 1))
        [reply] = await read_replies(reader, 1)
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"] == [
            {"loc": "action.payload", "msg": "names more than 100 paths in {{ … }} placeholders"}
        ]
        writer.close()
    assert_clean_log(server)


async def test_template_paths_that_walk_the_whole_event_render_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """`{{ $..marker }}` visits every node of the event: 0.35 s over 100,000 numbers.
    Twenty of them rendered on the event loop held every bus of the process 7 s."""
    async with hostile_server(
        tmp_path, victim_bus("memory", tmp_path, enable_rules=True)
    ) as server:
        async with await connect(server.url("victim")) as victim:
            payload = {f"m{i}": "{{ $..marker }}" for i in range(20)}
            await victim.register_rule(
                {
                    "id": "walk",
                    "topic": "in",
                    "action": {"type": "EmitEvent", "topic": "out", "payload": payload},
                }
            )
            async with pinging(server) as monitors:
                await victim.emit("in", {"marker": "here", "numbers": list(range(100_000))})
                async with asyncio.timeout(60):
                    while not (rendered := (await victim.poll("out")).events):
                        await asyncio.sleep(0.05)
            assert_pings_answered(monitors)
            assert rendered[0].payload == {f"m{i}": "here" for i in range(20)}
    assert_clean_log(server)
