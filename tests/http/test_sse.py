"""GET /events: Server-Sent Events through fan-out, gapless, resumable, bounded (DESIGN §14)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from eventbus_client import connect
from tests.http.conftest import http_app, http_bus, http_client, stuck_reader, subscribed


async def frames(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """SSE frames as `{"id", "event", "data"}` (comments skipped)."""
    frame: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            frame[name] = orjson.loads(value) if name == "data" else value


async def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        async for frame in frames(response):
            got.append(frame)
            if len(got) == count:
                break
    return got


async def test_events_arrive_as_sse_frames_with_their_ids(tmp_path: Path) -> None:
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        async with await connect(app.url("web")) as bus:
            await bus.emit("other.topic", {"skip": True})
            async with http.stream("GET", "/events", params={"topic": "orders.*"}) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                for n in range(3):
                    await bus.emit(f"orders.n{n}", {"n": n}, source_trn="trn:user:alice:cli")
                got = await read_events(response, 3)
    assert [f["event"] for f in got] == ["event"] * 3
    assert [int(f["id"]) for f in got] == [f["data"]["event_id"] for f in got] == [2, 3, 4]
    assert [f["data"]["payload"] for f in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert got[0]["data"]["source_trn"] == "trn:user:alice:cli"


async def test_last_event_id_resumes_across_a_restart_with_no_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    bus_config = http_bus(persist=True, storage_path=str(tmp_path / "web.db"))
    async with http_app(tmp_path, bus_config) as app:
        async with await connect(app.url("web")) as bus:
            await bus.emit_many([{"topic": "t.a", "payload": n} for n in range(5)])
        async with (
            http_client(app) as http,
            http.stream("GET", "/events", params={"since": "0"}) as response,
        ):
            first = await read_events(response, 3)
    last_seen = first[-1]["id"]
    async with http_app(tmp_path, bus_config) as app:  # a new process's worth: new ports, same log
        async with await connect(app.url("web")) as bus:
            await bus.emit_many([{"topic": "t.a", "payload": n} for n in range(5, 8)])
        async with http_client(app) as http:
            headers = {"last-event-id": last_seen}
            async with http.stream(
                "GET", "/events", params={"since": "0"}, headers=headers
            ) as response:
                rest = await read_events(response, 5)
    ids = [int(f["id"]) for f in first + rest]
    assert ids == list(range(1, 9))
    assert [f["data"]["payload"] for f in first + rest] == list(range(8))


async def test_a_bad_query_is_a_400_naming_the_parameter(tmp_path: Path) -> None:
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        bad_topic = await http.get("/events", params={"topic": "a..b"})
        bad_since = await http.get("/events", headers={"last-event-id": "x1"})
        huge = await http.get("/events", params={"since": str(2**64)})
    assert bad_topic.status_code == 400 and bad_topic.json()["error"]["data"][0]["loc"] == "topic"
    assert (
        bad_since.status_code == 400
        and bad_since.json()["error"]["data"][0]["loc"] == "Last-Event-ID"
    )
    assert huge.status_code == 400 and huge.json()["error"]["data"][0]["loc"] == "since"


async def test_a_reader_that_never_reads_gets_lagged_and_the_stream_ends(tmp_path: Path) -> None:
    bus_config = http_bus(subscriber_buffer=50, max_output_bytes=65_536, write_timeout_s=1)
    async with http_app(tmp_path, bus_config) as app:
        host, port = app.http_url("web").removeprefix("http://").split(":")
        stuck = stuck_reader((host, int(port)), b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
        web = app.buses["web"]
        await subscribed(app)
        async with await connect(app.url("web")) as bus:
            payload = "x" * 2000
            for _ in range(20):
                await bus.emit_many([{"topic": "flood", "payload": payload} for _ in range(100)])
                if web.info()["stats"]["lagged"]:
                    break
        stats = web.info()["stats"]
        assert stats["lagged"] == 1 and stats["subscriptions"] == 0
        # Reading now, the client finds the lagged frame at the end of what was held for it.
        stuck.setblocking(False)
        received = b""
        async with asyncio.timeout(10):
            while not received.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end
                try:
                    chunk = stuck.recv(65536)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                if not chunk:
                    break
                received += chunk
        stuck.close()
    # The stream ends with the lagged frame: resume from there (its event ids are gapless up to it).
    last = received.rsplit(b"event: lagged\ndata: ", 1)
    assert len(last) == 2
    resume_since = orjson.loads(last[1].split(b"\n", 1)[0])["resume_since"]
    assert f"id: {resume_since}\n".encode() in last[0]
    assert b"id: %d\n" % (resume_since + 1) not in received


async def test_health_and_readiness(tmp_path: Path) -> None:
    async with (
        http_app(tmp_path, http_bus(persist=True, storage_path=str(tmp_path / "w.db"))) as app,
        http_client(app) as http,
    ):
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
        await app.buses["web"].storage.close()  # storage gone under a running bus
        not_ready = await http.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "bus": "web"}
    assert ready.status_code == 200
    assert not_ready.status_code == 503 and "storage" in not_ready.json()["reason"]


async def test_shutdown_ends_open_streams(tmp_path: Path) -> None:
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        async with http.stream("GET", "/events") as response:
            await subscribed(app)
            started = asyncio.get_running_loop().time()
            shutting = asyncio.ensure_future(app.shutdown())
            async with asyncio.timeout(5):
                async for _ in response.aiter_bytes():
                    pass  # the server ends the response
            await shutting
            assert asyncio.get_running_loop().time() - started < 3
