"""Where a validation problem is: pydantic's location tuples as `events[3].topic`.

Config errors (`[1].listen`) and -32602 `data` items use the same form.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_loc"]


def format_loc(parts: Sequence[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
