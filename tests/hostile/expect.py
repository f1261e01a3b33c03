"""Which replies a byte stream must get, from DESIGN.md §3 and docs/protocol.md §1-§2 alone.

The model frames the stream as the contract says (`\\n` lines, `\\r\\n`
accepted, blank lines ignored, a last line without terminator answered at
half-close, a line over `max_message_bytes` ends the connection) and counts
the replies each line is owed, with the id each must carry. The fuzzer then
compares that multiset with what came back: a lost, doubled or misaddressed
reply fails the example like a malformed one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from .fuzz_server import id_key

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_NESTING = 200


@dataclass
class Expectation:
    #: id keys (see `id_key`) of every reply owed; None in a key's place means `"id": null`.
    replies: Counter[Any]
    #: A line over the limit: the bus answers -32007 and closes, dropping what was still running.
    overflowed: bool


def frame(stream: bytes, max_line: int) -> tuple[list[bytes], bool]:
    """The lines the bus runs, and whether a line over `max_line` ended the connection."""
    *complete, partial = stream.split(b"\n")
    lines = []
    for line in complete:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max_line:
            return lines, True
        if line.strip():
            lines.append(line)
    if len(partial) - partial.endswith(b"\r") > max_line:
        return lines, True
    if partial.strip():
        lines.append(partial.rstrip(b"\r"))
    return lines, False


def expect(stream: bytes, *, max_line: int, max_batch: int) -> Expectation:
    lines, overflowed = frame(stream, max_line)
    replies: Counter[Any] = Counter()
    for line in lines:
        for key in _owed(line, max_batch):
            replies[key] += 1
    return Expectation(replies, overflowed)


class _Huge(int):
    """An integer literal longer than 40 digits (the bus refuses it without converting)."""


def _exact_int(text: str) -> int:
    return _Huge(0) if len(text.lstrip("-")) > 40 else int(text)


_NULL = id_key(None)


def _owed(line: bytes, max_batch: int) -> list[Any]:
    try:
        decoded = orjson.loads(line)
    except orjson.JSONDecodeError:
        return [_NULL]  # -32700
    if _depth(decoded) > MAX_NESTING:
        # Refused before anything else is looked at: the id as the codec read it.
        if isinstance(decoded, dict) and "id" in decoded and _valid_id(decoded["id"]):
            return [id_key(decoded["id"])]
        return [_NULL]
    data = json.loads(line, parse_int=_exact_int)
    if isinstance(data, list):
        if not data or len(data) > max_batch:
            return [_NULL]
        return [key for item in data for key in _owed_item(item)]
    return _owed_item(data)


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not isinstance(value, _Huge) and INT64_MIN <= value <= INT64_MAX
    return value is None or isinstance(value, str | float)


def _owed_item(item: Any) -> list[Any]:
    if not isinstance(item, dict):
        return [_NULL]
    well_formed = (
        item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and ("params" not in item or isinstance(item["params"], dict | list))
    )
    if "id" not in item:
        return [] if well_formed else [_NULL]  # a notification is never answered
    return [id_key(item["id"]) if _valid_id(item["id"]) else _NULL]


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in current.values())
        elif isinstance(current, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in current)
    return deepest
