"""Points in time on the command line: `30s`, `15m`, `2h`, `7d` (that long ago),
ISO-8601 (`2026-11-28T10:00:00Z`, `2026-11-28`; no zone means UTC), or epoch
milliseconds. Durations go through pytimeparse (eventbus_core.durations) and
dates through the standard library's ISO-8601 parser."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from eventbus_cli.errors import UsageError

__all__ = ["parse_at_ms", "parse_delay_ms", "parse_time_ms"]

TIME_FORMS = "'30s', '15m', '2h', '7d' (ago), ISO-8601 like 2026-11-28T10:00:00Z, or epoch ms"


def _moment_ms(text: str) -> int | None:
    """Epoch ms of an ISO-8601 time (no zone means UTC) or of epoch ms; None if neither."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_at_ms(value: str, option: str) -> int:
    """A point in time to come (`emit --at`): ISO-8601 or epoch ms, not a duration
    (which would mean "ago" elsewhere: `--delay` says "from now")."""
    moment = _moment_ms(value.strip())
    if moment is None:
        raise UsageError(
            f"{option} {value!r} is not a time: use ISO-8601 like 2026-12-24T09:00Z or epoch ms (for 'in 10m', use --delay 10m)"
        )
    return moment


def parse_delay_ms(value: str, option: str) -> int:
    """A duration from now (`emit --delay 10m`), in milliseconds."""
    from eventbus_core.durations import parse_duration_s  # lazily: it loads the core package

    try:
        return int(parse_duration_s(value) * 1000)
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a duration: use '30s', '10m', '2h', '7d' or seconds"
        ) from None


def parse_time_ms(value: str, option: str, *, now_ms: int | None = None) -> int:
    """Epoch milliseconds for `value`; a UsageError naming `option` and the forms."""
    text = value.strip()
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    moment = _moment_ms(text)
    if moment is not None:
        return moment
    from eventbus_core.durations import parse_duration_s  # lazily: it loads the core package

    try:
        return now - int(parse_duration_s(text) * 1000)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a time: use {TIME_FORMS}") from None
