"""The dashboard against real buses: Textual's pilot presses keys, the real client
talks to a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from eventbus_cli.ui.app import DashboardApp, EventScreen, HelpScreen
from eventbus_cli.ui.lines import LineTable
from eventbus_cli.ui.model import BusView, EventFilter, ago, sparkline
from eventbus_cli.ui.tables import MAX_ROWS as STREAM_ROWS
from eventbus_cli.ui.tables import BusTable, EventStream
from eventbus_client import connect
from tests.conftest import start_buses
from tests.ports import closed_port
from tests.processes import ServerProcess

SIZE = (140, 44)


async def until(pilot: Pilot[Any], check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the dashboard never got there"
        await pilot.pause(0.05)


@contextlib.asynccontextmanager
async def dashboard(
    url: str, *, tab: str | None = None
) -> AsyncIterator[tuple[DashboardApp, Pilot[Any]]]:
    """The dashboard on bus `main` at `url`, once connected (and on `tab`, a key, if given)."""
    app = DashboardApp([BusView("main", url)])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.bus.state == "connected")
        if tab is not None:
            await pilot.press(tab)
        yield app, pilot


def rows(app: DashboardApp, table_id: str, column: int = 0) -> list[str]:
    widget = app.query_one(table_id)
    if isinstance(widget, LineTable):
        return widget.column(column)
    table = app.query_one(table_id, DataTable)
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def test_topics_events_and_firings_appear_as_they_happen(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main", "enable_rules": True}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            await bus.register_rule(
                {
                    "id": "relay",
                    "topic": "orders.created",
                    "action": {"type": "EmitEvent", "topic": "orders.seen"},
                }
            )
            await bus.emit("orders.created", {"n": 1}, source_trn="trn:user:alice:cli:v1")
            await bus.emit("repo.pushed", {"repo": "acme/api"})
            await until(pilot, lambda: len(rows(app, "#stream")) == 3)
            # The topics table follows within a second (it redraws with the per-second rates).
            await until(
                pilot,
                lambda: (
                    set(rows(app, "#topics")) == {"orders.created", "orders.seen", "repo.pushed"}
                ),
            )
            assert rows(app, "#stream", 2) == ["orders.created", "orders.seen", "repo.pushed"]
            await until(pilot, lambda: rows(app, "#firing-table", 2) == ["relay"])
            assert rows(app, "#firing-table", 4) == ["ok"]
            await pilot.press("3")
            await until(pilot, lambda: rows(app, "#rule-table") == ["relay"])


async def test_filter_narrows_the_stream_and_pause_holds_it(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main"}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            await bus.emit("a.one", 1, source_trn="trn:user:alice:cli:v1")
            await bus.emit("a.two", 2, source_trn="trn:org:acme:ci:v1")
            await bus.emit("b.one", 3, source_trn="trn:user:bob:cli:v1")
            await until(pilot, lambda: len(rows(app, "#stream")) == 3)

            await pilot.press("slash")
            await pilot.press(*"source:trn:user:*")
            await until(pilot, lambda: rows(app, "#stream", 2) == ["a.one", "b.one"])
            app.query_one("#filter", Input).value = "a.> source:trn:user:"
            await until(pilot, lambda: rows(app, "#stream", 2) == ["a.one"])
            app.query_one("#filter", Input).value = ""
            await until(pilot, lambda: len(rows(app, "#stream")) == 3)

            app.query_one("#stream", EventStream).focus()
            await pilot.press("p")
            await bus.emit("c.later", 4)
            await until(pilot, lambda: len(app.bus.events) == 4)  # it arrived
            await pilot.pause(0.6)
            assert len(rows(app, "#stream")) == 3  # but the paused stream holds still
            assert "PAUSED" in app.sub_title
            await pilot.press("p")
            await until(pilot, lambda: rows(app, "#stream", 2)[-1] == "c.later")


async def test_enter_shows_the_envelope_and_its_causal_chain(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main", "enable_rules": True}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
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
            cause = await bus.emit("orders.created", {"order": "o-1"}, correlation_id="c-7")
            await until(pilot, lambda: len(rows(app, "#stream")) == 2)

            app.query_one("#stream", EventStream).focus()
            await pilot.press("end", "enter")  # the derived event
            await until(pilot, lambda: isinstance(app.screen, EventScreen))
            screen = app.screen
            assert isinstance(screen, EventScreen)
            assert screen.event["topic"] == "orders.seen"
            assert screen.event["metadata"]["caused_by"]["event_id"] == cause.event_id
            body = json.dumps(screen.event, indent=2)
            assert '"correlation_id": "c-7"' in body
            chain = screen.query_one("#chain", Static)
            await until(
                pilot,
                lambda: (
                    "orders.created" in str(chain.render()) and "rule relay" in str(chain.render())
                ),
            )
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, EventScreen))
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")


async def test_space_toggles_a_rule_on_and_off(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main", "enable_rules": True}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await bus.register_rule(
                {"id": "r1", "topic": "x", "action": {"type": "EmitEvent", "topic": "y"}}
            )
            await until(
                pilot, lambda: app.bus.state == "connected" and rows(app, "#rule-table") == ["r1"]
            )
            await pilot.press("3")
            app.query_one("#rule-table", DataTable).focus()
            await pilot.press("space")
            await until(pilot, lambda: rows(app, "#rule-table", 1) == ["off"])
            assert (await bus.get_rule("r1"))["enabled"] is False


async def test_an_unreachable_bus_says_why_and_the_others_stay_live(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main"}) as server:
        app = DashboardApp(
            [
                BusView("gone", f"tcp://127.0.0.1:{closed_port()}"),
                BusView("main", server.url("main")),
            ]
        )
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(
                pilot,
                lambda: (
                    app.buses[0].state.startswith("unreachable")
                    and app.buses[1].state == "connected"
                ),
            )
            assert "refused" in app.buses[0].state or "failed" in app.buses[0].state
            app.query_one("#buses", BusTable).move_to(1)
            await bus.emit("still.live", 1)
            await until(pilot, lambda: rows(app, "#stream", 2) == ["still.live"])


async def test_the_stream_follows_until_the_cursor_moves_and_keeps_only_the_newest_rows(
    tmp_path: Path,
) -> None:
    async with start_buses(tmp_path, {"id": "main"}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            first = await bus.emit_many([{"topic": "s.x", "payload": i} for i in range(5)])
            stream = app.query_one("#stream", EventStream)
            await until(pilot, lambda: stream.row_count == 5)
            stream.focus()
            await pilot.press("up", "up")  # off the newest row: stop following
            held = first[2]
            assert stream.events[stream.cursor]["event_id"] == held
            await bus.emit_many([{"topic": "s.w", "payload": i} for i in range(3)])
            await until(pilot, lambda: stream.row_count == 8)
            assert stream.events[stream.cursor]["event_id"] == held  # it stayed on its event
            await bus.emit_many([{"topic": "s.y", "payload": i} for i in range(400)])
            await until(
                pilot, lambda: stream.row_count == STREAM_ROWS and stream.column(2)[-1] == "s.y"
            )
            # The held event scrolled out of the kept rows: the cursor stays at the oldest kept.
            assert stream.cursor == 0
            await pilot.press("end")  # back on the newest row: following again
            await bus.emit("s.z", 1)
            await until(pilot, lambda: stream.column(2)[-1] == "s.z")
            assert stream.cursor == stream.row_count - 1
            ids = [int(i) for i in stream.column(0)]
            assert ids == sorted(set(ids)) and len(ids) == STREAM_ROWS
            await pilot.press("pageup", "enter")
            await until(pilot, lambda: isinstance(app.screen, EventScreen))
            assert isinstance(app.screen, EventScreen) and app.screen.event["topic"] == "s.y"


async def test_a_click_on_an_event_opens_it(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main"}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            await bus.emit_many([{"topic": f"c.{i}", "payload": i} for i in range(3)])
            await until(pilot, lambda: len(rows(app, "#stream")) == 3)
            await pilot.click("#stream", offset=(5, 2))  # the line under the header is row 0
            await until(pilot, lambda: isinstance(app.screen, EventScreen))
            assert isinstance(app.screen, EventScreen) and app.screen.event["topic"] == "c.1"


async def test_a_bus_with_a_token_is_unauthorized_without_it(tmp_path: Path) -> None:
    async with start_buses(
        tmp_path, {"id": "locked", "auth_token_env": "LOCK"}, env={"LOCK": "s3cret"}
    ) as server:
        app = DashboardApp(
            [
                BusView("locked", server.url("locked")),
                BusView("opened", server.url("locked"), "s3cret"),
            ]
        )
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: (
                    app.buses[0].state.startswith("unauthorized")
                    and app.buses[1].state == "connected"
                ),
            )


@pytest.mark.slow
async def test_reconnects_after_a_server_restart_and_resumes_without_gaps(tmp_path: Path) -> None:
    port = closed_port()
    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps(
            [{"id": "r", "listen": f"127.0.0.1:{port}", "persist": True, "storage_path": "r.db"}]
        )
    )
    server = await ServerProcess.start(config)
    app = DashboardApp([BusView("r", f"tcp://127.0.0.1:{port}")])
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.bus.state == "connected")
            async with await connect(server.url("r")) as bus:
                await bus.emit_many([{"topic": "r.x", "payload": i} for i in range(3)])
            await until(pilot, lambda: len(rows(app, "#stream")) == 3)
            server.proc.send_signal(signal.SIGTERM)
            await server.proc.wait()
            await until(pilot, lambda: app.bus.state != "connected", timeout_s=10)
            server = await ServerProcess.start(config)
            async with await connect(server.url("r")) as bus:
                await bus.emit_many([{"topic": "r.x", "payload": i} for i in range(3, 6)])
            await until(pilot, lambda: len(rows(app, "#stream")) == 6, timeout_s=20)
            await until(pilot, lambda: app.bus.state == "connected", timeout_s=10)
            ids = [int(i) for i in rows(app, "#stream")]
            assert ids == sorted(set(ids)) and len(ids) == 6
    finally:
        server.proc.send_signal(signal.SIGTERM)
        await server.proc.wait()


def test_the_filter_box_language() -> None:
    event = {"topic": "repo.pushed", "source_trn": "trn:user:alice:cli:v1", "target_trn": None}
    assert (
        EventFilter("")(event)
        and EventFilter("repo.*")(event)
        and not EventFilter("orders.>")(event)
    )
    assert EventFilter("source:trn:user:*:cli:*")(event) and not EventFilter("target:trn:user:")(
        event
    )
    with pytest.raises(ValueError, match="'source:user:x'"):
        EventFilter("source:user:x")


def test_sparkline_scales_to_the_busiest_second() -> None:
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([0, 5, 10]) == "▁▅█"


def test_ages_read_like_kubectl() -> None:
    now = 1_000_000_000
    assert ago(None, now) == "-"
    assert [
        ago(now - ms, now)
        for ms in (0, 42_000, 300_000, 3 * 3_600_000, 47 * 3_600_000, 3 * 86_400_000)
    ] == [
        "0s ago",
        "42s ago",
        "5m ago",
        "3h ago",
        "47h ago",
        "3d ago",
    ]
