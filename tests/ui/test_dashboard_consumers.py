"""The Consumers tab (DESIGN §10) against a real bus: consumers in several states drawn
with the bus's own stats, kept current while the tab is shown, the hint on a bus
without consumers, and `r` redriving dead letters. Textual's pilot, a real server."""

from __future__ import annotations

from pathlib import Path

from eventbus_cli.ui.consumers import ADD_HINT, ConsumerTable
from eventbus_client import EventBusClient, connect
from eventbus_core.results import ConsumerInfo
from tests.conftest import start_buses

from .test_dashboard import dashboard, until

#: The table's stat columns, as ConsumerInfo names them.
STATS = ("pending", "ack_pending", "waiting", "redelivered", "dead", "acked")


async def consumers_in_several_states(bus: EventBusClient) -> None:
    """idle: nothing matched; busy: leases out, one acked, more pending; flaky: a
    redelivery leased and one nacked for later; poison: two terminated (dead letters)."""
    await bus.create_consumer("idle", topic="never.>")
    for name in ("poison", "busy", "flaky"):
        await bus.create_consumer(name, topic="jobs.>", max_deliver=3)
    await bus.emit_many([{"topic": "jobs.resize", "payload": {"n": n}} for n in range(5)])
    await bus.emit("other.thing", {})

    busy = await bus.fetch("busy", max=3)
    assert await busy[0].ack()

    [first] = await bus.fetch("flaky", max=1)
    assert await first.nack(delay_ms=0)
    [again] = await bus.fetch("flaky", max=1)
    assert again.deliveries == 2
    [later] = await bus.fetch("flaky", max=1)
    assert await later.nack(delay_ms=600_000)

    poisoned = await bus.fetch("poison", max=2)
    assert await bus.term("poison", [m.event_id for m in poisoned], reason="cannot parse") == 2


def stats_cells(consumer: ConsumerInfo) -> list[str]:
    return [str(consumer["stats"][key]) for key in STATS]  # type: ignore[literal-required]


async def test_the_consumers_tab_shows_each_consumer_with_the_bus_stats_and_r_redrives(
    tmp_path: Path,
) -> None:
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        await consumers_in_several_states(bus)
        async with dashboard(server.url("main"), tab="4") as (app, pilot):
            table = app.query_one("#consumer-table", ConsumerTable)
            await until(pilot, lambda: table.row_count == 4)
            assert table.column(0) == ["busy", "flaky", "idle", "poison"]  # by name
            expected = {c["name"]: c for c in await bus.list_consumers()}
            for row, name in enumerate(table.column(0)):
                assert list(table.cells(row)[1:7]) == stats_cells(expected[name]), name
            by_name = {name: table.cells(row) for row, name in enumerate(table.column(0))}
            #                       pending ack-pending waiting redelivered dead acked
            assert by_name["busy"][1:7] == ("2", "2", "0", "0", "0", "1")
            assert by_name["flaky"][1:7] == ("3", "1", "1", "1", "0", "0")
            assert by_name["idle"][1:8] == ("0", "0", "0", "0", "0", "0", "-")
            assert by_name["poison"][1:7] == ("3", "0", "0", "0", "2", "0")
            assert by_name["busy"][8] == "jobs.>" and by_name["idle"][8] == "never.>"
            assert (
                table.cell_style(3, 5) == "bold red" and table.cell_style(0, 5) == ""
            )  # dead letters stand out

            # Kept current while shown: an ack elsewhere shows within a poll.
            [leased] = await bus.fetch("flaky", max=1)
            assert await leased.ack()
            await until(pilot, lambda: table.cells(1)[6] == "1")

            assert app.focused is table  # 4 gave it the keys
            await pilot.press("home", "r")  # busy: no dead letters, nothing to do
            await until(
                pilot,
                lambda: any(
                    "busy has no dead letters" in str(n.message) for n in app._notifications
                ),
            )
            await pilot.press("end", "r")  # poison: two dead letters, back to it
            await until(
                pilot,
                lambda: any(
                    "redrove 2 dead letters of poison" in str(n.message) for n in app._notifications
                ),
            )
            await until(pilot, lambda: table.cells(3)[5] == "0")
            assert (
                table.selected is not None and table.selected["name"] == "poison"
            )  # the cursor stayed on it
            assert await bus.list_dead_letters("poison") == []
            redelivered = await bus.fetch("poison", max=10)
            assert sorted(m.deliveries for m in redelivered)[:2] == [1, 1]  # deliveries reset


async def test_a_bus_without_consumers_says_how_to_add_one_and_a_new_one_appears(
    tmp_path: Path,
) -> None:
    async with (
        start_buses(tmp_path, {"id": "main"}) as server,
        await connect(server.url("main")) as bus,
    ):
        async with dashboard(server.url("main"), tab="4") as (app, pilot):
            table = app.query_one("#consumer-table", ConsumerTable)
            await until(pilot, lambda: table.empty_text == ADD_HINT)
            assert table.row_count == 0
            assert (
                "eventbus consumers add NAME --topic" in table.render_line(1).text
            )  # drawn under the header
            await bus.create_consumer("workers", topic="jobs.>")
            await until(pilot, lambda: table.column(0) == ["workers"])
            assert table.render_line(1).text.split()[0] == "workers"
