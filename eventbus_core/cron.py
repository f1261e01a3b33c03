"""When a recurring schedule ticks (DESIGN.md §11): a cron expression in a time
zone, or a fixed interval.

Cron expressions are read by cronsim, which follows Debian's cron, DST
included: a job at a fixed time that falls into the hour skipped in spring
runs right after the jump, and one that falls into the hour repeated in
autumn runs once, not twice; jobs with a `*` in the minute or hour field run
by elapsed time through both. (croniter, the other common choice, runs a
daily `30 2 * * *` twice on the autumn day; see the commit that chose this.)
Five fields only (minute hour day-of-month month day-of-week), plus the
usual nicknames (`@hourly`, `@daily`, …).

An interval (`every_ms`) ticks at the multiples of `every_ms` since the Unix
epoch, so every node computes the same ticks and `every_ms: 3600000` ticks on
the hour (UTC).

Pure: no I/O. Every time here is epoch milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = [
    "MAX_EVERY_MS",
    "MIN_EVERY_MS",
    "Cadence",
    "validate_cron",
    "validate_timezone",
]

#: Intervals below a second would let one schedule flood the log.
MIN_EVERY_MS = 1000
#: About a year: beyond it a cron expression says it better.
MAX_EVERY_MS = 366 * 24 * 3600 * 1000

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = "minute hour day-of-month month day-of-week"
_MAX_CRON_CHARS = 255
_MAX_ZONE_CHARS = 64
_EPOCH = datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC"))


def validate_cron(expr: str) -> str:
    """`expr` as it is stored (whitespace collapsed); a ValueError that names it."""
    text = " ".join(expr.split())
    if len(text) > _MAX_CRON_CHARS:
        raise ValueError(f"cron expression is longer than {_MAX_CRON_CHARS} characters")
    fields = NICKNAMES.get(text.lower(), text).split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expr!r} has {len(fields)} fields; it takes 5 ({FIELDS})"
        )
    try:
        CronSim(" ".join(fields), _EPOCH)
    except (CronSimError, ValueError, IndexError) as exc:
        reason = str(exc) or "not a cron expression"
        raise ValueError(f"cron expression {expr!r}: {reason.lower()} ({FIELDS})") from None
    return text


def validate_timezone(name: str) -> str:
    """An IANA time zone name (`Europe/Berlin`, `UTC`); a ValueError naming it otherwise."""
    if not name or len(name) > _MAX_ZONE_CHARS:
        raise ValueError(f"time zone must be 1-{_MAX_ZONE_CHARS} characters")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None
    return name


class Cadence:
    """The ticks of one schedule: `after(ms)` is the first one later than `ms`,
    `latest(ms)` the last one at or before it (None: there is none)."""

    def __init__(
        self, *, cron: str | None = None, every_ms: int | None = None, timezone: str = "UTC"
    ) -> None:
        if (cron is None) == (every_ms is None):
            raise ValueError("a schedule takes either cron or every_ms")
        self.every_ms = every_ms
        self.cron = None if cron is None else " ".join(NICKNAMES.get(cron.lower(), cron).split())
        self.zone = ZoneInfo(timezone)

    def after(self, ms: int) -> int | None:
        if self.every_ms is not None:
            return (ms // self.every_ms + 1) * self.every_ms
        return self._cron_tick(ms, reverse=False)

    def latest(self, ms: int) -> int | None:
        if self.every_ms is not None:
            return ms // self.every_ms * self.every_ms
        # cronsim's reverse walk starts strictly before a whole second, but at the
        # second itself when given a fraction of one: so start 1 ms later.
        return self._cron_tick(ms + 1, reverse=True)

    def due(self, next_tick: int, now_ms: int) -> tuple[int, int | None]:
        """A schedule due since `next_tick`: the tick to emit now (the latest one,
        missed ones are not caught up) and the tick after it."""
        latest = self.latest(now_ms)
        tick = next_tick if latest is None else max(next_tick, latest)
        return tick, self.after(max(now_ms, tick))

    def _cron_tick(self, ms: int, *, reverse: bool) -> int | None:
        assert self.cron is not None
        try:
            moment = datetime.fromtimestamp(ms // 1000, self.zone).replace(
                microsecond=ms % 1000 * 1000
            )
            tick = next(CronSim(self.cron, moment, reverse=reverse))
        except (OverflowError, ValueError, OSError, StopIteration):
            return None  # beyond the calendar (year 9999): never again
        return int(tick.timestamp()) * 1000
