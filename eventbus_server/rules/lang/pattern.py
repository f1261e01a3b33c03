"""AWS EventBridge event patterns: compile once, match every event, explain misses.

A pattern is a JSON object shaped like the events it matches. Each leaf is an
array of alternatives (`router.operators`); objects nest; sibling fields are
ANDed; `"$or": [p1, p2, ...]` needs any one of its sub-patterns.

How events are read, as EventBridge (event-ruler) reads them:

- A key with dots is a path: pattern `{"a.b": [1]}` equals `{"a": {"b": [1]}}`,
  and an event key `"a.b"` is found where the pattern says `a` then `b`.
- An array in the event matches a leaf if any of its scalars does (nested
  arrays are opened). An empty array, or an object where the pattern has a
  leaf, is a missing leaf: only `{"exists": false}` matches it.
- An array of objects matches a sub-pattern if *one* element matches all of
  it; fields from different elements are never combined ("array consistency").
- A string holding JSON is a string: patterns never look inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eventbus_server.rules.lang.limits import MAX_FIELD_VALUES, check_field_values
from eventbus_server.rules.lang.operators import (
    MISSING,
    PatternError,
    ValueTest,
    compile_alternatives,
)

__all__ = ["EventPattern", "Failure", "compile_pattern"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One reason an event does not match."""

    #: Dotted path into the event ("payload.branch"); "$or[1]." and "[2]" mark
    #: an `$or` alternative and an array element.
    path: str
    #: The pattern's alternatives at that path, as written.
    expected: Any
    #: The value found there (the whole list if array-valued), or MISSING.
    saw: Any


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


class _Leaf:
    """An array of alternatives at one field."""

    __slots__ = ("absent_ok", "expected", "test")

    def __init__(self, test: ValueTest, expected: list[Any]) -> None:
        self.test = test
        self.expected = expected
        self.absent_ok = test.matches_missing

    def matches(self, value: Any) -> bool:
        if value.__class__ in _SCALARS:
            return self.test(value)
        if isinstance(value, list):
            scalars = _scalars(value)
            if scalars:
                return any(map(self.test, scalars))
        # Missing, an object, or an array without scalars: no leaf value here.
        return self.absent_ok

    def explain(self, value: Any, path: str, failures: list[Failure]) -> None:
        if not self.matches(value):
            failures.append(Failure(path, self.expected, value))


class _Object:
    """A nested pattern object: every field, and one alternative of every `$or`."""

    __slots__ = ("absent_ok", "fields", "ors")

    def __init__(self, fields: dict[str, list[_Node]], ors: list[tuple[_Object, ...]]) -> None:
        # (key, "key." for dotted event keys, node, whether the node is an object)
        self.fields = tuple(
            (key, key + ".", node, isinstance(node, _Object))
            for key, nodes in fields.items()
            for node in nodes
        )
        self.ors = tuple(ors)
        # Whether a missing (or scalar) value satisfies the whole object, e.g. {"a": [{"exists": false}]}.
        self.absent_ok = self.matches_dict({})

    def matches(self, value: Any) -> bool:
        if isinstance(value, dict):
            return self.matches_dict(value)
        if isinstance(value, list):
            objects = _objects(value)
            if objects:
                return any(self.matches_dict(element) for element in objects)
        return self.absent_ok

    def matches_dict(self, event: dict[str, Any]) -> bool:
        for key, dotted, node, is_object in self.fields:
            value = event.get(key, MISSING)
            if value is MISSING and is_object:
                value = _dotted_keys(event, dotted)
            if not node.matches(value):
                return False
        # `not self.ors` first: most patterns have no $or, so skip building the generator.
        return not self.ors or all(
            any(branch.matches_dict(event) for branch in branches) for branches in self.ors
        )

    def explain(self, value: Any, path: str, failures: list[Failure]) -> None:
        if isinstance(value, dict):
            self.explain_dict(value, path, failures)
        elif isinstance(value, list) and (elements := _indexed_objects(value, path)):
            if not any(self.matches_dict(element) for _, element in elements):
                # Report the element that came closest rather than every element.
                closest: list[Failure] = min((self._failures(e, at) for at, e in elements), key=len)
                failures.extend(closest)
        elif not self.absent_ok:
            self.explain_dict({}, path, failures)

    def explain_dict(self, event: dict[str, Any], path: str, failures: list[Failure]) -> None:
        for key, dotted, node, is_object in self.fields:
            value = event.get(key, MISSING)
            if value is MISSING and is_object:
                value = _dotted_keys(event, dotted)
            node.explain(value, _join(path, key), failures)
        for branches in self.ors:
            if not any(branch.matches_dict(event) for branch in branches):
                for index, branch in enumerate(branches):
                    branch.explain_dict(event, _join(path, f"$or[{index}]"), failures)

    def _failures(self, event: dict[str, Any], path: str) -> list[Failure]:
        failures: list[Failure] = []
        self.explain_dict(event, path, failures)
        return failures


_Node = _Leaf | _Object


