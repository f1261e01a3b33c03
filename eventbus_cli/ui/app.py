"""`eventbus ui`: a live Textual dashboard of buses, topics, events, rule firings,
durable consumers and schedules.

It talks to the buses only through `eventbus_client`, one worker per bus.
Workers write into the model (ui/model.py) as events arrive; the screen
redraws from it four times a second, so a burst of thousands of events per
second costs one redraw, not thousands.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Input, TabbedContent, TabPane

from eventbus_cli.output import format_ts
from eventbus_cli.ui.consumers import ConsumerTable, consumers_tab
from eventbus_cli.ui.filter_box import FilterBox
from eventbus_cli.ui.lines import LineTable
from eventbus_cli.ui.model import BusView, EventFilter, ago, sparkline
from eventbus_cli.ui.polled import PolledTab
from eventbus_cli.ui.schedules import SchedulesPane, ScheduleTable, schedules_tab
from eventbus_cli.ui.screens import EventScreen, HelpScreen
from eventbus_cli.ui.tables import (
    MAX_ROWS,
    BusTable,
    EventStream,
    FiringTable,
    RecentFirings,
    TopicTable,
)

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

REDRAW_S = 0.25
POLL_S = 2.0
STATE_STYLE = {"connected": "green", "connecting": "yellow", "reconnecting": "yellow"}


class DashboardApp(App[None]):
    TITLE = "eventbus"
    AUTO_FOCUS = "#stream"
    CSS = """
    Screen { layout: vertical; overflow: hidden; }
    #top { height: 40%; min-height: 8; max-height: 18; }
    #left { width: 1fr; }
    #buses { height: 4; }
    #recent { height: 1fr; border-top: solid $panel-lighten-2; border-title-color: $text-muted; }
    #topics { width: 1fr; }
    #filter { height: 1; border: none; padding: 0 1; background: $boost; }
    #tabs { height: 1fr; }
    TabPane { height: 1fr; padding: 0; }
    #stream, #firing-table, #rule-table, #consumer-table, #schedules-pane { height: 1fr; }
    #help, #detail { width: 90%; height: 85%; border: thick $accent; background: $surface; padding: 1 2; }
    HelpScreen, EventScreen { align: center middle; }
    .heading { margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("p", "pause", "Pause"),
        Binding("slash", "filter", "Filter"),
        Binding("1", "tab('events')", "Events", show=False),
        Binding("2", "tab('firings')", "Firings", show=False),
        Binding("3", "tab('rules')", "Rules", show=False),
        Binding("4", "tab('consumers')", "Consumers", show=False),
        Binding("5", "tab('schedules')", "Schedules", show=False),
        Binding("space", "toggle_rule", "On/off", show=False),
    ]

    def __init__(
        self, buses: list[BusView], *, live: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.buses = buses
        self.live = live
        self.clock = clock  # wall time in seconds; snapshot tests freeze it
        self.selected = 0
        self.paused = False
        self.filter = EventFilter()
        self.clients: dict[str, EventBusClient] = {}
        self._shown_event = 0  # newest event id in the stream table
        self._shown_firings = -1  # the firings_version of the selected bus now drawn
        self._shown_rules: tuple[Any, ...] = ()
        self._last_tick = 0.0
        self._topics_due = True
        # Held, not queried: the redraw timer may tick while the app is shutting
        # down and its screen no longer holds them.
        self.bus_table = BusTable(id="buses")
        self.topic_table = TopicTable(id="topics")
        self.stream = EventStream(id="stream")
        self.firing_table = FiringTable(id="firing-table")
        self.recent_firings = RecentFirings(id="recent")
        self.filter_box = FilterBox(
            placeholder="filter: topic pattern, source:trn:user:*, target:trn:org:  (/ to focus)",
            id="filter",
        )
        self.rule_table: DataTable[Any] = DataTable(
            id="rule-table", cursor_type="row", zebra_stripes=True
        )
        self.consumer_table = ConsumerTable(id="consumer-table")
        self.schedules_pane = SchedulesPane(lambda: self.clock() * 1000, id="schedules-pane")
        self.tabs = TabbedContent(initial="events", id="tabs")
        #: The tabs read from the bus only while shown (ui/polled.py), by pane id.
        self.polled: dict[str, PolledTab[Any]] = {
            tab.pane: tab
            for tab in (consumers_tab(self.consumer_table), schedules_tab(self.schedules_pane))
        }

    @property
    def bus(self) -> BusView:
        return self.buses[self.selected]

    # -- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="top"):
            with Vertical(id="left"):
                yield self.bus_table
                yield self.recent_firings
            yield self.topic_table
        yield self.filter_box
        with self.tabs:
            with TabPane("Events", id="events"):
                yield self.stream
            with TabPane("Firings", id="firings"):
                yield self.firing_table
            with TabPane("Rules", id="rules"):
                yield self.rule_table
            with TabPane("Consumers", id="consumers"):
                yield self.consumer_table
            with TabPane("Schedules", id="schedules"):
                yield self.schedules_pane
        yield Footer()

    def on_mount(self) -> None:
        # The bus list takes the lines its buses need (up to 5); recent firings the rest.
        self.bus_table.styles.height = min(len(self.buses), 5) + 1
        self.recent_firings.border_title = "recent firings (2: all)"
        self.rule_table.add_columns("id", "on", "topic", "action", "fired", "failed", "last fired")
        self.redraw()
        # Everything built so far (Textual, pydantic, the widgets) lives as long as the app:
        # keep it out of the collector's full passes, which otherwise stall a busy screen.
        gc.freeze()
        self.set_interval(REDRAW_S, self.redraw)
        if self.live:
            self._last_tick = asyncio.get_running_loop().time()
            self.set_interval(1.0, self.tick)
            for bus in self.buses:
                self.follow(bus)

    # -- network (one worker per bus) -----------------------------------------------------

    @work(group="buses")
    async def follow(self, bus: BusView) -> None:
        """Connect, load what is there, then follow events and firings; retry forever."""
        from eventbus_client import connect
        from eventbus_core.errors import ConnectionLost, EventBusError, Unauthorized

        delay = 0.5
        while True:
            try:
                async with await connect(bus.url, token=bus.token) as client:
                    self.clients[bus.name] = client
                    await self._follow(bus, client)
            except Unauthorized as exc:
                bus.state = f"unauthorized: {exc.message}"
            except ConnectionLost as exc:
                bus.state = f"unreachable: {exc.message}"
            except EventBusError as exc:
                bus.state = f"error: {exc.message}"
            self.clients.pop(bus.name, None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _follow(self, bus: BusView, client: EventBusClient) -> None:
        bus.info = await client.bus_info()
        bus.load_topics(await client.list_topics())
        recent = (await client.poll(order="desc", limit=100)).events
        for event in reversed(recent):
            bus.add_event(event.model_dump(mode="json"), live=False)
        last = recent[0].event_id if recent else bus.info["stats"]["last_event_id"]
        events = await client.subscribe(">", since=last)  # gapless from what is shown
        pumps = [self._pump_events(bus, events), self._poll(bus, client)]
        if bus.rules_on:
            # Subscribe before listing, so nothing finishes unseen in between; a firing
            # both bring is one row (keyed by firing id), the newer state winning.
            firings = await client.subscribe_firings()
            bus.rules = await client.list_rules()
            for firing in reversed(await client.list_firings(order="desc", limit=100)):
                if firing["firing_id"] not in bus.firings or firing["status"] != "pending":
                    bus.add_firing(firing)
            pumps.append(self._pump_firings(bus, firings))
        for tab in self.polled.values():
            await tab.load(bus, client)
        bus.state = "connected"
        await asyncio.gather(*pumps)

    async def _pump_events(self, bus: BusView, sub: Any) -> None:
        async for event in sub:
            bus.add_event(event.model_dump(mode="json"))

    async def _pump_firings(self, bus: BusView, sub: Any) -> None:
        async for firing in sub:
            bus.add_firing(firing)

    async def _poll(self, bus: BusView, client: EventBusClient) -> None:
        """Counters, topics, rules and the tab shown every few seconds; also how we notice an outage."""
        from eventbus_core.errors import ConnectionLost

        while True:
            await asyncio.sleep(POLL_S)
            try:
                bus.info = await client.bus_info()
                bus.load_topics(await client.list_topics())
                if bus.rules_on:
                    bus.rules = await client.list_rules()
                shown = self._polled_shown(bus)
                if shown is not None:
                    await shown.load(bus, client)
                bus.state = "connected"
            except ConnectionLost:
                bus.state = "reconnecting"  # the subscriptions resume by themselves

    def _polled_shown(self, bus: BusView) -> PolledTab[Any] | None:
        """The polled tab showing this bus now, if any: only it is read again."""
        tab = self.polled.get(self.tabs.active)
        return tab if tab is not None and bus is self.bus and tab.polled_on(bus) else None

    def tick(self) -> None:
        now = asyncio.get_running_loop().time()
        seconds, self._last_tick = now - self._last_tick, now
        for bus in self.buses:
            bus.tick(seconds)
        self._topics_due = True

    # -- drawing (a few times a second, whatever arrived) ----------------------------------

    def redraw(self) -> None:
        self.bus_table.show(
            [self._bus_cells(bus) for bus in self.buses],
            [STATE_STYLE.get(bus.state, "bold red") for bus in self.buses],
        )
        if self._topics_due or not self.live:
            self._draw_topics()  # rates change once a second: so does this table
            self._topics_due = False
        if not self.paused:
            self._draw_stream()
        self.stream.border_title = "PAUSED (p resumes)" if self.paused else None
        self._draw_firings()
        self._draw_rules()
        shown = self.polled.get(self.tabs.active)
        if shown is not None:
            shown.draw(self.bus)  # a hidden one is drawn when shown: its "in" column ticks
        self.sub_title = self._header()

    def _header(self) -> str:
        """Buses, events/s and failed firings: the buses' own counters, not what the screen holds."""
        total = sum(b.rate for b in self.buses)
        counts = [b.failed_firings for b in self.buses if b.failed_firings is not None]
        failed = (
            f" · {sum(counts):,} failed {'firing' if sum(counts) == 1 else 'firings'}"
            if counts
            else ""
        )
        paused = " · [PAUSED]" if self.paused else ""
        trouble = f" · {self.bus.name}: {self.bus.state}" if self.bus.state != "connected" else ""
        return f"{len(self.buses)} buses · {total:,.0f} events/s{failed}{paused}{trouble}"

    def _bus_cells(self, bus: BusView) -> tuple[str, ...]:
        stats: Mapping[str, Any] = bus.info["stats"] if bus.info is not None else {}
        return (
            bus.name,
            bus.state,  # cut to fit here; in full in the header
            "on" if bus.rules_on else "off",
            f"{bus.rate:,.0f}",
            str(stats.get("last_event_id", "-")),
            bus.info["storage"] if bus.info is not None else "-",
        )

    def _draw_topics(self) -> None:
        now_ms = self.clock() * 1000
        self.topic_table.show(
            [
                (
                    topic.topic,
                    str(topic.count),
                    ago(topic.last_timestamp, now_ms),
                    f"{topic.rate:,.0f}",
                    sparkline(topic.history),
                )
                for topic in self.bus.topics_by_activity()[:100]
            ]
        )

    def _draw_stream(self, rebuild: bool = False) -> None:
        stream = self.stream
        events = self.bus.events
        if rebuild:
            stream.replace(e for e in events if self.filter(e))
            self._shown_event = events[-1]["event_id"] if events else 0
            return
        fresh: list[dict[str, Any]] = []
        for event in reversed(events):  # newest first, only what arrived since the last redraw
            if event["event_id"] <= self._shown_event:
                break
            fresh.append(event)
        if fresh:
            self._shown_event = fresh[0]["event_id"]
            stream.add(e for e in reversed(fresh[:MAX_ROWS]) if self.filter(e))

    def _draw_firings(self) -> None:
        """Both firing tables, from the selected bus's firings by id, whenever they changed."""
        if self.bus.firings_version == self._shown_firings:
            return
        self._shown_firings = self.bus.firings_version
        firings = self.bus.firings_by_id()
        self.firing_table.show(firings)
        self.recent_firings.show(firings)

    def _draw_rules(self) -> None:
        shape = tuple(
            (r["id"], r["enabled"], r["fired"], r["failed"], r.get("last_fired_at"))
            for r in self.bus.rules
        )
        if shape == self._shown_rules:
            return
        self._shown_rules = shape
        table = self.rule_table
        row = table.cursor_row
        table.clear()
        for rule in self.bus.rules:
            action = rule["action"]
            what = (
                f"invoke {action.get('tool_id')}"
                if action["type"] == "InvokeTool"
                else f"emit {action.get('topic')}"
            )
            table.add_row(
                rule["id"],
                Text(
                    "on" if rule["enabled"] else "off", style="green" if rule["enabled"] else "dim"
                ),
                rule["topic"],
                what,
                str(rule["fired"]),
                str(rule["failed"]),
                format_ts(rule.get("last_fired_at")),
                key=rule["id"],
            )
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    # -- interaction ---------------------------------------------------------------------------

    @on(LineTable.Highlighted, "#buses")
    def pick_bus(self, message: LineTable.Highlighted) -> None:
        index = message.row
        if index != self.selected:
            self.selected = index
            self._shown_firings, self._shown_rules, self._topics_due = -1, (), True
            self.firing_table.clear()
            self.read_shown_tab()
            self._draw_stream(rebuild=True)
            self.redraw()

    @on(Input.Changed, "#filter")
    def set_filter(self, message: Input.Changed) -> None:
        try:
            self.filter = EventFilter(message.value)
        except ValueError as exc:
            message.input.border_subtitle = str(exc)
            return
        message.input.border_subtitle = ""
        self._draw_stream(rebuild=True)

    @on(EventStream.Selected, "#stream")
    def open_event(self, message: EventStream.Selected) -> None:
        self.push_screen(EventScreen(message.event, self.bus, self.clients.get(self.bus.name)))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._draw_stream()
        self.stream.border_title = "PAUSED (p resumes)" if self.paused else None
        self.redraw()

    def action_filter(self) -> None:
        self.filter_box.open()

    @on(FilterBox.Left)
    def leave_filter(self) -> None:
        self.action_tab("events")

    @on(FiringTable.Selected, "#firing-table")
    def open_firing_event(self, message: FiringTable.Selected) -> None:
        self.show_event(self.bus, message.firing["event_id"])

    @work(group="actions")
    async def show_event(self, bus: BusView, event_id: int) -> None:
        """The detail of an event, from the buffer or else from the bus."""
        event = next((e for e in reversed(bus.events) if e["event_id"] == event_id), None)
        client = self.clients.get(bus.name)
        if event is None and client is not None:
            found = await client.get_event(event_id)
            if found is not None:
                event = found.model_dump(mode="json")
        if event is None:
            self.notify(f"event #{event_id} is no longer stored", severity="warning")
            return
        self.push_screen(EventScreen(event, bus, client))

    @on(FiringTable.RetryAsked, "#firing-table")
    def ask_retry(self, message: FiringTable.RetryAsked) -> None:
        firing = message.firing
        client = self.clients.get(self.bus.name)
        if firing["status"] != "failed":
            self.notify(
                f"firing {firing['firing_id']} is {firing['status']}: only a failed firing is retried",
                severity="warning",
            )
        elif client is None:
            self.notify(f"{self.bus.name} is not connected", severity="error")
        else:
            self.retry_firing(client, self.bus, firing["firing_id"])

    @work(group="actions")
    async def retry_firing(self, client: EventBusClient, bus: BusView, firing_id: int) -> None:
        try:
            retried = await client.retry_firings([firing_id])
            bus.rules = await client.list_rules()  # its failed counter went down
        except Exception as exc:
            self.notify(f"could not retry firing {firing_id}: {exc}", severity="error")
            return
        if retried:
            self.notify(f"retrying firing {firing_id}")
        else:
            self.notify(f"firing {firing_id} is no longer failed", severity="warning")

    def action_tab(self, tab: str) -> None:
        """Show a tab and give its table the keys (`4` then `r` redrives, `5` then `space` switches)."""
        self.tabs.active = tab
        tables: dict[str, Widget] = {
            "events": self.stream,
            "firings": self.firing_table,
            "rules": self.rule_table,
            "consumers": self.consumer_table,
            "schedules": self.schedules_pane.schedule_table,
        }
        tables[tab].focus()

    @on(TabbedContent.TabActivated)
    def read_shown_tab(self) -> None:
        """A polled tab is read only while shown: read it now rather than at the next poll."""
        shown = self.polled.get(self.tabs.active)
        if shown is not None:
            shown.draw(self.bus)  # what is known now, until the read comes back
        tab = self._polled_shown(self.bus)
        client = self.clients.get(self.bus.name)
        if tab is not None and client is not None:
            self.read_tab(tab, client, self.bus)

    @work(group="actions")
    async def read_tab(self, tab: PolledTab[Any], client: EventBusClient, bus: BusView) -> None:
        from eventbus_core.errors import ConnectionLost

        try:
            await tab.load(bus, client)
        except ConnectionLost:
            pass  # the poll says what is wrong with the bus

    @on(ConsumerTable.RedriveAsked, "#consumer-table")
    def ask_redrive(self, message: ConsumerTable.RedriveAsked) -> None:
        consumer = message.consumer
        client = self.clients.get(self.bus.name)
        if consumer["stats"]["dead"] == 0:
            self.notify(
                f"consumer {consumer['name']} has no dead letters to redrive", severity="warning"
            )
        elif client is None:
            self.notify(f"{self.bus.name} is not connected", severity="error")
        else:
            self.redrive(client, self.bus, consumer["name"])

    @work(group="actions")
    async def redrive(self, client: EventBusClient, bus: BusView, name: str) -> None:
        try:
            redriven = await client.redrive(name)
            await self.polled["consumers"].load(bus, client)
        except Exception as exc:
            self.notify(f"could not redrive the dead letters of {name}: {exc}", severity="error")
            return
        if redriven:
            self.notify(
                f"redrove {redriven} dead {'letter' if redriven == 1 else 'letters'} of {name}: due again, deliveries reset"
            )
        else:
            self.notify(f"consumer {name} has no dead letters any more", severity="warning")

    @on(ScheduleTable.ToggleAsked, "#schedule-table")
    def ask_toggle_schedule(self, message: ScheduleTable.ToggleAsked) -> None:
        client = self.clients.get(self.bus.name)
        if client is None:
            self.notify(f"{self.bus.name} is not connected", severity="error")
        else:
            schedule = message.schedule
            self.switch_schedule(client, self.bus, schedule["id"], not schedule["enabled"])

    @work(group="actions")
    async def switch_schedule(
        self, client: EventBusClient, bus: BusView, schedule_id: str, enabled: bool
    ) -> None:
        try:
            schedule = await client.set_schedule_enabled(schedule_id, enabled)
            await self.polled["schedules"].load(bus, client)
        except Exception as exc:
            self.notify(f"could not switch schedule {schedule_id}: {exc}", severity="error")
            return
        if schedule["enabled"]:
            when = format_ts(schedule["next_tick"]) if schedule["next_tick"] else "never"
            self.notify(f"schedule {schedule_id} is on: next tick {when}")
        else:
            self.notify(f"schedule {schedule_id} is off: it will not tick until switched on")

    def action_toggle_rule(self) -> None:
        table = self.rule_table
        if not table.has_focus or not table.row_count:
            return
        rule_id = str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)
        rule = next((r for r in self.bus.rules if r["id"] == rule_id), None)
        client = self.clients.get(self.bus.name)
        if rule is not None and client is not None:
            self.switch_rule(client, self.bus, rule_id, not rule["enabled"])

    @work(group="actions")
    async def switch_rule(
        self, client: EventBusClient, bus: BusView, rule_id: str, enabled: bool
    ) -> None:
        try:
            await client.set_rule_enabled(rule_id, enabled)
            bus.rules = await client.list_rules()
        except Exception as exc:
            self.notify(f"could not switch rule {rule_id}: {exc}", severity="error")
