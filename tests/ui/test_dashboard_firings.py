"""The dashboard under a rule that fails and retries (issue 12, items 3-5): firings keyed
by firing id, counts from the bus, follow mode, the filter box, the help, `r`, and the
detail's chain down. Textual's pilot against a real server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.screen import Screen
from textual.widgets import Static

from eventbus_cli.ui.app import DashboardApp
from eventbus_cli.ui.consumers import ConsumerTable
from eventbus_cli.ui.filter_box import FilterBox
from eventbus_cli.ui.lines import LineTable
from eventbus_cli.ui.model import BusView
from eventbus_cli.ui.schedules import ScheduleTable
from eventbus_cli.ui.screens import HELP_KEYS, EventScreen, HelpScreen
from eventbus_cli.ui.tables import EventStream, FiringTable, RecentFirings
from eventbus_client import EventBusClient, connect
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses
from tests.rules import python_tools

from .test_dashboard import SIZE, dashboard, until

PICKY = {
    "match": "trn:user:test:python:picky:*",
    "kind": "python",
    "function": "tests.rules.python_tools:picky",
}
RULE = {
    "id": "pick",
    "topic": "jobs.*",
    "action": {
        "type": "InvokeTool",
        "tool_id": "trn:user:test:python:picky:v1",
        "input": {"n": "{{ $.payload.n }}"},
    },
}


def picky_bus(tmp_path: Path) -> dict[str, Any]:
    """A SQLite bus whose rule fails for the refused `n`s, twice a firing (one retry)."""
    return {
        "id": "main",
        "persist": True,
        "storage_path": str(tmp_path / "main.db"),
        "enable_rules": True,
        "tools": [PICKY],
        "retry": {"attempts": 2, "backoff_ms": 1},
    }


@pytest.fixture
async def picky_app(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    python_tools.reset()
    async with start_buses(tmp_path, picky_bus(tmp_path)) as running:
        yield running


async def all_firings(bus: EventBusClient) -> list[dict[str, Any]]:
    firings: list[dict[str, Any]] = []
    while page := await bus.list_firings(
        since=firings[-1]["firing_id"] if firings else 0, limit=1000
    ):
        firings += page
    return firings


def visible(table: LineTable) -> range:
    """The rows on screen."""
    top = round(table.scroll_y)
    return range(top, min(table.row_count, top + table.scrollable_content_region.height - 1))


async def test_firings_keyed_by_id_under_a_rule_that_fails_and_retries(
    picky_app: EventBusApp,
) -> None:
    server = picky_app.buses["main"]
    python_tools.STATE["refuse"] = {n for n in range(60) if n % 4 == 0}
    async with await connect(picky_app.url("main")) as bus:
        await bus.register_rule(RULE)
        # Some firings happened before the dashboard started: it lists them, and subscribes.
        await bus.emit_many([{"topic": "jobs.a", "payload": {"n": n}} for n in range(30)])
        await server.wait_idle()
        async with dashboard(picky_app.url("main")) as (app, pilot):
            await bus.emit_many([{"topic": "jobs.b", "payload": {"n": n}} for n in range(30, 60)])
            await server.wait_idle()
            # Dead letters run again: they fail again under the same firing ids, then some pass.
            assert await bus.retry_firings(rule_id="pick") == 15
            await server.wait_idle()
            python_tools.STATE["refuse"] = {0, 4, 8}
            assert await bus.retry_firings(rule_id="pick") == 15
            await server.wait_idle()

            expected = await all_firings(bus)
            failed = [f for f in expected if f["status"] == "failed"]
            assert (
                len(expected) == 60
                and len(failed) == 3
                and (await bus.get_rule("pick"))["failed"] == 3
            )
            table = app.query_one("#firing-table", FiringTable)
            await until(
                pilot,
                lambda: [f["status"] for f in table.firings] == [f["status"] for f in expected],
            )
            ids = [int(i) for i in table.column(0)]
            assert ids == [
                f["firing_id"] for f in expected
            ]  # in id order, none twice, none missing
            assert [f["attempts"] for f in table.firings] == [f["attempts"] for f in expected]
            # The header counts the bus's dead letters, not the rows the screen holds.
            await until(pilot, lambda: "· 3 failed firings" in app.sub_title)
            recent = app.query_one("#recent", RecentFirings)
            shown = [int(i) for i in recent.column(3)]
            assert (
                shown == sorted(set(shown), reverse=True) and shown[0] == expected[-1]["firing_id"]
            )


async def test_the_stream_and_the_firings_follow_a_burst_until_the_user_scrolls_away(
    tmp_path: Path,
) -> None:
    """Issue 12, item 4: on an empty bus, 90 events at once left the stream on events 1-28."""
    async with start_buses(tmp_path, {"id": "main", "enable_rules": True}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            await bus.register_rule(
                {"id": "relay", "topic": "in.*", "action": {"type": "EmitEvent", "topic": "out.x"}}
            )
            await bus.emit_many([{"topic": "in.a", "payload": n} for n in range(90)])
            stream = app.query_one("#stream", EventStream)
            await until(pilot, lambda: stream.row_count == 180)
            await pilot.pause(0.1)
            assert stream.row_count - 1 in visible(stream)  # the newest event is on screen

            await pilot.press("2")  # the Firings tab filled while hidden
            table = app.query_one("#firing-table", FiringTable)
            await until(pilot, lambda: table.row_count == 90)
            await pilot.pause(0.1)
            assert table.cursor == 89 and 89 in visible(table)
            table.focus()
            await pilot.press("pageup")  # away from the newest: it stays put
            held = table.selected
            assert held is not None and held["firing_id"] < 90
            await bus.emit_many([{"topic": "in.b", "payload": n} for n in range(30)])
            await until(pilot, lambda: table.row_count == 120)
            assert table.selected == held and table.cursor in visible(table)
            await pilot.press("end")  # back to the newest: following again
            await bus.emit("in.c", 1)
            await until(pilot, lambda: table.row_count == 121)
            await pilot.pause(0.1)
            assert table.cursor == 120 and 120 in visible(table)


async def test_the_filter_takes_keys_only_when_asked_and_escape_gives_them_back(
    tmp_path: Path,
) -> None:
    """Issue 12, item 5: after Tab, digits and space went into the filter and blanked the stream."""
    async with start_buses(tmp_path, {"id": "main"}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            await bus.emit_many([{"topic": t, "payload": 1} for t in ("a.one", "b.two", "a.three")])
            stream = app.query_one("#stream", EventStream)
            await until(pilot, lambda: stream.row_count == 3)
            box = app.query_one("#filter", FilterBox)
            for _ in range(8):  # round the focus chain, twice over: never the filter box
                await pilot.press("tab")
                assert app.focused is not box
            await pilot.press("1", "space", "p", "p", "2", "1")
            assert box.value == "" and stream.row_count == 3

            await pilot.press("slash", *"a.>")
            assert app.focused is box and box.value == "a.>"
            await until(pilot, lambda: stream.column(2) == ["a.one", "a.three"])
            await pilot.press("escape")
            assert (
                app.focused is stream and box.value == "a.>"
            )  # the filter stays, the keys go back
            await pilot.press("2", "1", "space")
            assert box.value == "a.>"
            assert app.query_one("#tabs").active == "events"  # type: ignore[attr-defined]

            await pilot.press("slash", "backspace", "backspace", "backspace", "enter")
            assert app.focused is stream and box.value == ""
            await until(pilot, lambda: stream.row_count == 3)
            await pilot.click("#filter")
            assert app.focused is box


def test_the_help_lists_every_key() -> None:
    """Every binding of the dashboard, its tables and screens, and Textual's own, is in the help."""
    said = {word for keys, _ in HELP_KEYS for word in keys.split()}
    names = {
        "question_mark": "?",
        "slash": "/",
        "up": "↑",
        "down": "↓",
        "pageup": "pgup",
        "pagedown": "pgdn",
    }
    holders: list[Any] = [
        DashboardApp,
        EventStream,
        FiringTable,
        ConsumerTable,
        ScheduleTable,
        LineTable,
        FilterBox,
        HelpScreen,
        EventScreen,
        App,
        Screen,
    ]
    missing = [
        key
        for holder in holders
        for binding in holder.BINDINGS
        for key in binding.key.split(",")
        if key != "super+c" and names.get(key, key) not in said
    ]
    assert missing == []
    assert "ctrl+p" in said  # the command palette


