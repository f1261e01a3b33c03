"""`eventbus replay` as a user runs it: a real subprocess, a real bus doing the replay
(`replay_events`), and the resume line run for real (issue 12, items 1 and 2)."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventbus_cli.commands.replay import Window, resume_command
from eventbus_cli.times import parse_time_ms
from eventbus_client import EventBusClient, connect
from eventbus_core.event import now_ms
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.processes import ServerProcess

from .test_cli_basic import run_cli
from .test_commands import interrupt, ndjson, start_cli


@pytest.fixture
async def replay_app(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    """A SQLite bus with rules, a memory bus that accepts its replays, and one that does not."""
    buses = [
        {
            "id": "main",
            "persist": True,
            "storage_path": str(tmp_path / "main.db"),
            "enable_rules": True,
        },
        {"id": "plain", "accept_from_buses": ["main"]},
        {"id": "closed"},
    ]
    async with start_buses(tmp_path, *buses) as running:
        yield running


@pytest.fixture
async def bus(replay_app: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(replay_app.url("main")) as client:
        yield client


async def all_events(bus: EventBusClient, topic: str = ">") -> list[Any]:
    events, since = [], 0
    while page := (await bus.poll(topic, since=since, limit=10_000)).events:
        events += page
        since = page[-1].event_id
    return events


async def test_replay_re_emits_in_order_with_replay_of_and_rules_fire_again(
    replay_app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.register_rule(
        {
            "id": "seen",
            "topic": "orders.created",
            "action": {"type": "EmitEvent", "topic": "orders.seen", "payload": "{{ $.payload }}"},
        }
    )
    originals = await bus.emit_many(
        [
            {
                "topic": "orders.created",
                "payload": {"n": i},
                "source_trn": "trn:user:a:b",
                "correlation_id": f"c{i}",
            }
            for i in range(5)
        ]
    )
    await bus.emit("other.topic", "not replayed")
    await replay_app.buses["main"].wait_idle()
    url = replay_app.url("main")

    code, out, err = await run_cli(
        "replay", "--since", "1h", "--topic", "orders.created", "--dry-run", "--url", url
    )
    assert code == 0, err
    (dry,) = ndjson(out)
    assert dry["would_replay"] == 5 and [e["event_id"] for e in dry["first"]] == originals
    assert len((await bus.poll("orders.created")).events) == 5  # a dry run emits nothing

    code, out, err = await run_cli(
        "replay", "--since", "1h", "--topic", "orders.created", "--yes", "--url", url
    )
    assert code == 0, err
    assert ndjson(out) == [{"replayed": 5, "last_replayed_id": originals[-1]}]
    assert err.splitlines() == [
        f"replayed 5 of 5 events (up to #{originals[-1]})"
    ]  # progress, once per call
    created = (await bus.poll("orders.created")).events
    copies = created[5:]
    assert [c.metadata["replay_of"] for c in copies] == originals  # type: ignore[index]
    assert [c.payload for c in copies] == [{"n": i} for i in range(5)]
    assert [c.correlation_id for c in copies] == [f"c{i}" for i in range(5)]
    await replay_app.buses["main"].wait_idle()
    assert len((await bus.poll("orders.seen")).events) == 10  # the rule fired for the copies too


async def test_replay_to_another_topic_and_bus(
    replay_app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.emit_many([{"topic": "audit.in", "payload": i} for i in range(3)])
    url = replay_app.url("main")
    code, _, err = await run_cli(
        "replay",
        "--since",
        "1h",
        "--topic",
        "audit.in",
        "--to-topic",
        "audit.copy",
        "--to-bus",
        "plain",
        "--url",
        url,
        "--yes",
    )
    assert code == 0, err
    async with await connect(replay_app.url("plain")) as plain:
        assert [e.payload for e in (await plain.poll("audit.copy")).events] == [0, 1, 2]

    code, _, err = await run_cli(
        "replay", "--since", "1h", "--to-bus", "closed", "--url", url, "--yes"
    )
    assert code == 1
    assert err.splitlines() == [
        "error: bus 'closed' does not accept events replayed from bus 'main'"
        " (add 'main' to accept_from_buses of 'closed' in its config) (code -32001)"
    ]


async def test_replay_of_many_events_needs_yes_without_a_terminal(
    replay_app: EventBusApp, bus: EventBusClient
) -> None:
    await bus.emit_many([{"topic": "big", "payload": i} for i in range(1001)])
    code, _, err = await run_cli(
        "replay", "--since", "1h", "--topic", "big", "--url", replay_app.url("main")
    )
    assert code == 2 and "1,001 events to replay: pass --yes" in err and "resume" not in err
    assert len((await bus.poll("big", limit=5000)).events) == 1001


async def test_until_before_since_is_a_usage_error(replay_app: EventBusApp) -> None:
    code, _, err = await run_cli(
        "replay", "--since", "1h", "--until", "2h", "--url", replay_app.url("main")
    )
    (line,) = err.splitlines()
    assert code == 2 and line.startswith("error: --until 2h (") and "is before --since 1h (" in line


def test_the_resume_line_says_the_window_in_absolute_terms() -> None:
    window = Window(
        parse_time_ms("2026-11-28T09:00:00.250Z", "x"),
        parse_time_ms("2026-11-28T10:00:00Z", "x"),
        "orders.>",
        None,
        None,
        "again",
        None,
        after_id=1234,
        until_id=58_000,
    )
    argv = [
        "replay",
        "--since",
        "15m",
        "--topic",
        "orders.>",
        "--to-topic",
        "again",
        "--after-id=7",
        "--url",
        "tcp://h:1",
    ]
    line = resume_command(window, argv)
    assert line == (
        "eventbus replay --topic 'orders.>' --to-topic again --url tcp://h:1 --yes"
        " --since 2026-11-28T09:00:00.250Z --until 2026-11-28T10:00:00.000Z --after-id 1234 --until-id 58000"
    )
    resumed = shlex.split(line)
    assert parse_time_ms(resumed[resumed.index("--since") + 1], "--since") == window.since_ts
    assert parse_time_ms(resumed[resumed.index("--until") + 1], "--until") == window.until_ts


@pytest.mark.slow
async def test_an_interrupted_replay_resumed_later_replays_every_event_exactly_once(
    replay_app: EventBusApp, bus: EventBusClient
) -> None:
    """Issue 12, item 1: the resume line once repeated `--since 15m`; run later, that
    window had moved and silently skipped the oldest events that were left."""
    total = 60_000
    start = now_ms()
    # Timestamps from 2 s to 0.5 s ago, oldest first.
    for chunk in range(0, total, 5000):
        await bus.emit_many(
            [
                {"topic": "many.in", "payload": i, "timestamp": start - 2000 + i * 1500 // total}
                for i in range(chunk, chunk + 5000)
            ]
        )
    # A relative window that holds them all now, with two seconds to spare for the CLI to start.
    window_s = (now_ms() - (start - 2000)) // 1000 + 3
    url = replay_app.url("main")
    proc = await start_cli(
        "replay",
        "--since",
        f"{window_s}s",
        "--topic",
        "many.in",
        "--to-topic",
        "many.out",
        "--yes",
        "--url",
        url,
    )

    async with asyncio.timeout(30):
        while not (await bus.poll("many.out", limit=1)).events:
            await asyncio.sleep(0.01)
    code, err = await interrupt(proc)
    assert code == 130, err
    assert (
        "stopped after replaying" in err
        and f"of {total:,} events." in err
        and "abandoned" not in err
    )
    resume = next(line for line in err.splitlines() if line.startswith("resume with: "))
    argv = shlex.split(resume.removeprefix("resume with: "))
    assert argv[0] == "eventbus" and "--after-id" in argv and "--until-id" in argv
    assert f"{window_s}s" not in argv  # the window in absolute times, not `--since 6s` again
    done_before = len(await all_events(bus, "many.out"))
    assert 0 < done_before < total

    # Later: the relative window has moved past the oldest events that are left.
    await asyncio.sleep(3.5)  # wall-clock time must pass: that is what the test is about
    moved = parse_time_ms(f"{window_s}s", "--since")
    originals = await all_events(bus, "many.in")
    left = [e for e in originals if e.event_id > int(argv[argv.index("--after-id") + 1])]
    assert any(e.timestamp < moved for e in left)  # `--since {window_s}s` again would skip these

    code, out, err = await run_cli(*argv[1:])
    assert code == 0, err
    replayed = [e.metadata["replay_of"] for e in await all_events(bus, "many.out")]  # type: ignore[index]
    assert replayed == [
        e.event_id for e in originals
    ]  # every event once, in order: nothing lost, nothing twice
    assert ndjson(out)[-1]["replayed"] == total - done_before


@pytest.mark.slow
async def test_replay_on_the_bundled_config_after_an_emit_event_rule_fired(tmp_path: Path) -> None:
    """Issue 12, item 2: the bundled `global` bus has an allow-list; the copies of rule-made
    events keep `trn:eventbus:global:rule:…`, which a client could not emit there."""
    bundled = json.loads((Path(__file__).parents[2] / "event_buses.json").read_text())
    for bus_config, port in zip(bundled, (0, 0), strict=True):
        bus_config["listen"] = f"127.0.0.1:{port}"
    config = tmp_path / "event_buses.json"
    config.write_text(json.dumps(bundled))
    server = await ServerProcess.start(config, cwd=tmp_path)
    try:
        bundled[0]["listen"], bundled[1]["listen"] = (
            f"127.0.0.1:{server.ports[b['id']]}" for b in bundled
        )
        config.write_text(json.dumps(bundled))  # the CLI finds the bound ports by --bus
        async with await connect(server.url("global")) as bus:
            await bus.register_rule(
                {
                    "id": "relay",
                    "topic": "orders.created",
                    "action": {
                        "type": "EmitEvent",
                        "topic": "orders.seen",
                        "payload": "{{ $.payload }}",
                    },
                }
            )
            await bus.emit_many(
                [
                    {
                        "topic": "orders.created",
                        "payload": {"n": i},
                        "source_trn": "trn:user:alice:cli:v1",
                    }
                    for i in range(12)
                ]
            )
            async with asyncio.timeout(10):
                while (await bus.get_rule("relay"))["fired"] < 12:
                    await asyncio.sleep(0.02)
            originals = await all_events(bus)
            assert sum(e.source_trn == "trn:eventbus:global:rule:relay" for e in originals) == 12

            code, out, err = await run_cli(
                "replay",
                "--bus",
                "global",
                "--config",
                str(config),
                "--since",
                "1h",
                "--yes",
                "--json",
                cwd=tmp_path,
            )
            assert code == 0, err
            assert ndjson(out) == [{"replayed": 24, "last_replayed_id": originals[-1].event_id}]
            async with asyncio.timeout(10):
                while (await bus.get_rule("relay"))[
                    "fired"
                ] < 24:  # the rule fired again, for the 12 copies
                    await asyncio.sleep(0.02)
            after = await all_events(bus)
            copies = [e for e in after if "replay_of" in (e.metadata or {})]
            assert [c.metadata["replay_of"] for c in copies] == [e.event_id for e in originals]  # type: ignore[index]
            assert len(after) == 24 + 24 + 12
    finally:
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()


@pytest.mark.slow
async def test_a_bus_that_goes_away_mid_replay_leaves_a_resume_line_that_finishes_the_job(
    tmp_path: Path,
) -> None:
    """The error exit path: the server is stopped (SIGTERM) during the replay. It answers
    the call in flight with what it stored, the next call fails, and the resume line,
    run once the server is back, replays exactly the rest."""
    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps([{"id": "r", "listen": "127.0.0.1:0", "persist": True, "storage_path": "r.db"}])
    )
    server = await ServerProcess.start(config, cwd=tmp_path)
    total = 60_000
    try:
        async with await connect(server.url("r")) as bus:
            for chunk in range(0, total, 5000):
                await bus.emit_many(
                    [{"topic": "gone.in", "payload": i} for i in range(chunk, chunk + 5000)]
                )
            proc = await start_cli(
                "replay",
                "--since",
                "1h",
                "--topic",
                "gone.in",
                "--to-topic",
                "gone.out",
                "--yes",
                "--url",
                server.url("r"),
            )
            async with asyncio.timeout(30):
                while not (await bus.poll("gone.out", limit=1)).events:
                    await asyncio.sleep(0.01)
        port = server.ports["r"]
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        err_text = err.decode()
        # The next call finds the bus shutting down (exit 1) or gone (exit 3).
        assert proc.returncode in (1, 3), err_text
        lines = [
            line for line in err_text.splitlines() if not line.startswith("replayed ")
        ]  # progress
        assert lines[0].startswith(
            (
                "error: bus 'r' is not accepting events (shutting down)",
                f"error: cannot reach tcp://127.0.0.1:{port}",
            )
        ), err_text
        assert lines[1].startswith("stopped by the error above after replaying ")
        # A call sent as the bus closed the connection gets a warning that it may repeat
        # (the bus had stopped reading, so it did not).
        assert lines[2:-1] in ([], [lines[2]]) and all("abandoned" in line for line in lines[2:-1])
        assert lines[-1].startswith("resume with: eventbus replay ")
        resume = lines[-1]

        config.write_text(
            json.dumps(
                [
                    {
                        "id": "r",
                        "listen": f"127.0.0.1:{port}",
                        "persist": True,
                        "storage_path": "r.db",
                    }
                ]
            )
        )
        server = await ServerProcess.start(config, cwd=tmp_path)
        code, _, err2 = await run_cli(*shlex.split(resume.removeprefix("resume with: "))[1:])
        assert code == 0, err2
        async with await connect(server.url("r")) as bus:
            originals = [e.event_id for e in await all_events(bus, "gone.in")]
            assert [e.metadata["replay_of"] for e in await all_events(bus, "gone.out")] == originals  # type: ignore[index]
    finally:
        if server.proc.returncode is None:
            server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()


@pytest.mark.slow
async def test_a_bus_killed_mid_replay_loses_nothing_and_says_when_some_may_repeat(
    tmp_path: Path,
) -> None:
    """kill -9: the answer of the call in flight is lost. The resume line starts after
    the last answered call, so nothing is skipped; the CLI warns that what the lost call
    did (up to one call's worth) may be replayed twice."""
    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps([{"id": "k", "listen": "127.0.0.1:0", "persist": True, "storage_path": "k.db"}])
    )
    server = await ServerProcess.start(config, cwd=tmp_path)
    total = 20_000
    try:
        async with await connect(server.url("k")) as bus:
            for chunk in range(0, total, 500):  # 2 KB events: a call of 1,000 takes a while
                await bus.emit_many(
                    [{"topic": "kill.in", "payload": "x" * 2000} for _ in range(chunk, chunk + 500)]
                )
            proc = await start_cli(
                "replay",
                "--since",
                "1h",
                "--topic",
                "kill.in",
                "--to-topic",
                "kill.out",
                "--yes",
                "--url",
                server.url("k"),
            )
            async with asyncio.timeout(30):
                while not (await bus.poll("kill.out", limit=1)).events:
                    await asyncio.sleep(0.01)
        port = server.ports["k"]
        server.proc.kill()
        await server.proc.wait()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        err_text = err.decode()
        assert proc.returncode == 3, err_text
        resume = next(line for line in err_text.splitlines() if line.startswith("resume with: "))
        argv = shlex.split(resume.removeprefix("resume with: "))
        after_id = int(argv[argv.index("--after-id") + 1])

        config.write_text(
            json.dumps(
                [
                    {
                        "id": "k",
                        "listen": f"127.0.0.1:{port}",
                        "persist": True,
                        "storage_path": "k.db",
                    }
                ]
            )
        )
        server = await ServerProcess.start(config, cwd=tmp_path)
        code, _, err2 = await run_cli(*argv[1:])
        assert code == 0, err2
        async with await connect(server.url("k")) as bus:
            originals = [e.event_id for e in await all_events(bus, "kill.in")]
            replayed = [e.metadata["replay_of"] for e in await all_events(bus, "kill.out")]  # type: ignore[index]
        assert sorted(set(replayed)) == originals  # nothing skipped
        twice = [i for i in set(replayed) if replayed.count(i) > 1]
        if twice:  # only what the lost call did, right after the resume point, and said so
            assert "the call in flight was abandoned" in err_text
            assert len(twice) <= 1000 and min(twice) > after_id and max(twice) <= after_id + 1000
    finally:
        if server.proc.returncode is None:
            server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()
