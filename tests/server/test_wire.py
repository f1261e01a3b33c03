"""JSON-RPC 2.0 over the wire, byte for byte, against a real server (raw sockets)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.wire import RawPeer


@pytest.fixture
async def peer(app: EventBusApp):
    peer = await RawPeer.open(app.address("test"))
    try:
        yield peer
    finally:
        await peer.close()


async def test_ping(peer: RawPeer) -> None:
    assert await peer.call("ping") == {"jsonrpc": "2.0", "id": 1, "result": "pong"}


@pytest.mark.parametrize("call_id", [0, None, "", "abc", -7, 1.5, 10**15])
async def test_id_of_any_json_type_is_echoed_verbatim(peer: RawPeer, call_id: object) -> None:
    reply = await peer.call("ping", call_id=call_id)
    assert reply["id"] == call_id and type(reply["id"]) is type(call_id)


async def test_parse_error_has_null_id_and_keeps_the_connection(peer: RawPeer) -> None:
    await peer.send(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]\n')
    reply = await peer.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32700
    assert (await peer.call("ping"))["result"] == "pong"


async def test_empty_batch_is_one_invalid_request_object(peer: RawPeer) -> None:
    await peer.send(b"[]\n")
    reply = await peer.recv()
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32600 and reply["id"] is None


async def test_batch_of_garbage_gets_one_error_per_item(peer: RawPeer) -> None:
    await peer.send(b"[1,2,3]\n")
    replies = await peer.recv()
    assert [r["error"]["code"] for r in replies] == [-32600] * 3


async def test_invalid_request_object(peer: RawPeer) -> None:
    await peer.send({"jsonrpc": "2.0", "method": 1, "params": "bar"})
    reply = await peer.recv()
    assert reply["error"]["code"] == -32600 and reply["id"] is None


async def test_spec_mixed_batch(peer: RawPeer) -> None:
    # JSON-RPC 2.0 spec §7, "rpc call Batch", with our methods.
    await peer.send(
        [
            {"jsonrpc": "2.0", "method": "ping", "id": "1"},
            {"jsonrpc": "2.0", "method": "ping", "params": {}},
            {"jsonrpc": "2.0", "method": "bus_info", "params": {}, "id": "2"},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
            {"jsonrpc": "2.0", "method": "list_topics", "id": "9"},
        ]
    )
    replies = await peer.recv()
    by_id = {r["id"]: r for r in replies}
    assert len(replies) == 5
    assert by_id["1"]["result"] == "pong"
    assert by_id["2"]["result"]["id"] == "test"
    assert by_id[None]["error"]["code"] == -32600
    assert by_id["5"]["error"]["code"] == -32601
    assert "topics" in by_id["9"]["result"]


async def test_notifications_get_no_reply_also_in_batches(peer: RawPeer) -> None:
    await peer.send({"jsonrpc": "2.0", "method": "ping"})
    await peer.send({"jsonrpc": "2.0", "method": "no_such_method"})
    await peer.send(
        [{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "ping", "params": {}}]
    )
    await peer.expect_only("after")


async def test_notification_emit_is_still_stored(
    peer: RawPeer, app: EventBusApp, unique_topic: str
) -> None:
    await peer.send(
        {"jsonrpc": "2.0", "method": "emit_event", "params": {"topic": unique_topic, "payload": 1}}
    )
    await peer.expect_only("after")
    await app.buses["test"].wait_idle()
    reply = await peer.call("poll_events", {"topic": unique_topic})
    assert [e["payload"] for e in reply["result"]["events"]] == [1]


async def test_params_by_position_are_invalid_params(peer: RawPeer) -> None:
    reply = await peer.call("poll_events", ["topic"])
    assert reply["error"]["code"] == -32602
    assert "by name" in reply["error"]["message"]


async def test_missing_params_and_empty_object_both_work_for_no_param_methods(
    peer: RawPeer,
) -> None:
    assert (await peer.call("bus_info"))["result"]["id"] == "test"
    assert (await peer.call("bus_info", {}))["result"]["id"] == "test"


async def test_unknown_param_is_rejected_with_its_location(peer: RawPeer) -> None:
    reply = await peer.call("poll_events", {"topik": "a"})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"] == [{"loc": "topik", "msg": "Extra inputs are not permitted"}]


async def test_validation_errors_name_the_event_in_a_batch(peer: RawPeer) -> None:
    reply = await peer.call("emit_events", {"events": [{"topic": "ok"}, {"topic": "bad topic"}]})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"][0]["loc"] == "events[1].topic"
    assert "token 1" in reply["error"]["data"][0]["msg"]


async def test_pipelined_requests_are_all_answered(peer: RawPeer, unique_topic: str) -> None:
    lines = b"".join(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "emit_event",
                "params": {"topic": unique_topic, "payload": i},
                "id": i,
            }
        ).encode()
        + b"\n"
        for i in range(200)
    )
    await peer.send(lines)
    replies = [await peer.recv() for _ in range(200)]
    assert sorted(r["id"] for r in replies) == list(range(200))
    ids_by_call = {r["id"]: r["result"]["event_id"] for r in replies}
    # Emits on one connection are stored in the order they were sent.
    assert [ids_by_call[i] for i in range(200)] == sorted(ids_by_call.values())


async def test_request_then_half_close_is_still_answered(app: EventBusApp) -> None:
    peer = await RawPeer.open(app.address("test"))
    await peer.send({"jsonrpc": "2.0", "method": "ping", "id": 7})
    peer.writer.write_eof()
    assert await peer.recv() == {"jsonrpc": "2.0", "id": 7, "result": "pong"}
    assert await peer.closed_by_peer()
    await peer.close()


async def test_unterminated_last_line_before_half_close_is_answered(app: EventBusApp) -> None:
    peer = await RawPeer.open(app.address("test"))
    await peer.send(b'{"jsonrpc":"2.0","method":"ping","id":8}')
    peer.writer.write_eof()
    assert (await peer.recv())["id"] == 8
    await peer.close()


async def test_crlf_line_endings_are_accepted(peer: RawPeer) -> None:
    await peer.send(b'{"jsonrpc":"2.0","method":"ping","id":3}\r\n')
    assert (await peer.recv())["result"] == "pong"


async def test_over_long_line_gets_32007_and_close_other_connections_unaffected(
    tmp_path: Path,
) -> None:
    async with start_buses(tmp_path, {"id": "small", "max_message_bytes": 4096}) as app:
        bystander = await RawPeer.open(app.address("small"))
        offender = await RawPeer.open(app.address("small"))
        await offender.send(
            b'{"jsonrpc":"2.0","method":"ping","id":1,"x":"' + b"a" * 10_000 + b'"}\n'
        )
        reply = await offender.recv()
        assert reply["error"]["code"] == -32007 and reply["id"] is None
        assert await offender.closed_by_peer()
        assert (await bystander.call("ping"))["result"] == "pong"
        await offender.close()
        await bystander.close()


async def test_garbage_does_not_affect_other_connections(peer: RawPeer, app: EventBusApp) -> None:
    other = await RawPeer.open(app.address("test"))
    await other.send(b"\xff\xfe garbage \x00\n")
    assert (await other.recv())["error"]["code"] == -32700
    assert (await peer.call("ping"))["result"] == "pong"
    await other.close()


async def test_max_connections(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "tiny", "max_connections": 2}) as app:
        first = await RawPeer.open(app.address("tiny"))
        second = await RawPeer.open(app.address("tiny"))
        assert (await first.call("ping"))["result"] == "pong"
        assert (await second.call("ping"))["result"] == "pong"
        third = await RawPeer.open(app.address("tiny"))
        reply = await third.recv()
        assert (
            reply["error"]["code"] == -32005 and "too many connections" in reply["error"]["message"]
        )
        assert await third.closed_by_peer()
        await first.close()
        await asyncio.wait_for(
            _until(lambda: app.buses["tiny"].info()["stats"]["connections"] == 1), 5
        )
        fourth = await RawPeer.open(app.address("tiny"))
        assert (await fourth.call("ping"))["result"] == "pong"
        for p in (second, third, fourth):
            await p.close()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
