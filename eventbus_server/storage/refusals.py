"""What a database refuses to store, told to the client as `InvalidParams` (-32602).

Validation runs before an event reaches storage, but the databases have
limits of their own: an integer column holds int64 (a Python int outside it
makes sqlite3 raise `OverflowError` and asyncpg `DataError`), and PostgreSQL
cannot hold `\\u0000` in `text` or `jsonb` (`CharacterNotInRepertoireError`,
`UntranslatableCharacterError`). That is the data's fault, not the bus's, so
the client gets a clear error naming the field, and the bus's writer retries
the rest of the group commit without it (bus.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventbus_core.errors import InvalidParams
from eventbus_server.storage.base import NewEvent

__all__ = ["INT64_MAX", "INT64_MIN", "refusal"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NUL = "\x00"
_STRING_FIELDS = ("topic", "source_trn", "target_trn", "correlation_id", "idempotency_key")


def refusal(
    database: str,
    error: BaseException,
    events: Sequence[NewEvent] = (),
    *,
    refuses_nul: bool = False,
) -> InvalidParams:
    """The client's error for data `database` would not store.

    `events`: what was being stored, searched for the value at fault so the
    message can name it; without events (or when none is found) the
    database's own words say what was wrong.
    """
    for event in events:
        problem = _problem(event, refuses_nul)
        if problem is not None:
            subject = "this event" if len(events) == 1 else f"an event on topic {event.topic!r}"
            return InvalidParams(f"{database} cannot store {subject}: {problem}")
    hint = f" ({database} cannot store \\u0000 in a string)" if refuses_nul else ""
    said = " ".join(str(error).split())  # asyncpg adds a DETAIL line; a message is one line
    return InvalidParams(f"{database} refused a value: {said}{hint}")


def _problem(event: NewEvent, refuses_nul: bool) -> str | None:
    if not INT64_MIN <= event.timestamp <= INT64_MAX:
        return f"timestamp {event.timestamp} does not fit in a 64-bit integer"
    if not refuses_nul:
        return None
    for name in _STRING_FIELDS:
        value = getattr(event, name)
        if isinstance(value, str) and _NUL in value:
            return f"{name} contains \\u0000, which PostgreSQL cannot store"
    for name in ("payload", "metadata"):
        where = _nul_in(getattr(event, name), name)
        if where is not None:
            return f"{where} contains \\u0000, which PostgreSQL cannot store"
    return None


def _nul_in(value: Any, path: str) -> str | None:
    """The path of the first string (or object key) in a JSON value that holds a NUL."""
    # A stack, not recursion: a payload may nest deeper than Python's recursion limit.
    stack = [(value, path)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _NUL in value:
                return path
        elif isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and _NUL in key:
                    return f"a key in {path}"
            stack.extend((item, f"{path}.{key}") for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(
                (item, f"{path}[{index}]") for index, item in reversed(list(enumerate(value)))
            )
    return None
