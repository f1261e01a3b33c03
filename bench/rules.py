"""What rules cost the emit path, and how fast rules fire.

    .venv/bin/python -m bench.rules [--storage sqlite|memory|postgres] [--only emit|register] [--rounds 3]
                                    [--tree PATH ...] [--no-record]

Each scenario runs a fresh server process (SQLite, durability normal by
default) and measures pipelined emits (100 in flight) and `emit_events`
batches of 1,000 on the topic `bench.rules.x`:

- rules off (`enable_rules: false`), the baseline;
- rules on with no rules;
- 1,000 rules on other topics (exact topics, `*` and `>` patterns, with
  match_fields and EventBridge patterns): the index must keep these off the
  emit path (target: at most 20 % below the baseline);
- the same plus 10 rules on this very topic whose conditions never hold,
  led by a literal (`"branch": "release"`), which the per-topic plan looks
  up once per event, so it skips them without checking them;
- the same 10 without a literal (operators only), so each is checked in full;
- 1,000 other rules plus 100 on this topic, one per repo value
  (`"repo": "acme/r<i>"`), none of them the events' repo.

Besides events/s, each scenario reports the server's CPU per event (from
/proc), which a busy shared machine disturbs far less than throughput; the
scenarios run in `--rounds` interleaved rounds and each figure is a median.

Then the firing rate: one `EmitEvent` rule on a topic, 5,000 events emitted
in batches, timed until the last firing is recorded.

Then registration: 1,000 and 10,000 rules (the mix of the 1,000 above, plus
one in ten on a shared topic told apart by a literal), each its own
`register_rule` call awaited by the real client, on a fresh server. A run
past `--register-deadline-s` stops there and says how far it got. With
`--tree PATH` (repeatable), registration runs the server from each of those
source trees too (a checkout of the code before a change), interleaved
with this one, one row per tree: a before/after in one run.

Prints a table and appends it to bench/RESULTS.md unless `--no-record`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from eventbus_client import EventBusClient, connect

from ._common import PIPELINE_DEPTH, format_table, measure_rate, record_results, run
from .emit import bus_process, pipelined_rate

PIPELINED_COUNT = 30_000
BATCH_COUNT = 60_000
FIRING_EVENTS = 5_000
TOPIC = "bench.rules.x"
REGISTER_COUNTS = (1_000, 10_000)


def other_rules(count: int = 1000) -> list[dict[str, Any]]:
    """Rules that never look at TOPIC: a third exact, a third `*`, a third `>`."""
    rules = []
    for i in range(count):
        topic = (f"other{i}.created", f"other{i}.*", f"other{i}.>")[i % 3]
        rule: dict[str, Any] = {
            "id": f"other-{i}",
            "topic": topic,
            "match_fields": {"branch": "main", "$.payload.n": {"numeric": [">=", 0]}},
            "action": {"type": "EmitEvent", "topic": f"out{i}", "payload": "{{ $.payload }}"},
        }
        if i % 2:
            rule["pattern"] = {"payload": {"repo": [{"prefix": "acme/"}]}}
        rules.append(rule)
    return rules


def registered_rules(count: int) -> list[dict[str, Any]]:
    """`other_rules`, with every tenth on one shared topic, told apart by its repo."""
    rules = other_rules(count)
    for i in range(0, count, 10):
        rules[i]["topic"] = "bench.register.shared"
        rules[i]["match_fields"] = {"repo": f"acme/r{i}"}
    return rules


def same_topic_misses(count: int = 10) -> list[dict[str, Any]]:
    """Rules on TOPIC whose conditions fail for every benchmark event."""
    return [
        {
            "id": f"miss-{i}",
            "topic": TOPIC if i % 2 else "bench.rules.*",
            "match_fields": {"branch": "release", "$.payload.n": {"numeric": ["<", 0]}},
            "pattern": {"payload": {"repo": [{"prefix": "other/"}]}},
            "action": {"type": "EmitEvent", "topic": "never"},
        }
        for i in range(count)
    ]


def same_topic_operator_misses(count: int = 10) -> list[dict[str, Any]]:
    """Rules on TOPIC with no literal condition: every one is checked for every event."""
    return [
        {
            "id": f"op-miss-{i}",
            "topic": TOPIC,
            "match_fields": {
                "branch": {"prefix": "release/"},
                "$.payload.n": {"numeric": ["<", 0]},
            },
            "action": {"type": "EmitEvent", "topic": "never"},
        }
        for i in range(count)
    ]


def same_topic_per_repo(count: int = 100) -> list[dict[str, Any]]:
    """Rules on TOPIC that each name one repo; the events name none of them."""
    return [
        {
            "id": f"repo-{i}",
            "topic": TOPIC,
            "match_fields": {"repo": f"acme/r{i}"},
            "action": {"type": "EmitEvent", "topic": "never"},
        }
        for i in range(count)
    ]


async def emit_figures(
    storage: str, *, enable_rules: bool, rules: list[dict[str, Any]]
) -> dict[str, float]:
    """Events/s, and the server's CPU per event (what a shared, busy machine
    disturbs least), pipelined then in batches of 1,000."""
    async with bus_process(storage, "normal", {"enable_rules": enable_rules}) as (url, pid):
        async with await connect(url) as bus:
            for rule in rules:
                await bus.register_rule(rule)
            await _warm_up(bus)
            cpu_s = server_cpu_s(pid)
            pipelined = await pipelined_rate(
                bus, TOPIC, count=PIPELINED_COUNT, depth=PIPELINE_DEPTH
            )
            pipelined_cpu_s = server_cpu_s(pid) - cpu_s
            cpu_s = server_cpu_s(pid)
            _, batch = await measure_rate(
                lambda b: bus.emit_many([{"topic": TOPIC, "payload": p} for p in b]),
                count=BATCH_COUNT,
                batch=1000,
            )
            batch_cpu_s = server_cpu_s(pid) - cpu_s
    return {
        "pipelined_ev_s": pipelined,
        "batch1000_ev_s": batch,
        "pipelined_cpu_us": pipelined_cpu_s / PIPELINED_COUNT * 1e6,
        "batch1000_cpu_us": batch_cpu_s / BATCH_COUNT * 1e6,
    }


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _warm_up(bus: EventBusClient) -> None:
    await bus.emit_many([{"topic": TOPIC, "payload": {"n": -1}} for _ in range(1000)])


async def firing_rate(storage: str) -> dict[str, Any]:
    async with bus_process(storage, "normal", {"enable_rules": True}) as (url, _pid):
        async with await connect(url) as bus:
            await bus.register_rule(
                {
                    "id": "relay",
                    "topic": "fire.in",
                    "action": {
                        "type": "EmitEvent",
                        "topic": "fire.out",
                        "payload": "{{ $.payload }}",
                    },
                }
            )
            start = time.perf_counter()
            for offset in range(0, FIRING_EVENTS, 500):
                await bus.emit_many(
                    [{"topic": "fire.in", "payload": offset + i} for i in range(500)]
                )
            while (await bus.get_rule("relay"))["fired"] < FIRING_EVENTS:
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - start
    return {"scenario": "EmitEvent rule, 5,000 events", "firings_s": FIRING_EVENTS / elapsed}


async def registration_time(
    storage: str, count: int, deadline_s: float, tree: str | None = None
) -> dict[str, Any]:
    """Seconds to register `count` rules one call at a time, or how many fit in `deadline_s`."""
    rules = registered_rules(count)
    async with bus_process(storage, "normal", {"enable_rules": True}, tree=tree) as (url, pid):
        async with await connect(url) as bus:
            cpu_s = server_cpu_s(pid)
            start = time.perf_counter()
            done = 0
            for rule in rules:
                await bus.register_rule(rule)
                done += 1
                if time.perf_counter() - start > deadline_s:
                    break
            elapsed = time.perf_counter() - start
            cpu_s = server_cpu_s(pid) - cpu_s
            listed = len(await bus.list_rules())
    return {
        **({} if tree is None else {"tree": tree}),
        "rules": f"{count:,}",
        "registered": done,
        "seconds": elapsed if done == count else f"> {deadline_s:.0f} (stopped)",
        "rules_s": done / elapsed,
        "server_cpu_s": cpu_s,
        "listed": listed,
    }


async def registration_figures(args: argparse.Namespace) -> str:
    rows = []
    trees: list[str | None] = [None] if not args.tree else [*args.tree, os.getcwd()]
    for count in REGISTER_COUNTS:
        for tree in trees:
            row = await registration_time(args.storage, count, args.register_deadline_s, tree)
            rows.append(row)
            print(f"register {count:,} rules: {row}", flush=True)
    return (
        f"Registration, storage {args.storage}: one `register_rule` call each, awaited in turn;"
        f" load average at the end {os.getloadavg()[0]:.1f}\n\n"
        f"{format_table(rows)}\n\nTarget: 10,000 rules registered in under 10 s."
    )


async def emit_cost_figures(args: argparse.Namespace) -> str:
    scenarios: list[tuple[str, bool, list[dict[str, Any]]]] = [
        ("rules off (baseline)", False, []),
        ("rules on, no rules", True, []),
        ("1,000 rules on other topics", True, other_rules()),
        ("1,000 other + 10 failing on this topic", True, other_rules() + same_topic_misses()),
        (
            "1,000 other + 10 failing, operators only",
            True,
            other_rules() + same_topic_operator_misses(),
        ),
        ("1,000 other + 100 per-repo on this topic", True, other_rules() + same_topic_per_repo()),
    ]
    # Rounds interleave the scenarios, so a burst of load on the machine hits
    # them all alike; each figure is the median over the rounds.
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in scenarios}
    for round_ in range(args.rounds):
        for name, enable_rules, rules in scenarios:
            figures = await emit_figures(args.storage, enable_rules=enable_rules, rules=rules)
            runs[name].append(figures)
            print(f"round {round_ + 1}, {name}: {figures}", flush=True)
    rows: list[dict[str, Any]] = [
        {
            "scenario": name,
            **{key: statistics.median(f[key] for f in figures) for key in figures[0]},
        }
        for name, figures in runs.items()
    ]
    base = rows[0]
    for row in rows[1:]:
        for key in ("pipelined_ev_s", "batch1000_ev_s"):
            row[key.replace("_ev_s", "_vs_off")] = f"{(row[key] / base[key] - 1) * 100:+.1f} %"
        for key in ("pipelined_cpu_us", "batch1000_cpu_us"):
            row[key.replace("_us", "_vs_off")] = f"{(row[key] / base[key] - 1) * 100:+.1f} %"
    firing = await firing_rate(args.storage)
    return (
        f"storage: {args.storage} (durability normal); emits on one topic; medians of "
        f"{args.rounds} interleaved round(s); ev_s: events/s; cpu_us: server CPU per event, "
        f"in microseconds; load average at the end {os.getloadavg()[0]:.1f}\n\n"
        f"{format_table(rows)}\n\n{format_table([firing])}\n\n"
        "Target: 1,000 rules on other topics cost at most 20 % of emit throughput."
    )


async def main(args: argparse.Namespace) -> None:
    parts = []
    if args.only in (None, "emit"):
        parts.append(await emit_cost_figures(args))
    if args.only in (None, "register"):
        parts.append(await registration_figures(args))
    text = "\n\n".join(parts)
    print(text)
    if not args.no_record:
        record_results("bench.rules: rule-index cost on emits, firing rate, registration", text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", choices=["sqlite", "memory", "postgres"], default="sqlite")
    parser.add_argument(
        "--only", choices=["emit", "register"], help="run one part: emit cost or registration"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the emit scenarios; figures are medians (default 3)",
    )
    parser.add_argument(
        "--register-deadline-s",
        type=float,
        default=120.0,
        help="stop a registration run after this long (default 120)",
    )
    parser.add_argument(
        "--tree",
        action="append",
        metavar="PATH",
        help="registration: also run the server from this source tree, before this one (repeatable)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md"
    )
    return parser.parse_args()


if __name__ == "__main__":
    run(main(parse_args()))