async def test_r_on_a_failed_firing_retries_it_under_the_same_id(picky_app: EventBusApp) -> None:
    python_tools.STATE["refuse"] = {2}
    async with await connect(picky_app.url("main")) as bus:
        await bus.register_rule(RULE)
        async with dashboard(picky_app.url("main")) as (app, pilot):
            await bus.emit_many([{"topic": "jobs.a", "payload": {"n": n}} for n in range(4)])
            await pilot.press("2")
            table = app.query_one("#firing-table", FiringTable)
            await until(
                pilot, lambda: [f["status"] for f in table.firings] == ["ok", "ok", "failed", "ok"]
            )
            await until(pilot, lambda: "· 1 failed firing" in app.sub_title)
            table.focus()
            await pilot.press("r")  # on the newest, an ok one: nothing to retry
            await until(
                pilot,
                lambda: any(
                    "is ok: only a failed firing is retried" in str(n.message)
                    for n in app._notifications
                ),
            )
            python_tools.STATE["refuse"] = set()
            await pilot.press("up", "r")
            failed_id = table.firings[2]["firing_id"]
            await until(pilot, lambda: table.firings[2]["status"] == "ok")
            assert [int(i) for i in table.column(0)] == [
                f["firing_id"] for f in await all_firings(bus)
            ]
            assert table.firings[2]["firing_id"] == failed_id and table.firings[2]["attempts"] == 3
            await until(
                pilot,
                lambda: (
                    "failed firing" not in app.sub_title or "· 0 failed firings" in app.sub_title
                ),
            )


