"""Human durations (`30s`, `15m`, `2h`, `7d`, `1h30m`) for config and CLI."""

from __future__ import annotations

from pytimeparse.timeparse import timeparse as _parse_timespan

__all__ = ["parse_duration_s"]


def parse_duration_s(value: object) -> float:
    """Seconds in `value`: a non-negative number (seconds) or a duration string.

    Raises ValueError naming the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '10m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        parsed = _parse_timespan(value.strip())
        if parsed is None:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or '30s', '15m', '2h', '7d'"
            )
        seconds = float(parsed)
    else:
        raise ValueError("a duration must be a number of seconds or a string like '10m'")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative (got {value!r})")
    return seconds
