"""The HTTP side (DESIGN §14) against the TCP path, in the same run.

    .venv/bin/python -m bench.http [--baseline-python /work/main/.venv/bin/python] [--rounds 5] [--no-record]

1. CloudEvents POST throughput, one request at a time (binary mode, keep-alive)
   and batched (application/cloudevents-batch+json, 100 a request), against
   `emit` one at a time and `emit_many` of 100 over TCP, on one bus process
   (memory storage: the commit is not what is measured).
2. Delivery latency: one producer emits at a steady rate over TCP; an SSE
   reader (`GET /events`, httpx streaming) and a TCP subscriber read the same
   events at once; latency is receive time minus the send time stamped in
   the payload (one clock: same process).
3. The cost of /metrics on emit throughput: pipelined emits (100 in flight)
   for a fixed count, on servers that run at once: with http, scraped every
   second; with http, never scraped; without http; and with
   `--baseline-python`, that interpreter's eventbus (main's venv: no counting
   hooks on the emit path at all). `--rounds` rounds, each running the arms
   in a rotated order; reported as the median of the per-round ratios.

The machine is shared: run it interleaved, read ratios, not absolutes.
Prints a table and appends it to bench/RESULTS.md unless `--no-record`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from eventbus_client import EventBusClient, connect

from ._common import format_table, measure_rate, percentiles_ms, record_results, run

LISTEN_RE = re.compile(r"bus=bench listen=\S+:(\d+)")
HTTP_RE = re.compile(r"bus=bench http=(http://\S+)")
BATCH = 100
LATENCY_RATE = 1000
LATENCY_SECONDS = 3.0
PIPELINE_DEPTH = 100
METRICS_COUNT = 20_000


@contextlib.asynccontextmanager
async def bus_process(python: str, *, http: bool = True) -> AsyncIterator[tuple[str, str | None]]:
    """A memory bus in its own process (`python -m eventbus_server`); yields (tcp url, http url)."""
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-http-") as folder:
        bus: dict[str, Any] = {
            "id": "bench",
            "listen": "127.0.0.1:0",
            "memory_buffer": 100_000,
            "queue_size": 100_000,
        }
        if http:
            bus["http"] = {"listen": "127.0.0.1:0"}
        config = Path(folder) / "event_buses.json"
        config.write_text(json.dumps([bus]))
        proc = await asyncio.create_subprocess_exec(
            python,
            "-m",
            "eventbus_server",
            "--config",
            str(config),
            stderr=asyncio.subprocess.PIPE,
            cwd=folder,
        )
        assert proc.stderr is not None
        drainer: asyncio.Task[bytes] | None = None
        try:
            tcp = http_url = None
            async with asyncio.timeout(20):
                while tcp is None:
                    line = (await proc.stderr.readline()).decode()
                    if not line:
                        raise RuntimeError("the server exited before it was listening")
                    if match := HTTP_RE.search(line):
                        http_url = match.group(1)
                    if match := LISTEN_RE.search(line):
                        tcp = f"tcp://127.0.0.1:{match.group(1)}"
            drainer = asyncio.create_task(proc.stderr.read())
            yield tcp, http_url
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
            if drainer is not None:
                drainer.cancel()


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client: one request at a time, Content-Length bodies.

    httpx spends ~2 ms of client CPU a request here, more than the server does;
    this measures the server, as the TCP path is measured with our lean client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawHttp:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {len(body)}\r\n{head}\r\n".encode()
            + body
        )
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def cloudevent(n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"bench-{n}",
        "source": "trn:user:bench:http",
        "type": "bench.http",
        "data": {"repo": "acme/api", "branch": "main", "n": n},
    }


async def ingest_rates(tcp: str, http_url: str) -> list[dict[str, Any]]:
    rows = []
    http = await RawHttp.open(http_url)
    async with await connect(tcp) as bus:
        counter = iter(range(10**9))

        async def post_one(payloads: list[dict[str, Any]]) -> None:
            n = next(counter)
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"one-{n}",
                "ce-source": "trn:user:bench:http",
                "ce-type": "bench.http",
                "content-type": "application/json",
            }
            status, answer = await http.post("/events", orjson.dumps(payloads[0]), headers)
            assert status == 202, answer

        async def post_batch(payloads: list[dict[str, Any]]) -> None:
            body = orjson.dumps([cloudevent(next(counter)) for _ in payloads])
            status, answer = await http.post(
                "/events", body, {"content-type": "application/cloudevents-batch+json"}
            )
            assert status == 202, answer

        async def emit_one(payloads: list[dict[str, Any]]) -> None:
            await bus.emit("bench.tcp", payloads[0], source_trn="trn:user:bench:tcp")

        async def emit_batch(payloads: list[dict[str, Any]]) -> None:
            await bus.emit_many(
                [
                    {"topic": "bench.tcp", "payload": p, "source_trn": "trn:user:bench:tcp"}
                    for p in payloads
                ]
            )

        for name, publish, count, batch in (
            ("TCP emit, one at a time", emit_one, 5_000, 1),
            ("HTTP CloudEvent POST, one at a time", post_one, 5_000, 1),
            (f"TCP emit_many of {BATCH}", emit_batch, 100_000, BATCH),
            (f"HTTP CloudEvents batch of {BATCH}", post_batch, 100_000, BATCH),
        ):
            sent, rate = await measure_rate(publish, count=count, batch=batch)
            rows.append(
                {
                    "path": name,
                    "events": sent,
                    "events_s": round(rate),
                    "requests_s": round(rate / batch),
                }
            )
    http.close()
    return rows


async def _sse_payloads(http: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    async with http.stream("GET", "/events", params={"topic": "bench.lat"}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                yield orjson.loads(line[6:])["payload"]


async def latencies(tcp: str, http_url: str) -> list[dict[str, Any]]:
    target = int(LATENCY_RATE * LATENCY_SECONDS)
    got: dict[str, list[int]] = {"SSE (GET /events)": [], "TCP subscribe_topic": []}
    async with (
        httpx.AsyncClient(base_url=http_url, trust_env=False, timeout=None) as http,
        await connect(tcp) as producer,
        await connect(tcp) as reader,
    ):
        subscription = await reader.subscribe("bench.lat")
        sse = _sse_payloads(http)

        async def consume(name: str, payloads: AsyncIterator[dict[str, Any]]) -> None:
            async for payload in payloads:
                got[name].append(time.perf_counter_ns() - payload["sent_ns"])
                if len(got[name]) >= target:
                    return

        tasks = [
            asyncio.create_task(consume("SSE (GET /events)", sse)),
            asyncio.create_task(
                consume("TCP subscribe_topic", (e.payload async for e in subscription))
            ),
        ]
        await asyncio.sleep(0.5)  # the stream is open before the first event
        start = time.perf_counter()
        for n in range(target):
            delay = start + n / LATENCY_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.emit("bench.lat", {"n": n, "sent_ns": time.perf_counter_ns()})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), 5)
        for task in tasks:
            task.cancel()
    return [
        {"reader": name, "received": len(samples), **percentiles_ms(samples)}
        for name, samples in got.items()
    ]


async def pipelined(bus: EventBusClient, count: int) -> float:
    per_worker = count // PIPELINE_DEPTH

    async def worker() -> None:
        for n in range(per_worker):
            await bus.emit("bench.metrics", {"n": n})

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(PIPELINE_DEPTH)))
    return per_worker * PIPELINE_DEPTH / (time.perf_counter() - start)


async def metrics_cost(rounds: int, baseline: str | None) -> tuple[list[dict[str, Any]], str]:
    """Every arm on its own server process, all running at once; each round runs the
    arms in a rotated order, so drift on a shared machine hits all of them alike."""
    arms: dict[str, list[float]] = {}
    scrapes = 0
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, EventBusClient] = {}
        tcp, http_url = await stack.enter_async_context(bus_process(sys.executable))
        assert http_url is not None
        clients["http on, not scraped"] = await stack.enter_async_context(await connect(tcp))
        scraped_tcp, scraped_http = await stack.enter_async_context(bus_process(sys.executable))
        clients["http on, scraped every 1 s"] = await stack.enter_async_context(
            await connect(scraped_tcp)
        )
        plain_tcp, _ = await stack.enter_async_context(bus_process(sys.executable, http=False))
        clients["no http"] = await stack.enter_async_context(await connect(plain_tcp))
        if baseline:
            base_tcp, _ = await stack.enter_async_context(bus_process(baseline, http=False))
            clients["main (no metrics code)"] = await stack.enter_async_context(
                await connect(base_tcp)
            )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=scraped_http, trust_env=False)
        )

        async def scrape_every_second() -> None:
            nonlocal scrapes
            while True:
                answer = await http.get("/metrics")
                assert answer.status_code == 200
                scrapes += 1
                await asyncio.sleep(1.0)

        scraper = asyncio.create_task(scrape_every_second())
        try:
            for client in clients.values():
                await pipelined(client, 5_000)  # warm up
            names = list(clients)
            for round_number in range(rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    arms.setdefault(name, []).append(await pipelined(clients[name], METRICS_COUNT))
        finally:
            scraper.cancel()
    reference = arms["http on, not scraped"]
    rows = []
    for name, rates in arms.items():
        paired = [rate / ref for rate, ref in zip(rates, reference, strict=True)]
        rows.append(
            {
                "arm": name,
                "rounds": len(rates),
                "median_ev_s": round(statistics.median(rates)),
                "min_ev_s": round(min(rates)),
                "max_ev_s": round(max(rates)),
                "paired_ratio_median": round(statistics.median(paired), 3),
            }
        )
    note = f"paired_ratio: the arm's rate over the `http on, not scraped` arm's in the same round; {scrapes} scrapes."
    return rows, note


async def main(args: argparse.Namespace) -> None:
    async with bus_process(sys.executable) as (tcp, http_url):
        assert http_url is not None
        ingest = await ingest_rates(tcp, http_url)
        delivery = await latencies(tcp, http_url)
    cost, note = await metrics_cost(args.rounds, args.baseline_python)
    text = "\n\n".join(
        [
            "`.venv/bin/python -m bench.http"
            + (f" --baseline-python {args.baseline_python}" if args.baseline_python else "")
            + f" --rounds {args.rounds}`: one memory bus in its own process with `http.listen`; clients in this process (a minimal keep-alive HTTP/1.1 client for POSTs, httpx streaming for SSE).",
            "Ingest: sequential requests (one at a time) and batches of 100; HTTP through a minimal keep-alive client (httpx costs more than the server).",
            format_table(ingest),
            f"Delivery latency at {LATENCY_RATE} events/s for {LATENCY_SECONDS:g} s, both readers on the same events (emit sent → event read):",
            format_table(delivery),
            f"/metrics cost: {METRICS_COUNT:,} pipelined emits ({PIPELINE_DEPTH} in flight) per arm and round, arms interleaved:",
            format_table(cost),
            note,
        ]
    )
    print(text)
    if not args.no_record:
        record_results("bench.http: CloudEvents in, SSE out, the cost of /metrics", text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument(
        "--baseline-python",
        default=None,
        help="A python whose eventbus is the baseline (main's venv).",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-record", action="store_true")
    run(main(parser.parse_args()))
