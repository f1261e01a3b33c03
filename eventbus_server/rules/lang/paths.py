"""Where a rule condition or a template looks in an event (DESIGN.md §4).

A key starting with `$` is a JSONPath (jsonpath-ng, no regexes, at most one
`..`: see `_REGEX_FORMS`) over the whole envelope;
a bare envelope field name (the five DESIGN names: `topic`, `timestamp`,
`source_trn`, `target_trn`, `correlation_id`) means that field; any other bare
key, `event_id`, `metadata` and `payload` included, is a dotted path into
`payload` (reach those three with `$.event_id`, `$.metadata.x`, `$.payload`). A selector returns every value the path selects: empty
when the field is missing.

Plain chains of names (`$.payload.repo`, `branch`, `a.b.c`) are the common
case and sit on the hot path of every emitted event, so they skip
jsonpath-ng (~6 µs a lookup) for a walk over dicts (~0.3 µs). Dotted payload
paths step into arrays element by element, as EventBridge patterns do.

Every other JSONPath is admitted only if selecting with it costs time linear
in the event (`_refusal`): jsonpath-ng's extensions also parse regexes
(`=~`, `sub()`), arithmetic, sorting and walks back up (`parent`), which a
rule could turn into a stalled event loop. They are refused when the rule is
registered, naming the path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonpath_ng.ext import filter as jsonpath_filter
from jsonpath_ng.ext import iterable as jsonpath_iterable
from jsonpath_ng.ext.parser import parse as parse_jsonpath
from jsonpath_ng.jsonpath import (
    Child,
    Descendants,
    Fields,
    Index,
    JSONPath,
    Root,
    Slice,
    This,
    Wildcard,
)
from jsonpath_ng.jsonpath import _Union as Union  # `|`; jsonpath-ng exports no public name for it

from eventbus_server.rules.lang.operators import PatternError

__all__ = [
    "BARE_ENVELOPE_FIELDS",
    "MAX_JSONPATH_CHARS",
    "Selector",
    "compile_path",
    "reads_whole_event",
]

#: The envelope fields a bare key names; a payload key with another name stays reachable bare.
BARE_ENVELOPE_FIELDS = frozenset(
    {"topic", "timestamp", "source_trn", "target_trn", "correlation_id"}
)

Selector = Callable[[dict[str, Any]], list[Any]]

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_SIMPLE_JSONPATH = re.compile(rf"\$((?:\.{_NAME})+)")
_DOTTED = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_MISSING: Any = object()

#: A longer JSONPath is refused: it bounds parsing, and the depth of the
#: expression jsonpath-ng evaluates recursively, well inside Python's stack.
MAX_JSONPATH_CHARS = 256


def compile_path(key: str, where: str) -> Selector:
    """A selector for a condition key or template path; `where` names it in errors."""
    key = key.strip()
    if key.startswith("$"):
        simple = _SIMPLE_JSONPATH.fullmatch(key)
        if simple:
            return _walker(simple.group(1)[1:].split("."), flatten_arrays=False)
        return _jsonpath(key, where)
    if key in BARE_ENVELOPE_FIELDS:
        return _walker([key], flatten_arrays=False)
    if _DOTTED.fullmatch(key):
        return _walker(["payload", *key.split(".")], flatten_arrays=True)
    raise PatternError(
        where,
        f"{key!r} is not a field: use a JSONPath starting with '$', an envelope field "
        f"({', '.join(sorted(BARE_ENVELOPE_FIELDS))}) or a dotted payload path like 'repo.name'",
    )


def _walker(names: list[str], *, flatten_arrays: bool) -> Selector:
    def walk(envelope: dict[str, Any]) -> list[Any]:
        value: Any = envelope
        for step, name in enumerate(names):
            if isinstance(value, dict):
                value = value.get(name, _MISSING)
                if value is _MISSING:
                    return []
            elif flatten_arrays and isinstance(value, list):
                return _spread([value], names[step:])
            else:
                return []
        return [value]  # no array on the way: the common case, one value

    return walk


def _spread(current: list[Any], names: list[str]) -> list[Any]:
    """Step into arrays element by element, as EventBridge patterns do."""
    for name in names:
        found = []
        for value in current:
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, dict) and name in item:
                    found.append(item[name])
        if not found:
            return []
        current = found
    return current


def _jsonpath(key: str, where: str) -> Selector:
    if len(key) > MAX_JSONPATH_CHARS:
        raise PatternError(
            where, f"a JSONPath is at most {MAX_JSONPATH_CHARS} characters, this one has {len(key)}"
        )
    try:
        expression = parse_jsonpath(key)
    except Exception as exc:  # JSONPathError mostly, but jsonpath-ng also lets re.error and its own ValueErrors out
        raise PatternError(where, f"invalid JSONPath {key!r}: {exc}") from None
    reason = _refusal(expression, _Walk())
    if reason is not None:
        raise PatternError(where, f"JSONPath {key!r} is refused: {reason}")

    def select(envelope: dict[str, Any]) -> list[Any]:
        try:
            return [match.value for match in expression.find(envelope)]
        except Exception:
            # jsonpath-ng raises on some values (`sorted` over mixed types, `[/a]` on an
            # object). For this event the path selects nothing, like a missing field;
            # raising would fail test_rule and stop the engine's matching for every rule.
            return []

    select.reads_whole_event = True  # type: ignore[attr-defined]
    return select


def reads_whole_event(select: Selector) -> bool:
    """Whether a selector may walk the whole event (jsonpath-ng: `..`, filters,
    wildcards), at about 1 µs a node: 0.6 s over a 1 MiB event. The engine
    matches rules with such selectors off the event loop."""
    return getattr(select, "reads_whole_event", False)


# --- what a JSONPath may do -------------------------------------------------------
#
# Selecting costs time linear in the event when every step maps a set of
# distinct nodes to distinct nodes below them: names, `*`, indexes, slices and
# filters do (a filter tests each child once, looking only under it). Three
# things break that, and are refused: a second `..` (it walks again below
# every node the first one found), `$` anywhere but at the start (it climbs
# back to the top for every node, recursively), and `..` inside a filter (a
# subtree walk for every candidate). So are the constructs that run regexes,
# build values (arithmetic can repeat a string a billion times), sort, or
# that jsonpath-ng cannot evaluate at all.

_STEPS = (Fields, Wildcard, Index, Slice, This, jsonpath_iterable.Len, jsonpath_iterable.Keys)

_REFUSED: dict[str, str] = {
    "Sub": "`sub()` runs a regex, which can backtrack for minutes on one event",
    "Operation": "arithmetic can build huge values (a string times a number) or divide by zero",
    "Parent": "`parent` walks back up, which makes selections grow past the event's size",
    "SortedThis": "sorting costs more than one look at each value and fails on mixed types",
    "_Intersect": "`&` is not implemented by jsonpath-ng",
    "Split": "string functions are not supported in rule paths",
    "Str": "string functions are not supported in rule paths",
    "Path": "`path` is not supported in rule paths",
    "Where": "`where` is not supported in rule paths; use a filter [?(...)]",
    "WhereNot": "`wherenot` is not supported in rule paths; use a filter [?(...)]",
}


class _Walk:
    """Where the check is inside the expression."""

    __slots__ = ("descendants", "first", "in_filter")

    def __init__(self) -> None:
        self.descendants = 0
        self.first = True  # the leftmost step, where `$` belongs
        self.in_filter = False


def _refusal(node: JSONPath, walk: _Walk) -> str | None:
    """Why selecting with `node` could cost more than linear time; None if it cannot."""
    # Exact types: jsonpath-ng derives `sub()`, sorting and others from This.
    if type(node) is Root:
        if walk.first and not walk.in_filter:
            return None
        if walk.in_filter:
            return "`$` inside a filter climbs to the top for every candidate; filters may only look at `@`"
        return "`$` may only start the path (for several fields, write $['a','b'])"
    if type(node) in _STEPS:
        return None
    if type(node) is Child or type(node) is Descendants:
        return _refusal_of_step(node, walk)
    if type(node) is jsonpath_filter.Filter:
        return _refusal_of_filter(node.expressions, walk)
    if type(node) is jsonpath_filter.Expression:
        return _refusal_of_expression(node, walk)
    if type(node) is jsonpath_filter.And or type(node) is jsonpath_filter.Or:
        return _refusal_of_filter(node.operands, walk)
    if type(node) is Union:
        return _refusal_of_pair(node.left, node.right, walk)
    name = type(node).__name__
    return _REFUSED.get(name, f"{name} is not supported in rule paths")


def _refusal_of_step(node: Child | Descendants, walk: _Walk) -> str | None:
    if isinstance(node, Descendants):
        if walk.in_filter:
            return "`..` inside a filter walks a whole subtree for every candidate"
        walk.descendants += 1
        if walk.descendants > 1:
            return (
                "only one `..` per path: a second one walks again below every node the first found"
            )
    return _refusal_of_pair(node.left, node.right, walk)


def _refusal_of_pair(left: JSONPath, right: JSONPath, walk: _Walk) -> str | None:
    first = walk.first
    reason = _refusal(left, walk)
    walk.first = False  # whatever comes after the leftmost step is not the start
    if reason is None:
        reason = _refusal(right, walk)
    walk.first = first
    return reason


def _refusal_of_filter(expressions: list[JSONPath], walk: _Walk) -> str | None:
    in_filter = walk.in_filter
    walk.in_filter = True
    try:
        return next((r for e in expressions if (r := _refusal(e, walk)) is not None), None)
    finally:
        walk.in_filter = in_filter


def _refusal_of_expression(node: jsonpath_filter.Expression, walk: _Walk) -> str | None:
    if node.op == "=~":
        return "regex match (=~): a regex from a rule can backtrack for minutes on one event"
    reason = _refusal(node.target, walk)
    if reason is None and isinstance(node.value, JSONPath):
        reason = _refusal(node.value, walk)
    return reason
