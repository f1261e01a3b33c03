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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonpath_ng.ext import parse as parse_jsonpath

from .operators import PatternError

__all__ = ["BARE_ENVELOPE_FIELDS", "Selector", "compile_path"]

#: The envelope fields a bare key names; a payload key with another name stays reachable bare.
BARE_ENVELOPE_FIELDS = frozenset({"topic", "timestamp", "source_trn", "target_trn", "correlation_id"})

Selector = Callable[[dict[str, Any]], list[Any]]

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_SIMPLE_JSONPATH = re.compile(rf"\$((?:\.{_NAME})+)")
_DOTTED = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_MISSING: Any = object()


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


#: JSONPath forms whose cost grows faster than the event: a regex of the client's
#: (`=~` filters, `sub(/re/, …)`) can backtrack exponentially, and every further
#: `..` multiplies the nodes visited (`$..*..*..*` on a 200-level payload: minutes).
#: A rule runs on every event of its topic, so one such path stalls the bus.
_REGEX_FORMS = re.compile(r"=~|`\s*sub\s*\(")


def _jsonpath(key: str, where: str) -> Selector:
    if _REGEX_FORMS.search(key):
        raise PatternError(
            where, f"JSONPath {key!r}: regular expressions (=~, sub()) are not supported; use the wildcard operator"
        )
    if key.count("..") > 1:
        raise PatternError(where, f"JSONPath {key!r}: at most one recursive descent ('..') per path")
    try:
        expression = parse_jsonpath(key)
    except Exception as exc:  # JSONPathError mostly, but jsonpath-ng also lets re.error and its own ValueErrors out
        raise PatternError(where, f"invalid JSONPath {key!r}: {exc}") from None

    def select(envelope: dict[str, Any]) -> list[Any]:
        try:
            return [match.value for match in expression.find(envelope)]
        except Exception:
            # jsonpath-ng raises on some values (`sorted` over mixed types, `[/a]` on an
            # object). For this event the path selects nothing, like a missing field;
            # raising would fail test_rule and stop the engine's matching for every rule.
            return []

    return select