class EventPattern:
    """A compiled EventBridge event pattern."""

    __slots__ = ("_root", "source")

    def __init__(self, root: _Object, source: dict[str, Any]) -> None:
        self._root = root
        #: The pattern as written.
        self.source = source

    def matches(self, event: Any) -> bool:
        return self._root.matches(event)

    def explain(self, event: Any) -> list[Failure]:
        """Why `event` does not match: [] exactly when `matches(event)`."""
        failures: list[Failure] = []
        self._root.explain(event, "", failures)
        return failures

    def __repr__(self) -> str:
        return f"EventPattern({self.source!r})"


def compile_pattern(pattern: Any, *, path: str = "pattern") -> EventPattern:
    """Compile an EventBridge pattern; PatternError names the first part AWS would reject."""
    if not isinstance(pattern, dict):
        raise PatternError(path, "an event pattern must be a JSON object")
    return EventPattern(_compile_object(pattern, path), pattern)


def _compile_object(spec: dict[str, Any], path: str) -> _Object:
    if not spec:
        raise PatternError(path, "Empty objects are not allowed")
    fields: dict[str, list[_Node]] = {}
    ors: list[tuple[_Object, ...]] = []
    for key, value in spec.items():
        where = f"{path}.{key}"
        if key == "$or":
            ors.append(_compile_or(value, where))
            continue
        node = _compile_field(key, value, where)
        # A dotted key is a nested path: {"a.b": x} is {"a": {"b": x}}.
        first, *rest = key.split(".")
        for segment in reversed(rest):
            node = _Object({segment: [node]}, [])
        _add(fields, first, node)
    return _Object(fields, ors)


def _compile_field(key: str, value: Any, where: str) -> _Node:
    if isinstance(value, list):
        return _Leaf(compile_alternatives(value, where), value)
    if isinstance(value, dict):
        return _compile_object(value, where)
    raise PatternError(where, f'"{key}" must be an object or an array')


def _compile_or(value: Any, where: str) -> tuple[_Object, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise PatternError(where, "$or takes an array of at least two pattern objects")
    branches = []
    for index, branch in enumerate(value):
        if not isinstance(branch, dict):
            raise PatternError(f"{where}[{index}]", "each $or alternative must be a pattern object")
        branches.append(_compile_object(branch, f"{where}[{index}]"))
    return tuple(branches)


def _add(fields: dict[str, list[_Node]], key: str, node: _Node) -> None:
    """Merge a field into its siblings: {"a.b": x, "a": {"c": y}} shares one `a`."""
    nodes = fields.setdefault(key, [])
    for index, other in enumerate(nodes):
        if isinstance(other, _Object) and isinstance(node, _Object):
            merged: dict[str, list[_Node]] = {}
            for child_key, _, child, _ in (*other.fields, *node.fields):
                _add(merged, child_key, child)
            nodes[index] = _Object(merged, [*other.ors, *node.ors])
            return
        if isinstance(other, _Leaf) and isinstance(node, _Leaf):
            # The same field spelled twice ("a.b" and a: {b}): either list may match.
            expected = [*other.expected, *node.expected]
            nodes[index] = _Leaf(_Either(other.test, node.test), expected)
            return
    # A leaf and an object under one key both apply (ANDed).
    nodes.append(node)


class _Either:
    """Two value tests ORed."""

    __slots__ = ("first", "matches_missing", "second")

    def __init__(self, first: ValueTest, second: ValueTest) -> None:
        self.first, self.second = first, second
        self.matches_missing = first.matches_missing or second.matches_missing

    def __call__(self, value: Any) -> bool:
        return self.first(value) or self.second(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# The three walks below open nested arrays with a stack, not recursion: an
# event may nest arrays 1,000 deep (the JSON parser allows 1,024), past
# Python's recursion limit, and a RecursionError here would fail the match.


def _scalars(items: list[Any]) -> list[Any]:
    """The scalars of an event array, nested arrays opened, objects skipped."""
    return _array_items(items, objects=False)


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    """The objects of an event array, nested arrays opened."""
    return _array_items(items, objects=True)


def _array_items(items: list[Any], *, objects: bool) -> list[Any]:
    """The objects (or else the scalars) of an event array, nested arrays opened,
    at most MAX_FIELD_VALUES of them (a rule's tests run on each)."""
    found: list[Any] = []
    stack = [iter(items)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, dict) if objects else item.__class__ in _SCALARS:
                found.append(item)
                if len(found) > MAX_FIELD_VALUES:
                    check_field_values(found)
        else:
            stack.pop()
    return found


def _indexed_objects(items: list[Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """Like `_objects`, each with its path ("detail.items[2]") for explanations."""
    found: list[tuple[str, dict[str, Any]]] = []
    stack = [(path, iter(enumerate(items)))]
    while stack:
        at, elements = stack[-1]
        for index, item in elements:
            if isinstance(item, dict):
                found.append((f"{at}[{index}]", item))
            elif isinstance(item, list):
                stack.append((f"{at}[{index}]", iter(enumerate(item))))
                break
        else:
            stack.pop()
    return found


def _dotted_keys(event: dict[str, Any], dotted: str) -> Any:
    """The keys of `event` that start with "key.", as the object under `key`, or MISSING.

    Only consulted when `key` itself is absent, so ordinary events pay one failed
    lookup; `{"state.status": "x"}` then reads as `{"state": {"status": "x"}}`.
    """
    cut = len(dotted)
    found = {name[cut:]: value for name, value in event.items() if name.startswith(dotted)}
    return found if found else MISSING
