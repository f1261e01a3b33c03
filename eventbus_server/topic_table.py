"""Per-topic counters kept in memory, so `list_topics` never scans the log."""

from __future__ import annotations

from collections.abc import Iterable

from eventbus_core.event import Event
from eventbus_core.results import TopicInfo
from eventbus_server.storage.base import TopicStats

__all__ = ["TopicTable"]


class TopicTable:
    """topic → [count, last_event_id, last_timestamp], updated on every commit."""

    def __init__(self) -> None:
        self._topics: dict[str, list[int]] = {}
        self.last_event_id = 0

    def __len__(self) -> int:
        return len(self._topics)

    def load(self, stats: Iterable[TopicStats], *, keep_last_id: bool = False) -> None:
        self._topics = {s.topic: [s.count, s.last_event_id, s.last_timestamp] for s in stats}
        newest = max((row[1] for row in self._topics.values()), default=0)
        self.last_event_id = max(self.last_event_id, newest) if keep_last_id else newest

    def add(self, events: Iterable[Event]) -> None:
        topics = self._topics
        for event in events:
            row = topics.get(event.topic)
            if row is None:
                topics[event.topic] = [1, event.event_id, event.timestamp]
            else:
                row[0] += 1
                row[1] = event.event_id
                row[2] = event.timestamp
            self.last_event_id = event.event_id

    def snapshot(self) -> list[TopicInfo]:
        return [
            {"topic": topic, "count": row[0], "last_event_id": row[1], "last_timestamp": row[2]}
            for topic, row in sorted(self._topics.items())
        ]
