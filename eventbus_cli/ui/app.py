"""`eventbus ui`: a live Textual dashboard of buses, topics, events and rule firings.

It talks to the buses only through `eventbus_client`, one worker per bus.
Workers write into the model (ui/model.py) as events arrive; the screen
redraws from it four times a second, so a burst of thousands of events per
second costs one redraw, not thousands.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from ..output import format_ts
from .lines import LineTable
from .model import BusView, EventFilter, ago, sparkline
from .tables import MAX_ROWS, BusTable, EventStream, FiringTable, TopicTable

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

REDRAW_S = 0.25
POLL_S = 2.0
STATE_STYLE = {"connected": "green", "connecting": "yellow", "reconnecting": "yellow"}


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        keys = "\n".join(f"  {key:<10} {what}" for key, what in HELP_KEYS)
        yield Static(f"[b]eventbus ui[/b]: keys\n\n{keys}\n\nThe mouse works too: click a bus, a tab, a row.", id="help")


HELP_KEYS = [
    ("↑ ↓", "move in a table (the bus list picks the bus the rest shows)"),
    ("tab", "next panel"),
    ("/", "filter the stream: a topic pattern, source:TRN, target:TRN"),
    ("p", "pause / resume the stream (events keep arriving in the buffer)"),
    ("enter", "details of the selected event (full envelope, causal chain)"),
    ("space", "in Rules: enable / disable the selected rule"),
    ("1 2 3", "Events, Firings, Rules"),
    ("?", "this help"),
    ("q", "quit"),
]


class EventScreen(ModalScreen[None]):
    """One event: the whole envelope, and what it belongs to."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, event: dict[str, Any], bus: BusView, client: EventBusClient | None) -> None:
        super().__init__()
        self.event, self.bus, self.client = event, bus, client

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            when = format_ts(self.event.get("timestamp"))
            yield Static(f"[b]event #{self.event['event_id']}[/b] on {self.bus.name} at {when}  [dim](escape to close)[/]")
            yield Static(Syntax(json.dumps(self.event, indent=2, ensure_ascii=False), "json", word_wrap=True))
            yield Static("[b]causal chain[/b]", classes="heading")
            yield Static(self._chain_text(self._local_chain()), id="chain")

    def on_mount(self) -> None:
        if self.client is not None:
            self.fetch_chain()

    def _local_chain(self) -> list[dict[str, Any]]:
        """What the buffer already holds: ancestors by caused_by, and the same correlation id."""
        by_id = {e["event_id"]: e for e in self.bus.events}
        return _chain(self.event, by_id.get, list(self.bus.events))

    @work(exclusive=True)
    async def fetch_chain(self) -> None:
        assert self.client is not None
        try:
            related: list[dict[str, Any]] = []
            correlation = self.event.get("correlation_id")
            if correlation:
                page = await self.client.poll(correlation_id=correlation, limit=50)
                related = [e.model_dump(mode="json") for e in page.events]
            ancestors: dict[int, dict[str, Any]] = {}
            cause = _cause_id(self.event)
            while cause is not None and cause not in ancestors and len(ancestors) < 10:
                page = await self.client.poll(since=cause - 1, limit=1)
                if not page.events or page.events[0].event_id != cause:
                    break
                ancestors[cause] = page.events[0].model_dump(mode="json")
                cause = _cause_id(ancestors[cause])
        except Exception as exc:  # the detail stays useful without the chain
            self.query_one("#chain", Static).update(f"[red]could not read the chain: {exc}[/]")
            return
        chain = _chain(self.event, ancestors.get, related)
        self.query_one("#chain", Static).update(self._chain_text(chain))

    def _chain_text(self, chain: list[dict[str, Any]]) -> Text:
        if len(chain) <= 1:
            return Text("no caused_by and no other event with its correlation id", style="dim")
        text = Text()
        for event in chain:
            mark = "▶ " if event["event_id"] == self.event["event_id"] else "  "
            caused = event.get("metadata", {}) or {}
            by = caused.get("caused_by", {}) if isinstance(caused, dict) else {}
            rule = f"  ← rule {by.get('rule_id')} (#{by.get('event_id')})" if by else ""
            text.append(f"{mark}#{event['event_id']} {event['topic']}", style="bold" if mark.strip() else "")
            text.append(f"  {event.get('source_trn') or '-'}{rule}\n", style="dim")
        return text


def _cause_id(event: dict[str, Any]) -> int | None:
    metadata = event.get("metadata") or {}
    caused = metadata.get("caused_by") if isinstance(metadata, dict) else None
    return caused.get("event_id") if isinstance(caused, dict) else None


