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
   for a fixed count, with /metrics scraped every second vs not at all,
   interleaved A/B in `--rounds` rounds on the same server, reported as the
   median ratio. With `--baseline-python`, a server running that
   interpreter's eventbus (main, without the metrics hooks on the emit
   path) is a third arm, so what the hooks cost is measured too.

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
METRICS_COUNT = 30_000


@contextlib.asynccontextmanager
async def bus_process(python: str, *, http: bool = True) -> AsyncIterator[tuple[str, str | None]]:
    """A memory bus in its own process (`python -m eventbus_server`); yields (tcp url, http url)."""
    with tempfile.TemporaryDirectory(prefix="eventbus-bench-http-") as folder:
        bus: dict[str, Any] = {"id": "bench", "listen": "127.0.0.1:0", "memory_buffer": 100_000, "queue_size": 100_000}
        if http:
            bus["http"] = {"listen": "127.0.0.1:0"}
        config = Path(folder) / "event_buses.json"
        config.write_text(json.dumps([bus]))
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "eventbus_server", "--config", str(config), stderr=asyncio.subprocess.PIPE, cwd=folder
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


def cloudevent(n: int) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"bench-{n}", "source": "trn:user:bench:http", "type": "bench.http",
            "data": {"repo": "acme/api", "branch": "main", "n": n}}


async def ingest_rates(tcp: str, http_url: str) -> list[dict[str, Any]]:
    rows = []
    async with httpx.AsyncClient(base_url=http_url, trust_env=False, timeout=30) as http, await connect(tcp) as bus:
        counter = iter(range(10**9))

        async def post_one(payloads: list[dict[str, Any]]) -> None:
            n = next(counter)
            headers = {"ce-specversion": "1.0", "ce-id": f"one-{n}", "ce-source": "trn:user:bench:http",
                       "ce-type": "bench.http", "content-type": "application/json"}
            answer = await http.post("/events", content=orjson.dumps(payloads[0]), headers=headers)
            assert answer.status_code == 202, answer.text

        async def post_batch(payloads: list[dict[str, Any]]) -> None:
            body = orjson.dumps([cloudevent(next(counter)) for _ in payloads])
            answer = await http.post("/events", content=body, headers={"content-type": "application/cloudevents-batch+json"})
            assert answer.status_code == 202, answer.text

        async def emit_one(payloads: list[dict[str, Any]]) -> None:
            await bus.emit("bench.tcp", payloads[0], source_trn="trn:user:bench:tcp")

        async def emit_batch(payloads: list[dict[str, Any]]) -> None:
            await bus.emit_many([{"topic": "bench.tcp", "payload": p, "source_trn": "trn:user:bench:tcp"} for p in payloads])

        for name, publish, count, batch in (
            ("TCP emit, one at a time", emit_one, 5_000, 1),
            ("HTTP CloudEvent POST, one at a time", post_one, 5_000, 1),
            (f"TCP emit_many of {BATCH}", emit_batch, 100_000, BATCH),
            (f"HTTP CloudEvents batch of {BATCH}", post_batch, 100_000, BATCH),
        ):
            sent, rate = await measure_rate(publish, count=count, batch=batch)
            rows.append({"path": name, "events": sent, "events_s": round(rate)})
    return rows


