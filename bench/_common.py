"""Measurement helpers shared by every benchmark (peers.py, emit.py).

Each system under test supplies two small adapters and the helpers here do the
timing, so every system is measured by the same code:

- `measure_rate(publish, ...)`: `publish(payloads)` sends one batch and awaits
  its acknowledgement; batch=1 is the sequential case.
- `steady_latency(send, messages, ...)`: `send(payload)` publishes one event;
  `messages` is an async iterator of received payload dicts.

For eventbus that is, for example:

    sub = await bus.subscribe("bench.lat.>")
    figures = await steady_latency(
        lambda p: bus.emit("bench.lat.x", p), (event.payload async for event in sub)
    )
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
CAP_S = 10.0
SEQUENTIAL_COUNT = 5_000
PIPELINED_COUNT = 50_000
PIPELINE_DEPTH = 100
LATENCY_RATE = 5_000
LATENCY_SECONDS = 3.0

Payload = dict[str, Any]


def make_payload(n: int) -> Payload:
    """The ~50-byte event every system carries."""
    return {"repo": "acme/api", "branch": "main", "n": n}


async def measure_rate(
    publish: Callable[[list[Payload]], Awaitable[object]],
    *,
    count: int,
    batch: int = 1,
    cap_s: float = CAP_S,
    drain: Callable[[], Awaitable[object]] | None = None,
) -> tuple[int, float]:
    """Publish up to `count` events in batches; return (events sent, events/s).

    Stops early at `cap_s` so a slow system cannot stall the run. `drain` waits
    for acknowledgements still in flight (windowed publishers) and is timed too.
    """
    sent = 0
    start = time.perf_counter()
    deadline = start + cap_s
    while sent < count and time.perf_counter() < deadline:
        size = min(batch, count - sent)
        await publish([make_payload(sent + k) for k in range(size)])
        sent += size
    if drain is not None:
        await asyncio.wait_for(drain(), cap_s)
    return sent, sent / (time.perf_counter() - start)


async def steady_produce(
    send: Callable[[Payload], Awaitable[object]],
    *,
    rate: float,
    count: int,
    cap_s: float = CAP_S,
) -> tuple[int, float]:
    """Send `count` events on the schedule t0 + i/rate; return (sent, achieved rate).

    Sleeping until each absolute due time, instead of a fixed interval after
    the previous send, keeps the rate from drifting by the cost of each send.
    The loop's timer resolution (~1 ms) means sends go out in small bursts
    that average to `rate`. Each payload carries `sent_ns` for the receiver.
    """
    start = time.perf_counter()
    deadline = start + cap_s
    sent = 0
    for n in range(count):
        now = time.perf_counter()
        if now >= deadline:
            break
        due = start + n / rate
        if due > now:
            await asyncio.sleep(due - now)
        payload = make_payload(n)
        payload["sent_ns"] = time.perf_counter_ns()
        await send(payload)
        sent += 1
    return sent, sent / (time.perf_counter() - start)


async def steady_latency(
    send: Callable[[Payload], Awaitable[object]],
    messages: AsyncIterator[Payload],
    *,
    rate: float = LATENCY_RATE,
    seconds: float = LATENCY_SECONDS,
    grace_s: float = 2.0,
) -> dict[str, float | int]:
    """Publish at a steady `rate` for `seconds` while consuming `messages`.

    The consumer must already be subscribed. Latency is receive time minus the
    `sent_ns` stamped just before each send; both ends share this process, so
    one clock serves both. Returns percentiles plus what was sent/received, so
    a producer that could not hold the rate, or lost events, shows up.
    """
    latencies_ns: list[int] = []
    target = int(rate * seconds)

    async def consume() -> None:
        async for payload in messages:
            latencies_ns.append(time.perf_counter_ns() - payload["sent_ns"])
            if len(latencies_ns) >= target:
                return

    consumer = asyncio.create_task(consume())
    try:
        sent, achieved = await steady_produce(send, rate=rate, count=target, cap_s=seconds * 2)
        # Late events are latency too: give them a bounded while to arrive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer, grace_s)
    finally:
        consumer.cancel()
    return {
        **percentiles_ms(latencies_ns),
        "lat_rate_ev_s": round(achieved),
        "lat_sent": sent,
        "lat_received": len(latencies_ns),
    }


def percentiles_ms(samples_ns: Sequence[int], points: Sequence[int] = (50, 99)) -> dict[str, float]:
    """Nearest-rank percentiles and the max, in milliseconds (NaN when empty)."""
    ordered = sorted(samples_ns)
    result: dict[str, float] = {}
    for p in points:
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        result[f"p{p}_ms"] = ordered[rank - 1] / 1e6 if ordered else math.nan
    result["max_ms"] = ordered[-1] / 1e6 if ordered else math.nan
    return result


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render dict rows as an aligned markdown table (numbers right-aligned)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_format_cell(row.get(col, "")) for col in columns] for row in rows]
    numeric = [
        all(isinstance(row[col], int | float) for row in rows if col in row) for col in columns
    ]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    return "\n".join([line(columns), line(rule)] + [line(r) for r in cells])


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def machine_info() -> str:
    """One line naming what the figures were measured on."""
    cpu_model = "unknown CPU"
    try:
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                cpu_model = text_line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0))
    return f"nproc {nproc}, {cpu_model}, Python {platform.python_version()}, loop {loop_name()}"


def record_results(section_title: str, markdown_text: str) -> None:
    """Append a dated section to bench/RESULTS.md, creating the file if missing."""
    if not RESULTS_PATH.exists():
        RESULTS_PATH.write_text(
            "# Benchmark results\n\n"
            "Appended by the scripts in `bench/`; newest last. Figures are only\n"
            "comparable within one section (same machine, same run).\n"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS_PATH.open("a") as out:
        out.write(
            f"\n## {stamp} — {section_title}\n\n{machine_info()}\n\n{markdown_text.strip()}\n"
        )


def loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when installed, as the eventbus server and client do."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
