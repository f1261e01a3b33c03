"""The dashboard's screens over the main one: the help, and one event in detail
(its envelope, what caused it and what it caused, its rule firings)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from eventbus_cli.output import format_ts
from eventbus_cli.ui.model import BusView
from eventbus_cli.ui.tables import STATUS_STYLE, outcome, took

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

__all__ = ["HELP_KEYS", "EventScreen", "HelpScreen"]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        keys = "\n".join(f"  {key:<16} {what}" for key, what in HELP_KEYS)
        yield Static(
            f"[b]eventbus ui[/b]: keys\n\n{keys}\n\nThe mouse works too: click a bus, a tab, a row.",
            id="help",
        )


#: Every key the dashboard answers, as the help shows it (a test checks that each binding is here).
HELP_KEYS = [
    ("↑ ↓", "move in a table (the bus list picks the bus the rest shows)"),
    ("pgup pgdn", "a page up / down in a table"),
    ("home end", "first / last row; end follows the newest again (stream, Firings)"),
    ("tab shift+tab", "next / previous panel (never the filter box)"),
    ("/", "filter the stream: a topic pattern, source:TRN, target:TRN"),
    ("escape enter", "in the filter: back to the stream (the filter stays)"),
    ("p", "pause / resume the stream (events keep arriving in the buffer)"),
    ("enter", "details of the selected event, or of a firing's event"),
    (
        "r",
        "in Firings: retry the selected failed firing; in Consumers: redrive the selected consumer's dead letters",
    ),
    ("space", "in Rules: enable / disable the selected rule; in Schedules: the selected schedule"),
    ("1 2 3 4 5", "Events, Firings, Rules, Consumers, Schedules"),
    ("?", "this help"),
    ("escape q", "close a detail or this help"),
    ("ctrl+p", "command palette (Textual's: theme, keys, screenshot, quit)"),
    ("ctrl+c", "copy the selected text"),
    ("q ctrl+q", "quit"),
]


class EventScreen(ModalScreen[None]):
    """One event: the whole envelope, what caused it and what it caused, and its firings."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, event: dict[str, Any], bus: BusView, client: EventBusClient | None) -> None:
        super().__init__()
        self.event, self.bus, self.client = event, bus, client

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            when = format_ts(self.event.get("timestamp"))
            yield Static(
                f"[b]event #{self.event['event_id']}[/b] on {self.bus.name} at {when}  [dim](escape to close)[/]"
            )
            yield Static(
                Syntax(json.dumps(self.event, indent=2, ensure_ascii=False), "json", word_wrap=True)
            )
            yield Static(
                "[b]causal chain[/b]: what caused it, and what it caused", classes="heading"
            )
            yield Static(self._chain_text(*self._local_chain()), id="chain")
            yield Static("[b]rule firings[/b] for this event", classes="heading")
            yield Static(self._firings_text(), id="event-firings")

    def on_mount(self) -> None:
        if self.client is not None:
            self.fetch_chain()

    def _local_chain(self) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
        """What the buffer already holds: ancestors by caused_by, and every event it has."""
        by_id = {e["event_id"]: e for e in self.bus.events}
        return _ancestors(self.event, by_id.get), list(self.bus.events)

    @work(exclusive=True)
    async def fetch_chain(self) -> None:
        assert self.client is not None
        try:
            ancestors: dict[int, dict[str, Any]] = {}
            cause = _cause_id(self.event)
            while cause is not None and cause not in ancestors and len(ancestors) < MAX_ANCESTORS:
                found = await self.client.get_event(cause)
                if found is None:
                    break
                ancestors[cause] = found.model_dump(mode="json")
                cause = _cause_id(ancestors[cause])
            # What a rule made carries its cause's correlation id, or "evt-<cause id>":
            # the events caused down the chain are among those with this one's.
            correlation = self.event.get("correlation_id") or f"evt-{self.event['event_id']}"
            page = await self.client.poll(correlation_id=correlation, limit=MAX_RELATED)
            related = [e.model_dump(mode="json") for e in page.events]
        except Exception as exc:  # the detail stays useful without the chain
            self.query_one("#chain", Static).update(f"[red]could not read the chain: {exc}[/]")
            return
        self.query_one("#chain", Static).update(
            self._chain_text(ancestors, [*self.bus.events, *related])
        )

    def _chain_text(
        self, ancestors: dict[int, dict[str, Any]], candidates: list[dict[str, Any]]
    ) -> Text:
        up = [ancestors[key] for key in sorted(ancestors)]
        down = _descendants(self.event, candidates)
        if not up and not down:
            return Text(
                "nothing caused it (no caused_by) and nothing it caused is stored yet", style="dim"
            )
        text = Text()
        rows = [(depth, e) for depth, e in enumerate(up)] + [(len(up), self.event)]
        rows += [(len(up) + depth, e) for depth, e in down]
        for depth, event in rows:
            mine = event["event_id"] == self.event["event_id"]
            by = (
                (event.get("metadata") or {}).get("caused_by")
                if isinstance(event.get("metadata"), dict)
                else None
            )
            rule = (
                f"  ← rule {by.get('rule_id')} (#{by.get('event_id')})"
                if isinstance(by, dict)
                else ""
            )
            text.append(
                ("▶ " if mine else "  ") + "  " * depth + f"#{event['event_id']} {event['topic']}",
                style="bold" if mine else "",
            )
            text.append(f"  {event.get('source_trn') or '-'}{rule}\n", style="dim")
        return text

    def _firings_text(self) -> Text:
        mine = [f for f in self.bus.firings_by_id() if f["event_id"] == self.event["event_id"]]
        if not mine:
            return Text("none seen by the dashboard", style="dim")
        text = Text()
        for firing in mine:
            tries = firing.get("attempts") or 0
            text.append(f"  firing {firing['firing_id']} rule {firing['rule_id']}: ")
            text.append(firing["status"], style=STATUS_STYLE.get(firing["status"], ""))
            text.append(
                f" ({tries} {'try' if tries == 1 else 'tries'}, {took(firing)})  {outcome(firing)}\n",
                style="dim",
            )
        return text


#: How far up the detail view follows caused_by, and how many related events it reads.
MAX_ANCESTORS = 10
MAX_RELATED = 200


def _cause_id(event: dict[str, Any]) -> int | None:
    metadata = event.get("metadata") or {}
    caused = metadata.get("caused_by") if isinstance(metadata, dict) else None
    return caused.get("event_id") if isinstance(caused, dict) else None


def _ancestors(event: dict[str, Any], lookup: Any) -> dict[int, dict[str, Any]]:
    """The events `event` descends from through caused_by, as far as `lookup` knows them."""
    found: dict[int, dict[str, Any]] = {}
    cause = _cause_id(event)
    while cause is not None and cause not in found and cause != event["event_id"]:
        parent = lookup(cause)
        if parent is None:
            break
        found[cause] = parent
        cause = _cause_id(parent)
    return found


def _descendants(
    event: dict[str, Any], candidates: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """The events `event` caused, and those caused, as a tree walked depth first: (depth, event)."""
    children: dict[int, dict[int, dict[str, Any]]] = {}
    for other in candidates:
        cause = _cause_id(other)
        if cause is not None and other["event_id"] > cause:  # a cause is always older
            children.setdefault(cause, {})[other["event_id"]] = other
    found: list[tuple[int, dict[str, Any]]] = []

    def walk(event_id: int, depth: int) -> None:
        for child_id in sorted(children.get(event_id, {})):
            found.append((depth, children[event_id][child_id]))
            walk(child_id, depth + 1)

    walk(event["event_id"], 1)
    return found
