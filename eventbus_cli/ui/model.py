"""What the dashboard knows, kept apart from how it is drawn.

Network workers write here as fast as events arrive; the screen reads it a
few times a second. Everything is bounded (events, firings, rate history), so
memory stays flat however long the dashboard runs and however busy the bus.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventbus_core.results import BusInfo, ConsumerInfo, RuleInfo, TopicInfo
from eventbus_core.topics import compile_topic_pattern
from eventbus_core.trn import compile_trn_pattern

if TYPE_CHECKING:
    from eventbus_cli.ui.schedules import ScheduleBoard

__all__ = ["BusView", "EventFilter", "Listing", "TopicView", "ago", "due_in", "sparkline"]

T = TypeVar("T")

#: Newest events kept per bus (the stream and the detail view read from here).
MAX_EVENTS = 2_000
#: Firings kept per bus, the newest by firing id.
MAX_FIRINGS = 500
#: Trimmed back to MAX_FIRINGS once this many more arrived (not a sort per firing).
FIRINGS_SLACK = 100
#: Seconds of per-second rates kept for sparklines.
RATE_HISTORY = 30

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Any) -> str:
    """Unicode bars scaled to the largest value (all idle: the lowest bar)."""
    values = list(values)
    top = max(values, default=0)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(
        _BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))] for v in values
    )


def ago(timestamp_ms: int | None, now_ms: float) -> str:
    """How long ago, as kubectl shows ages: `0s ago`, `42s ago`, `5m ago`, `3h ago`, `2d ago`."""
    if timestamp_ms is None:
        return "-"
    seconds = max(0.0, now_ms - timestamp_ms) / 1000
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3_600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 2 * 86_400:
        return f"{int(seconds // 3_600)}h ago"
    return f"{int(seconds // 86_400)}d ago"


def due_in(timestamp_ms: int | None, now_ms: float) -> str:
    """How long until then, in the units of `ago`: `5s`, `3m`, `2h`, `4d`; `now` once due."""
    if timestamp_ms is None:
        return "-"
    seconds = math.ceil((timestamp_ms - now_ms) / 1000)  # 0.2 s to go still reads 1s
    if seconds <= 0:
        return "now"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3_600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86_400:
        return f"{seconds // 3_600}h"
    return f"{seconds // 86_400}d"


@dataclass
class TopicView:
    topic: str
    count: int = 0
    last_event_id: int = 0
    last_timestamp: int | None = None
    rate: float = 0.0
    history: deque[float] = field(
        default_factory=lambda: deque([0.0] * RATE_HISTORY, maxlen=RATE_HISTORY)
    )
    _since_tick: int = 0

    def saw(self, event_id: int, timestamp: int | None) -> None:
        if event_id > self.last_event_id:
            self.count += 1
            self.last_event_id = event_id
            self.last_timestamp = timestamp
        self._since_tick += 1

    def tick(self, seconds: float) -> None:
        self.rate = self._since_tick / seconds if seconds > 0 else 0.0
        self.history.append(self.rate)
        self._since_tick = 0


@dataclass
class Listing(Generic[T]):
    """What a tab read from the bus (ui/polled.py): None until read, or while it cannot be."""

    value: T | None = None
    #: Why it can never be read on this bus (its server lacks the method): not asked again.
    note: str = ""
    #: Why the last read failed (what the bus answered): asked again at the next poll.
    problem: str = ""


@dataclass
class BusView:
    """One bus as the dashboard shows it; `state` says whether it is reachable."""

    name: str
    url: str
    token: str | None = None
    state: str = "connecting"
    info: BusInfo | None = None
    rate: float = 0.0
    received: int = 0
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    #: By firing id: a firing that finishes again (a retry) replaces its row.
    firings: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Bumped whenever `firings` changes, so the screen redraws them only then.
    firings_version: int = 0
    topics: dict[str, TopicView] = field(default_factory=dict)
    rules: list[RuleInfo] = field(default_factory=list)
    #: The bus's durable consumers, by name.
    consumers: Listing[list[ConsumerInfo]] = field(default_factory=Listing)
    #: A page of its schedules and of its delayed events (ui/schedules.py).
    schedules: Listing[ScheduleBoard] = field(default_factory=Listing)
    _since_tick: int = 0
    _firings_floor: int = 0  # ids below it were trimmed: older than every firing kept
    _firings_sorted: list[dict[str, Any]] | None = None

    @property
    def rules_on(self) -> bool:
        return bool(self.info and self.info.get("enable_rules"))

    def add_event(self, event: dict[str, Any], *, live: bool = True) -> None:
        """A committed event; `live=False` for history loaded at connect (no rate, no count)."""
        self.events.append(event)
        if not live:
            return
        self.received += 1
        self._since_tick += 1
        topic = self.topics.get(event["topic"])
        if topic is None:
            topic = self.topics[event["topic"]] = TopicView(event["topic"])
        topic.saw(event["event_id"], event.get("timestamp"))

    def add_firing(self, firing: dict[str, Any]) -> None:
        """A firing, new or again (a retried one, or one listed at connect that a
        subscription also sent): keyed by its id, never shown twice."""
        firing_id = firing["firing_id"]
        if firing_id < self._firings_floor and firing_id not in self.firings:
            return
        self.firings[firing_id] = firing
        if len(self.firings) > MAX_FIRINGS + FIRINGS_SLACK:
            kept = sorted(self.firings)[-MAX_FIRINGS:]
            self.firings = {key: self.firings[key] for key in kept}
            self._firings_floor = kept[0]
        self.firings_version += 1
        self._firings_sorted = None

    def firings_by_id(self) -> list[dict[str, Any]]:
        """The firings kept, oldest first by firing id (the order they were claimed in)."""
        if self._firings_sorted is None:
            self._firings_sorted = [self.firings[key] for key in sorted(self.firings)][
                -MAX_FIRINGS:
            ]
        return self._firings_sorted

    @property
    def failed_firings(self) -> int | None:
        """The bus's own count of dead letters: its rules' `failed` counters (None while unknown)."""
        if not self.rules_on:
            return None
        return sum(int(rule.get("failed", 0)) for rule in self.rules)

    def load_topics(self, stats: list[TopicInfo]) -> None:
        """Stored counts from `list_topics`; live events keep them current in between."""
        for row in stats:
            view = self.topics.get(row["topic"])
            if view is None:
                view = self.topics[row["topic"]] = TopicView(row["topic"])
            if row["last_event_id"] >= view.last_event_id:
                view.count, view.last_event_id = row["count"], row["last_event_id"]
                view.last_timestamp = row.get("last_timestamp")

    def tick(self, seconds: float) -> None:
        """Once a second: turn what arrived into rates."""
        self.rate = self._since_tick / seconds if seconds > 0 else 0.0
        self._since_tick = 0
        for topic in self.topics.values():
            topic.tick(seconds)

    def topics_by_activity(self) -> list[TopicView]:
        return sorted(self.topics.values(), key=lambda t: (-t.rate, -t.last_event_id, t.topic))


class EventFilter:
    """The stream's filter box: a topic pattern and/or `source:PATTERN`, `target:PATTERN`.

    `repo.> source:trn:user:*` keeps repo events from users. Empty keeps all.
    """

    def __init__(self, text: str = "") -> None:
        self.text = text.strip()
        checks: list[Callable[[dict[str, Any]], bool]] = []
        for token in self.text.split():
            kind, _, pattern = token.partition(":")
            if kind in ("source", "target") and pattern:
                checks.append(_trn_check(f"{kind}_trn", _trn(pattern, token)))
            else:
                checks.append(_topic_check(_topic(token)))
        self._checks = checks

    def __call__(self, event: dict[str, Any]) -> bool:
        return all(check(event) for check in self._checks)


def _trn_check(key: str, matches: Callable[[str], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get(key) is not None and matches(event[key])


def _topic_check(matches: Callable[[str], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda event: matches(event["topic"])


def _trn(pattern: str, token: str) -> Callable[[str], bool]:
    try:
        return compile_trn_pattern(pattern)
    except ValueError as exc:
        raise ValueError(f"{token!r}: {exc}") from None


def _topic(pattern: str) -> Callable[[str], bool]:
    try:
        return compile_topic_pattern(pattern)
    except ValueError as exc:
        raise ValueError(f"{pattern!r}: {exc}") from None