async def _sse_payloads(http: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    async with http.stream("GET", "/events", params={"topic": "bench.lat"}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                yield orjson.loads(line[6:])["payload"]


async def latencies(tcp: str, http_url: str) -> list[dict[str, Any]]:
    target = int(LATENCY_RATE * LATENCY_SECONDS)
    got: dict[str, list[int]] = {"SSE (GET /events)": [], "TCP subscribe_topic": []}
    async with httpx.AsyncClient(base_url=http_url, trust_env=False, timeout=None) as http, \
            await connect(tcp) as producer, await connect(tcp) as reader:
        subscription = await reader.subscribe("bench.lat")
        sse = _sse_payloads(http)

        async def consume(name: str, payloads: AsyncIterator[dict[str, Any]]) -> None:
            async for payload in payloads:
                got[name].append(time.perf_counter_ns() - payload["sent_ns"])
                if len(got[name]) >= target:
                    return

        tasks = [
            asyncio.create_task(consume("SSE (GET /events)", sse)),
            asyncio.create_task(consume("TCP subscribe_topic", (e.payload async for e in subscription))),
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
    return [{"reader": name, "received": len(samples), **percentiles_ms(samples)} for name, samples in got.items()]


async def pipelined(bus: EventBusClient, count: int) -> float:
    per_worker = count // PIPELINE_DEPTH

    async def worker() -> None:
        for n in range(per_worker):
            await bus.emit("bench.metrics", {"n": n})

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(PIPELINE_DEPTH)))
    return per_worker * PIPELINE_DEPTH / (time.perf_counter() - start)


async def metrics_cost(rounds: int, baseline: str | None) -> tuple[list[dict[str, Any]], str]:
    arms: dict[str, list[float]] = {"no scrape": [], "scraped every 1 s": []}
    if baseline:
        arms["baseline (main, no metrics code)"] = []
    scrapes = 0
    async with contextlib.AsyncExitStack() as stack:
        tcp, http_url = await stack.enter_async_context(bus_process(sys.executable))
        assert http_url is not None
        bus = await stack.enter_async_context(await connect(tcp))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=http_url, trust_env=False))
        base_bus = None
        if baseline:
            base_tcp, _ = await stack.enter_async_context(bus_process(baseline, http=False))
            base_bus = await stack.enter_async_context(await connect(base_tcp))
        await pipelined(bus, 5_000)  # warm up both
        if base_bus is not None:
            await pipelined(base_bus, 5_000)

        async def scrape_every_second() -> None:
            nonlocal scrapes
            while True:
                answer = await http.get("/metrics")
                assert answer.status_code == 200
                scrapes += 1
                await asyncio.sleep(1.0)

        for _ in range(rounds):
            arms["no scrape"].append(await pipelined(bus, METRICS_COUNT))
            scraper = asyncio.create_task(scrape_every_second())
            try:
                arms["scraped every 1 s"].append(await pipelined(bus, METRICS_COUNT))
            finally:
                scraper.cancel()
            if base_bus is not None:
                arms["baseline (main, no metrics code)"].append(await pipelined(base_bus, METRICS_COUNT))
    reference = statistics.median(arms["no scrape"])
    rows = [
        {"arm": name, "rounds": len(rates), "median_ev_s": round(statistics.median(rates)),
         "min_ev_s": round(min(rates)), "max_ev_s": round(max(rates)),
         "ratio_to_no_scrape": round(statistics.median(rates) / reference, 3)}
        for name, rates in arms.items()
    ]
    paired = [s / n for s, n in zip(arms["scraped every 1 s"], arms["no scrape"], strict=True)]
    note = (f"paired ratios scraped/no scrape per round: {', '.join(f'{r:.3f}' for r in paired)}; "
            f"median {statistics.median(paired):.3f}; {scrapes} scrapes")
    if baseline:
        base = [n / b for n, b in zip(arms["no scrape"], arms["baseline (main, no metrics code)"], strict=True)]
        note += f"; paired ratios this branch/main per round: {', '.join(f'{r:.3f}' for r in base)}; median {statistics.median(base):.3f}"
    return rows, note


async def main(args: argparse.Namespace) -> None:
    async with bus_process(sys.executable) as (tcp, http_url):
        assert http_url is not None
        ingest = await ingest_rates(tcp, http_url)
        delivery = await latencies(tcp, http_url)
    cost, note = await metrics_cost(args.rounds, args.baseline_python)
    text = "\n\n".join([
        "`.venv/bin/python -m bench.http"
        + (f" --baseline-python {args.baseline_python}" if args.baseline_python else "")
        + f" --rounds {args.rounds}`: one memory bus in its own process with `http.listen`; clients in this process (httpx for HTTP).",
        "Ingest: events/s, sequential requests (one at a time) and batches of 100.",
        format_table(ingest),
        f"Delivery latency at {LATENCY_RATE} events/s for {LATENCY_SECONDS:g} s, both readers on the same events (emit sent → event read):",
        format_table(delivery),
        f"/metrics cost: {METRICS_COUNT:,} pipelined emits ({PIPELINE_DEPTH} in flight) per round, arms interleaved:",
        format_table(cost),
        note,
    ])
    print(text)
    if not args.no_record:
        record_results("bench.http: CloudEvents in, SSE out, the cost of /metrics", text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--baseline-python", default=None, help="A python whose eventbus is the baseline (main's venv).")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-record", action="store_true")
    run(main(parser.parse_args()))