async def test_the_detail_lists_what_an_event_caused_down_the_chain(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main", "enable_rules": True}) as server:
        app = DashboardApp([BusView("main", server.url("main"))])
        async with app.run_test(size=SIZE) as pilot, await connect(server.url("main")) as bus:
            await until(pilot, lambda: app.bus.state == "connected")
            for rule_id, topic, then in (
                ("first", "chain.a", "chain.b"),
                ("second", "chain.b", "chain.c"),
                ("fan", "chain.a", "chain.d"),
            ):
                await bus.register_rule(
                    {"id": rule_id, "topic": topic, "action": {"type": "EmitEvent", "topic": then}}
                )
            root = await bus.emit("chain.a", {"n": 1})
            stream = app.query_one("#stream", EventStream)
            await until(pilot, lambda: stream.row_count == 4)
            await pilot.press("2")
            table = app.query_one("#firing-table", FiringTable)
            await until(pilot, lambda: table.row_count == 3)
            table.focus()
            await pilot.press("home", "enter")  # a firing's event: the root
            await until(pilot, lambda: isinstance(app.screen, EventScreen))
            screen = app.screen
            assert isinstance(screen, EventScreen) and screen.event["event_id"] == root.event_id
            chain = screen.query_one("#chain", Static)
            await until(pilot, lambda: "chain.c" in str(chain.render()))
            lines = [line.rstrip() for line in str(chain.render()).splitlines()]
            assert lines[0].startswith(f"▶ #{root.event_id} chain.a")
            # What it caused, indented by generation: b (and what b caused: c), and d.
            depth = {line.strip().split()[0]: len(line) - len(line.lstrip()) for line in lines[1:]}
            topics = {line.strip().split()[1]: line.strip().split()[0] for line in lines[1:]}
            assert set(topics) == {"chain.b", "chain.c", "chain.d"}
            assert depth[topics["chain.c"]] > depth[topics["chain.b"]] == depth[topics["chain.d"]]
            fired = str(screen.query_one("#event-firings", Static).render())
            assert "rule first: ok" in fired and "rule fan: ok" in fired
