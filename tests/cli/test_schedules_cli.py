"""`eventbus emit --delay/--at` and `eventbus schedules …` as a user runs them (DESIGN.md §11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from eventbus_client import connect
from eventbus_core.event import now_ms
from tests.conftest import start_buses

from .test_cli_basic import run_cli


async def test_emit_with_delay_or_at_schedules_the_event(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "t"}) as app:
        url = app.url("t")
        before = now_ms()
        code, out, err = await run_cli(
            "emit", "later", "--payload", '{"n": 1}', "--delay", "10m", "--url", url
        )
        assert code == 0, err
        scheduled = json.loads(out)
        assert 600_000 <= scheduled["deliver_at"] - before < 660_000 and not scheduled["duplicate"]
        at = datetime.fromtimestamp(before / 1000 + 30 * 86_400, UTC).replace(microsecond=0)
        code, out, err = await run_cli(
            "emit", "later", "--at", at.isoformat().replace("+00:00", "Z"), "--url", url, "--json"
        )
        assert code == 0, err
        assert json.loads(out)["deliver_at"] == int(at.timestamp()) * 1000
        async with await connect(url) as bus:
            pending = (await bus.list_scheduled())["scheduled"]
            assert [p["schedule_id"] for p in pending] == [
                scheduled["schedule_id"],
                json.loads(out)["schedule_id"],
            ]
            assert (await bus.poll("later")).events == []

        for args, says in [
            (["--at", "10m"], "--at '10m' is not a time"),
            (["--delay", "soon"], "--delay 'soon' is not a duration"),
            (["--delay", "1m", "--at", "2099-01-01"], "give --delay or --at, not both"),
        ]:
            code, out, err = await run_cli("emit", "later", *args, "--url", url)
            assert code == 2 and says in err and err.count("\n") == 1, err
        code, out, err = await run_cli("emit", "later", "--delay", "400d", "--url", url)
        assert code == 1 and "delay_ms: must be at most" in err and err.count("\n") == 1, err


async def test_schedules_add_ls_show_disable_enable_rm(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "t", "persist": True, "storage_path": "t.db"}) as app:
        url = app.url("t")
        code, out, err = await run_cli(
            "schedules",
            "add",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--topic",
            "reports.nightly",
            "--payload",
            '{"kind": "daily"}',
            "--url",
            url,
            "--json",
        )
        assert code == 0, err
        created = json.loads(out)
        assert created["created"] is True and created["next_tick"] > now_ms()
        code, out, err = await run_cli(
            "schedules", "add", "beat", "--every", "30s", "--topic", "health.ping", "--url", url
        )
        assert code == 0 and json.loads(out)["next_tick"] % 30_000 == 0, err

        code, out, err = await run_cli("schedules", "ls", "--url", url)
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["id"] for r in rows] == ["beat", "nightly"] and rows[0]["every_ms"] == 30_000
        code, out, err = await run_cli("schedules", "show", "nightly", "--url", url)
        shown = json.loads(out)
        assert shown["cron"] == "30 2 * * *" and shown["timezone"] == "Europe/Berlin"
        assert shown["event"] == {"topic": "reports.nightly", "payload": {"kind": "daily"}}

        code, out, err = await run_cli("schedules", "disable", "nightly", "--url", url, "--json")
        assert code == 0 and json.loads(out) == {
            "id": "nightly",
            "enabled": False,
            "next_tick": None,
        }, err
        code, out, err = await run_cli("schedules", "enable", "nightly", "--url", url, "--json")
        assert json.loads(out)["next_tick"] == created["next_tick"]
        code, out, err = await run_cli("schedules", "rm", "beat", "--url", url, "--json")
        assert code == 0 and json.loads(out) == {"id": "beat", "deleted": True}

        # Errors: one line each, in CLI words.
        code, out, err = await run_cli(
            "schedules", "add", "nightly", "--cron", "@daily", "--topic", "x", "--url", url
        )
        assert code == 1 and "pass --replace" in err and err.count("\n") == 1, err
        code, out, err = await run_cli(
            "schedules", "add", "bad", "--cron", "61 * * * *", "--topic", "x", "--url", url
        )
        assert code == 1 and "'61 * * * *'" in err and "-32602" in err, err
        code, out, err = await run_cli("schedules", "add", "bad", "--topic", "x", "--url", url)
        assert code == 2 and "--cron EXPR or --every DURATION" in err, err
        code, out, err = await run_cli("schedules", "rm", "beat", "--url", url)
        assert code == 1 and "no schedule 'beat'" in err, err
