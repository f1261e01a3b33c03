"""JSON codec and line framing: pure functions and a sans-IO framer.

One JSON text per line, `\\n`-terminated (`\\r\\n` accepted). The framer never
touches a socket: the connection feeds it bytes and gets whole lines back, so
it is tested without any I/O.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "MAX_NESTING",
    "DecodeError",
    "LineFramer",
    "compact",
    "deeper_than",
    "dumps",
    "dumps_line",
    "loads",
]

DecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Encode to compact JSON bytes (dataclasses and non-str dict keys allowed)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def dumps_line(value: Any) -> bytes:
    """Encode to one framed line."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


def compact(data: bytes) -> bytes:
    """`data` copied into a buffer of its own length, for bytes that are kept a while.

    orjson's output keeps the capacity it reserved while encoding, several times
    its length (4 KiB at least; ~32 KiB for a 4 KB string, ~260 KiB for an array
    of a thousand small numbers): a thousand such lines waiting for a client hold
    that much more. The copy costs one memcpy. (home-assistant trims the
    fragments it caches the same way.)
    """
    return b"".join((data, b""))


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON; raises `DecodeError` (a ValueError) on anything that is not JSON."""
    return orjson.loads(data)


#: How deep a value the bus accepts from outside (requests, tool replies) may nest.
#: orjson decodes 1,024 levels but encodes only 254, and the bus encodes a value
#: again inside replies and notifications, a few levels deeper than it arrived;
#: a value it could not encode would fail later, far from its sender.
MAX_NESTING = 200
_ENCODE_DEPTH = 254


def deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` nests more than `levels` (< 254) arrays and objects deep.

    orjson measures depth in C: wrapped in the levels the limit leaves unused,
    `value` encodes only if it nests at most `levels` itself.
    """
    wrapped = value
    for _ in range(_ENCODE_DEPTH - levels):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return True
    return False


class LineFramer:
    """Splits a byte stream into lines of at most `max_line_bytes` each.

    `feed` returns the complete lines found so far (without their terminator;
    blank lines are dropped). Once a line is longer than the limit, `overflowed`
    becomes true and no more lines are returned: the caller answers -32007 and
    closes, because the rest of the stream cannot be re-synchronised safely.
    """

    __slots__ = ("_buffer", "max_line_bytes", "overflowed")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self.overflowed = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.overflowed:
            return []
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        if b"\n" not in data:
            self._keep_partial(data)
            return []
        *complete, partial = data.split(b"\n")
        lines: list[bytes] = []
        for line in complete:
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line_bytes:
                self.overflowed = True
                return lines
            if line.strip():
                lines.append(line)
        self._keep_partial(partial)
        return lines

    @property
    def partial_bytes(self) -> int:
        """How much of an unfinished line is held (0 between lines)."""
        return len(self._buffer)

    def flush(self) -> list[bytes]:
        """At end of stream: the unterminated last line, if any."""
        if self.overflowed or not self._buffer.strip():
            return []
        line = bytes(self._buffer).rstrip(b"\r")
        self._buffer.clear()
        return [line]

    def _keep_partial(self, partial: bytes) -> None:
        # A trailing '\r' may be the first half of '\r\n': it is not part of the line.
        if len(partial) - partial.endswith(b"\r") > self.max_line_bytes:
            self.overflowed = True
            self._buffer.clear()
        else:
            self._buffer += partial
