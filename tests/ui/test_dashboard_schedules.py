"""The Schedules tab (DESIGN §11) against a real bus: its schedules drawn from the bus's
own definitions, a tick count that moves while the tab is shown, the pending delayed
events next due first, `space` switching a schedule, the hints on a bus without any,
and a bus whose server does not know the methods. Textual's pilot, a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventbus_cli.output import format_ts
from eventbus_cli.ui import schedules
from eventbus_cli.ui.app import DashboardApp
from eventbus_cli.ui.schedules import ADD_HINT, MISSING, NO_DELAYED, DelayedTable, ScheduleTable
from eventbus_client import connect
from eventbus_core.errors import StorageUnavailable
from eventbus_server import rpc
from tests.conftest import start_buses

from .test_dashboard import dashboard, until


def notified(app: DashboardApp, text: str) -> bool:
    return any(text in str(n.message) for n in app._notifications)


async def test_the_schedules_tab_shows_the_schedules_their_ticks_and_the_delayed_events(
    tmp_path: Path,
) -> None:
    # Rules are off on this bus (the default): schedules do not need them.
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        await bus.create_schedule("heartbeat", {"topic": "health.ping"}, every_ms=1000)
        await bus.create_schedule(
            "nightly", {"topic": "reports.nightly"}, cron="30 2 * * *", timezone="Europe/Berlin"
        )
        await bus.create_schedule("paused", {"topic": "jobs.sweep"}, every_ms=60_000, enabled=False)
        soon = await bus.emit("reminders.soon", {"n": 0}, delay_ms=5_000)
        await bus.emit("reminders.later", {"n": 1}, delay_ms=600_000)
        await bus.emit("campaign.start", {"n": 2}, delay_ms=86_400_000)
        assert soon is not None

        async with dashboard(server.url("main"), tab="5") as (app, pilot):
            table = app.query_one("#schedule-table", ScheduleTable)
            delayed = app.query_one("#delayed-table", DelayedTable)
            assert app.focused is table  # 5 gave it the keys
            await until(pilot, lambda: table.row_count == 3)
            assert table.column(0) == ["heartbeat", "nightly", "paused"]  # by id
            by_id = {row[0]: row for row in (table.cells(r) for r in range(3))}
            # schedule, on, cadence, next tick, in, ticks, last tick, zone, topic
            nightly = by_id["nightly"]
            assert nightly[1:3] == ("on", "cron 30 2 * * *") and nightly[7:] == (
                "Europe/Berlin",
                "reports.nightly",
            )
            expected = await bus.get_schedule("nightly")
            assert expected["next_tick"] is not None
            assert nightly[3] == format_ts(expected["next_tick"])[:19]  # to the second, UTC
            assert nightly[3].endswith(":30:00") and nightly[4].endswith("h")
            assert by_id["paused"][1:5] == ("off", "every 1m", "-", "-")
            assert by_id["heartbeat"][2] == "every 1s" and by_id["heartbeat"][7] == "-"
            assert table.cell_style(0, 1) == "green" and table.cell_style(2, 1) == "dim"

            # The delayed events, next due first, with their count.
            await until(pilot, lambda: delayed.row_count == 3)
            assert delayed.column(2) == ["reminders.soon", "reminders.later", "campaign.start"]
            assert delayed.column(3)[0] == soon.schedule_id
            assert delayed.column(1)[1:] == ["10m", "24h"]
            assert delayed.border_title == "delayed events: 3 pending, the next due first"

            # Kept current while shown: the heartbeat's ticks move, as the bus counts them;
            # the delayed event falls due and leaves the list for the log.
            ticks = int(table.cells(0)[5])
            await until(pilot, lambda: int(table.cells(0)[5]) >= ticks + 2)
            assert table.cells(0)[6] != "-"
            await until(pilot, lambda: delayed.row_count == 2)
            assert delayed.column(2) == ["reminders.later", "campaign.start"]
            assert [e.topic for e in (await bus.poll("reminders.soon")).events] == [
                "reminders.soon"
            ]
            on_bus = await bus.get_schedule("heartbeat")
            assert on_bus["ticks"] >= int(table.cells(0)[5])

            # space switches the selected schedule, and the cursor stays on it.
            await pilot.press("end", "space")
            await until(pilot, lambda: notified(app, "schedule paused is on: next tick"))
            await until(pilot, lambda: table.cells(2)[1] == "on")
            assert table.cells(2)[3] != "-" and (await bus.get_schedule("paused"))["enabled"]
            assert table.selected is not None and table.selected["id"] == "paused"
            await pilot.press("home", "space")
            await until(pilot, lambda: notified(app, "schedule heartbeat is off"))
            await until(pilot, lambda: table.cells(0)[1:5:3] == ("off", "-"))
            stopped = (await bus.get_schedule("heartbeat"))["ticks"]
            assert not (await bus.get_schedule("heartbeat"))["enabled"]
            assert int(table.cells(0)[5]) == stopped


async def test_a_bus_without_schedules_says_how_to_add_them_and_a_new_one_appears(
    tmp_path: Path,
) -> None:
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        async with dashboard(server.url("main"), tab="5") as (app, pilot):
            table = app.query_one("#schedule-table", ScheduleTable)
            delayed = app.query_one("#delayed-table", DelayedTable)
            await until(pilot, lambda: table.empty_text == ADD_HINT)
            assert table.row_count == 0 and delayed.row_count == 0
            assert "eventbus schedules add ID --every 1m" in table.render_line(1).text
            assert delayed.empty_text == NO_DELAYED
            assert "eventbus emit TOPIC --delay 10m" in delayed.render_line(1).text
            assert table.border_title == "schedules: 0"
            await pilot.press("space")  # nothing selected: nothing asked
            await bus.create_schedule("hourly", {"topic": "jobs.hourly"}, cron="@hourly")
            await until(pilot, lambda: table.column(0) == ["hourly"])
            assert table.render_line(1).text.split()[:3] == ["hourly", "on", "cron"]
            assert not notified(app, "could not")


async def test_a_bus_that_does_not_know_schedules_says_so_in_the_tab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server from before schedules answers method-not-found: a line in the tab, the
    bus still connected, and the other tabs working."""
    monkeypatch.delitem(rpc.METHODS, "list_schedules")
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        async with dashboard(server.url("main"), tab="5") as (app, pilot):
            table = app.query_one("#schedule-table", ScheduleTable)
            await until(pilot, lambda: table.empty_text == MISSING)
            assert MISSING in table.render_line(1).text and table.row_count == 0
            await bus.emit("still.here", {})
            await pilot.press("1")
            await until(pilot, lambda: app.stream.row_count == 1)
            assert app.bus.state == "connected"


