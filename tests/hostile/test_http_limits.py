"""The HTTP side under attack (DESIGN §3, §14): streams nobody reads, bodies too large
or never sent. Each bounded, each refused with an answer, other clients unharmed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from eventbus_client import connect
from tests.hostile.conftest import (
    HostileServer,
    assert_pings_answered,
    hostile_server,
    pinging,
    raw_connection,
    victim_bus,
)

#: Twenty stuck streams, each holding at most its buffer: well under this.
RSS_GROWTH_BOUND_MB = 80


def http_address(server: HostileServer) -> tuple[str, int]:
    for line in server.log:
        match = re.search(r"bus=victim http=http://127\.0\.0\.1:(\d+)", line)
        if match:
            return "127.0.0.1", int(match.group(1))
    raise AssertionError("no http line in the log")


async def test_event_streams_that_are_never_read_lag_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    bus = victim_bus(
        "sqlite",
        tmp_path,
        subscriber_buffer=200,
        max_output_bytes=65_536,
        http={"listen": "127.0.0.1:0"},
    )
    async with hostile_server(tmp_path, bus) as server:
        address = http_address(server)
        before = server.rss_mb()
        stuck = []
        for _ in range(20):
            reader, writer = await raw_connection(address)
            writer.write(b"GET /events HTTP/1.1\r\nhost: victim\r\n\r\n")
            stuck.append((reader, writer))
        async with pinging(server) as monitors, await connect(server.url("victim")) as victim:
            async with asyncio.timeout(10):
                while (await victim.bus_info())["stats"]["subscriptions"] < 20:
                    await asyncio.sleep(0.02)
            worst = before
            for batch in range(60):
                await victim.emit_many(
                    [
                        {"topic": "v", "payload": {"batch": batch, "blob": "x" * 4000}}
                        for _ in range(100)
                    ]
                )
                worst = max(worst, server.rss_mb())
                if (await victim.bus_info())["stats"]["lagged"] == 20:
                    break
            stats = (await victim.bus_info())["stats"]
        assert_pings_answered(monitors)
        assert stats["lagged"] == 20 and stats["subscriptions"] == 0, stats
        assert worst - before < RSS_GROWTH_BOUND_MB, f"RSS {before:.0f} → {worst:.0f} MB"
        for _, writer in stuck:
            writer.close()
    assert not [line for line in server.log if "Traceback" in line or " ERROR " in line]


async def test_bodies_too_large_or_never_sent_are_refused(tmp_path: Path) -> None:
    bus = victim_bus(
        "memory",
        tmp_path,
        read_timeout_s=1,
        http={"listen": "127.0.0.1:0", "max_body_bytes": 65_536},
    )
    async with hostile_server(tmp_path, bus) as server:
        host, port = http_address(server)
        before = server.rss_mb()

        async def endless() -> object:
            for _ in range(50 * 16):  # 50 MiB, never all read
                yield b"x" * 65_536

        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", trust_env=False, timeout=10
        ) as http:
            headers = {"content-type": "application/cloudevents+json"}
            try:
                answer = await http.post("/events", content=endless(), headers=headers)  # type: ignore[arg-type]
                status = answer.status_code
            except httpx.HTTPError:
                status = 413  # the server answered and closed before the body was sent
            told = await http.post("/events", content=b"x" * 70_000, headers=headers)
        assert status == 413
        assert (
            told.status_code == 413 and "larger than the limit" in told.json()["error"]["message"]
        )
        reader, writer = await raw_connection((host, port))
        writer.write(
            b"POST /events HTTP/1.1\r\nhost: v\r\ncontent-type: application/cloudevents+json\r\ncontent-length: 100\r\n\r\n{"
        )
        async with asyncio.timeout(5):
            head = await reader.readline()
        assert b" 400 " in head  # read_timeout_s, like a partial line on the TCP side
        writer.close()
        # A request head that never ends: refused at 64 KiB, not held.
        reader, writer = await raw_connection((host, port))
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: v\r\n")
        try:
            for n in range(2_000):
                writer.write(b"x-junk-%d: %s\r\n" % (n, b"a" * 1000))
                await writer.drain()
        except ConnectionError:
            pass  # answered and closed before all of it was sent
        try:
            async with asyncio.timeout(5):
                head = await reader.readline()
        except ConnectionError:
            # Closed with our junk unread: the kernel may drop the 400 it sent, and a write of
            # ours that was still queued fails with EPIPE, which the reader then raises.
            head = b"reset"
        assert b" 400 " in head or head in (b"", b"reset")
        writer.close()
        assert server.rss_mb() - before < 30