def _chain(event: dict[str, Any], lookup: Any, related: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ancestors (by caused_by) and same-correlation events, in id order."""
    found = {event["event_id"]: event}
    cause = _cause_id(event)
    while cause is not None and cause not in found:
        parent = lookup(cause)
        if parent is None:
            break
        found[cause] = parent
        cause = _cause_id(parent)
    correlation = event.get("correlation_id")
    for other in related:
        if correlation and other.get("correlation_id") == correlation:
            found[other["event_id"]] = other
    return [found[key] for key in sorted(found)]


class DashboardApp(App[None]):
    TITLE = "eventbus"
    AUTO_FOCUS = "#stream"
    CSS = """
    Screen { layout: vertical; overflow: hidden; }
    #top { height: 35%; min-height: 5; max-height: 14; }
    #buses { width: 2fr; }
    #topics { width: 3fr; }
    #filter { height: 1; border: none; padding: 0 1; background: $boost; }
    #tabs { height: 1fr; }
    TabPane { height: 1fr; padding: 0; }
    #stream, #firing-table, #rule-table { height: 1fr; }
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
        Binding("space", "toggle_rule", "On/off", show=False),
    ]

    def __init__(self, buses: list[BusView], *, live: bool = True, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.buses = buses
        self.live = live
        self.clock = clock  # wall time in seconds; snapshot tests freeze it
        self.selected = 0
        self.paused = False
        self.filter = EventFilter()
        self.clients: dict[str, EventBusClient] = {}
        self._shown_event = 0  # newest event id in the stream table
        self._shown_firing = 0
        self._shown_rules: tuple[Any, ...] = ()
        self._last_tick = 0.0
        self._topics_due = True
        # Held, not queried: the redraw timer may tick while the app is shutting
        # down and its screen no longer holds them.
        self.bus_table = BusTable(id="buses")
        self.topic_table = TopicTable(id="topics")
        self.stream = EventStream(id="stream")
        self.firing_table = FiringTable(id="firing-table")
        self.rule_table: DataTable[Any] = DataTable(id="rule-table", cursor_type="row", zebra_stripes=True)

    @property
    def bus(self) -> BusView:
        return self.buses[self.selected]

    # -- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="top"):
            yield self.bus_table
            yield self.topic_table
        yield Input(placeholder="filter: topic pattern, source:trn:user:*, target:trn:org:  (/ to focus)", id="filter")
        with TabbedContent(initial="events", id="tabs"):
            with TabPane("Events", id="events"):
                yield self.stream
            with TabPane("Firings", id="firings"):
                yield self.firing_table
            with TabPane("Rules", id="rules"):
                yield self.rule_table
        yield Footer()

    def on_mount(self) -> None:
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
            bus.rules = await client.list_rules()
            for firing in reversed(await client.list_firings(order="desc", limit=100)):
                bus.add_firing(firing)
            pumps.append(self._pump_firings(bus, await client.subscribe_firings()))
        bus.state = "connected"
        await asyncio.gather(*pumps)

    async def _pump_events(self, bus: BusView, sub: Any) -> None:
        async for event in sub:
            bus.add_event(event.model_dump(mode="json"))

    async def _pump_firings(self, bus: BusView, sub: Any) -> None:
        async for firing in sub:
            bus.add_firing(firing)

    async def _poll(self, bus: BusView, client: EventBusClient) -> None:
        """Counters, topics and rules every few seconds; also how we notice an outage."""
        from eventbus_core.errors import ConnectionLost

        while True:
            await asyncio.sleep(POLL_S)
            try:
                bus.info = await client.bus_info()
                bus.load_topics(await client.list_topics())
                if bus.rules_on:
                    bus.rules = await client.list_rules()
                bus.state = "connected"
            except ConnectionLost:
                bus.state = "reconnecting"  # the subscriptions resume by themselves

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
        total = sum(b.rate for b in self.buses)
        failed = sum(1 for b in self.buses for f in b.firings if f["status"] == "failed")
        paused = " · [PAUSED]" if self.paused else ""
        trouble = f" · {self.bus.name}: {self.bus.state}" if self.bus.state != "connected" else ""
        self.sub_title = f"{len(self.buses)} buses · {total:,.0f} events/s · {failed} failed firings{paused}{trouble}"

    def _bus_cells(self, bus: BusView) -> tuple[str, ...]:
        info = bus.info or {}
        stats = info.get("stats", {})
        return (
            bus.name,
            bus.state,  # cut to fit here; in full in the header
            "on" if bus.rules_on else "off",
            f"{bus.rate:,.0f}",
            str(stats.get("last_event_id", "-")),
            info.get("storage", "-"),
        )

    def _draw_topics(self) -> None:
        now_ms = self.clock() * 1000
        self.topic_table.show([
            (topic.topic, str(topic.count), ago(topic.last_timestamp, now_ms), f"{topic.rate:,.0f}", sparkline(topic.history))
            for topic in self.bus.topics_by_activity()[:100]
        ])

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
        fresh = [f for f in self.bus.firings if f["firing_id"] > self._shown_firing]
        if fresh:
            self._shown_firing = fresh[-1]["firing_id"]
            self.firing_table.add(fresh[-MAX_ROWS:])

    def _draw_rules(self) -> None:
        shape = tuple((r["id"], r["enabled"], r["fired"], r["failed"], r.get("last_fired_at")) for r in self.bus.rules)
        if shape == self._shown_rules:
            return
        self._shown_rules = shape
        table = self.rule_table
        row = table.cursor_row
        table.clear()
        for rule in self.bus.rules:
            action = rule["action"]
            what = f"invoke {action.get('tool_id')}" if action["type"] == "InvokeTool" else f"emit {action.get('topic')}"
            table.add_row(
                rule["id"], Text("on" if rule["enabled"] else "off", style="green" if rule["enabled"] else "dim"),
                rule["topic"], what, str(rule["fired"]), str(rule["failed"]), format_ts(rule.get("last_fired_at")),
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
            self._shown_firing, self._shown_rules, self._topics_due = 0, (), True
            self.firing_table.clear()
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
        self.query_one("#filter", Input).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

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
    async def switch_rule(self, client: EventBusClient, bus: BusView, rule_id: str, enabled: bool) -> None:
        try:
            await client.set_rule_enabled(rule_id, enabled)
            bus.rules = await client.list_rules()
        except Exception as exc:
            self.notify(f"could not switch rule {rule_id}: {exc}", severity="error")
