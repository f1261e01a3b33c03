"""`eventbus consumers`, `eventbus consume` and `eventbus dead-letters` as real processes."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses

from .test_cli_basic import run_cli
from .test_commands import ndjson


@pytest.fixture
async def work(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    async with start_buses(
        tmp_path, {"id": "work", "persist": True, "storage_path": str(tmp_path / "work.db")}
    ) as app:
        yield app


@pytest.fixture
async def bus(work: EventBusApp) -> AsyncIterator[EventBusClient]:
    async with await connect(work.url("work")) as client:
        yield client


async def test_add_list_info_and_remove(work: EventBusApp, bus: EventBusClient) -> None:
    url = work.url("work")
    code, out, err = await run_cli(
        "consumers",
        "add",
        "resize",
        "--topic",
        "img.>",
        "--max-deliver",
        "3",
        "--backoff-ms",
        "100,500",
        "--start",
        "all",
        "--url",
        url,
    )
    assert code == 0, err
    assert json.loads(out) == {"name": "resize", "created": True}
    await bus.emit_many([{"topic": "img.png", "payload": i} for i in range(3)])
    code, out, _ = await run_cli("consumers", "ls", "--url", url)
    [listed] = ndjson(out)
    assert (
        listed["name"] == "resize"
        and listed["backoff_ms"] == [100, 500]
        and listed["stats"]["pending"] == 3
    )
    code, out, _ = await run_cli("consumers", "info", "resize", "--url", url)
    assert json.loads(out)["max_deliver"] == 3
    code, _, err = await run_cli("consumers", "add", "resize", "--url", url)
    assert code == 1 and "already exists" in err and "--replace" in err
    code, _, err = await run_cli("consumers", "add", "x", "--backoff-ms", "1s", "--url", url)
    assert code == 2 and "--backoff-ms 1s" in err
    code, _, err = await run_cli("consumers", "add", "x", "--start", "yesterday", "--url", url)
    assert code == 2 and "--start yesterday" in err
    code, out, _ = await run_cli("consumers", "rm", "resize", "--url", url)
    assert code == 0 and json.loads(out) == {"name": "resize", "deleted": True}
    code, _, err = await run_cli("consumers", "info", "resize", "--url", url)
    assert code == 1 and "no consumer 'resize'" in err


async def test_consume_prints_acks_and_peeks(work: EventBusApp, bus: EventBusClient) -> None:
    url = work.url("work")
    await bus.create_consumer("c", topic="t", start="all")
    await bus.emit_many([{"topic": "t", "payload": i} for i in range(5)])
    code, out, err = await run_cli(
        "consume", "c", "--max", "2", "--url", url
    )  # a look: handed back at once
    assert code == 0, err
    assert [m["event"]["payload"] for m in ndjson(out)] == [0, 1]
    code, out, err = await run_cli("consume", "c", "--max", "5", "--ack", "--url", url)
    assert code == 0, err
    assert sorted(m["event"]["payload"] for m in ndjson(out)) == [0, 1, 2, 3, 4]
    assert (await bus.get_consumer("c"))["stats"]["acked"] == 5


async def test_consume_exec_acks_on_exit_0_and_nacks_otherwise(
    work: EventBusApp, bus: EventBusClient, tmp_path: Path
) -> None:
    url = work.url("work")
    script = tmp_path / "job.py"
    script.write_text(
        "import json, sys\n"
        "event = json.load(sys.stdin)\n"
        "sys.exit(0 if event['payload'] % 2 == 0 else 1)\n"
    )
    await bus.create_consumer("jobs", topic="t", start="all", max_deliver=1)
    await bus.emit_many([{"topic": "t", "payload": i} for i in range(4)])
    code, _, err = await run_cli(
        "consume", "jobs", "--max", "4", "--exec", f"{sys.executable} {script}", "--url", url
    )
    assert code == 0, err
    assert "2 acked, 2 nacked" in err
    stats = (await bus.get_consumer("jobs"))["stats"]
    assert (stats["acked"], stats["dead"]) == (
        2,
        2,
    )  # max_deliver 1: a nack ends in the dead letters
    code, out, _ = await run_cli("dead-letters", "jobs", "--url", url)
    assert [(d["event"]["payload"], d["reason"]) for d in ndjson(out)] == [
        (1, "max_deliver"),
        (3, "max_deliver"),
    ]
    code, out, _ = await run_cli("dead-letters", "jobs", "--redrive", "--url", url)
    assert json.loads(out) == {"consumer": "jobs", "redriven": 2}
    assert sorted(m.event.payload for m in await bus.fetch("jobs", max=10)) == [1, 3]
    code, _, err = await run_cli("consume", "jobs", "--ack", "--exec", "true", "--url", url)
    assert code == 2 and "either --ack or --exec" in err