async def test_a_refused_read_stays_in_the_tab_and_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus answers the read with an error (its storage away): the tab says so, the bus
    stays connected, and the next poll, answered, brings the schedules back."""
    answered = rpc.METHODS["list_scheduled"]

    async def storage_away(ctx: rpc.CallContext, params: dict[str, Any]) -> Any:
        raise StorageUnavailable("storage unavailable: the disk went away")

    monkeypatch.setitem(rpc.METHODS, "list_scheduled", storage_away)
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        await bus.create_schedule("hourly", {"topic": "jobs.hourly"}, cron="@hourly")
        async with dashboard(server.url("main"), tab="5") as (app, pilot):
            table = app.query_one("#schedule-table", ScheduleTable)
            said = "could not read the schedules: storage unavailable: the disk went away"
            await until(pilot, lambda: table.empty_text == said)
            assert said in table.render_line(1).text and app.bus.state == "connected"
            monkeypatch.setitem(rpc.METHODS, "list_scheduled", answered)
            await until(pilot, lambda: table.column(0) == ["hourly"])
            assert table.empty_text == ADD_HINT


async def test_the_tab_reads_a_page_of_each_and_says_when_there_are_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never the whole list: a page of schedules and of delayed events (pages of 5 here,
    of 200 and 100 in the dashboard), the titles saying there are more."""
    monkeypatch.setattr(schedules, "SCHEDULE_PAGE", 5)
    monkeypatch.setattr(schedules, "DELAYED_PAGE", 5)
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        for n in range(7):
            await bus.create_schedule(f"s{n}", {"topic": "jobs.tick"}, cron="@daily")
        await bus.schedule_many(
            [{"topic": f"later.{n}", "delay_ms": 600_000 + n * 1000} for n in range(7)]
        )
        async with dashboard(server.url("main"), tab="5") as (app, pilot):
            table = app.query_one("#schedule-table", ScheduleTable)
            delayed = app.query_one("#delayed-table", DelayedTable)
            await until(pilot, lambda: table.row_count == 5 and delayed.row_count == 5)
            assert table.column(0) == ["s0", "s1", "s2", "s3", "s4"]  # the first, by id
            assert table.border_title == (
                "schedules: the first 5 by id (eventbus schedules ls lists them all)"
            )
            assert delayed.column(2) == [f"later.{n}" for n in range(5)]  # the next due
            assert delayed.border_title == "delayed events: 5+ pending, the next 5 due first"
            await bus.delete_schedule("s6")
            await bus.delete_schedule("s5")
            await until(pilot, lambda: table.border_title == "schedules: 5")
