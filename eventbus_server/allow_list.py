"""A bus's `allowed_sources` (DESIGN §7): the source TRNs a client may emit with.

No list lets every source through, and none is needed. With one, each event
names a `source_trn` that one of the patterns matches; the bus's own events
(rules, schedules) are trusted and skip it. An emitter repeats its source, so
the sources let through lately are remembered (at most MAX_SOURCES_SEEN) and
the next event with one skips the patterns.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventbus_core.errors import SourceNotAllowed
from eventbus_core.trn import compile_trn_pattern

__all__ = ["MAX_SOURCES_SEEN", "AllowList"]

#: Allowed sources remembered, so that a repeated one skips the allow-list's patterns.
MAX_SOURCES_SEEN = 4096


class AllowList:
    def __init__(self, patterns: Sequence[str] | None, *, bus_id: str) -> None:
        self.patterns = tuple(patterns) if patterns is not None else None
        self.bus_id = bus_id
        self._matchers = (
            [compile_trn_pattern(p) for p in patterns] if patterns is not None else None
        )
        #: Sources let through lately: `source in seen` is the whole check for them.
        self.seen: set[str | None] = set()

    @property
    def everyone(self) -> bool:
        """No list: every source may emit."""
        return self._matchers is None

    def check(self, source_trn: str | None, where: str) -> None:
        """Raise SourceNotAllowed unless `source_trn` may emit here; `where` prefixes the
        message with the event's place (`events[3]: `, `event.`)."""
        if self._matchers is None:
            return
        allowed = ", ".join(self.patterns or ())
        if source_trn is None:
            raise SourceNotAllowed(
                f"{where}source_trn is required on bus {self.bus_id!r} (allowed: {allowed})"
            )
        if not any(match(source_trn) for match in self._matchers):
            raise SourceNotAllowed(
                f"{where}source_trn {source_trn!r} is not allowed on bus {self.bus_id!r} (allowed: {allowed})"
            )
        if len(self.seen) >= MAX_SOURCES_SEEN:
            self.seen.clear()
        self.seen.add(source_trn)
