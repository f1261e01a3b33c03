"""`match_fields` conditions (DESIGN.md §4): one key, one condition, ANDed.

The key is a path (`router.paths`); the condition holds if **any** value the
path selects satisfies it, arrays counting element by element. A missing
field fails every condition except `{"exists": false}`.

A condition value is:
- a scalar, or an object with several keys: equality;
- a list: any of its items (each a literal or an operator object);
- an object with exactly one key, an operator: the EventBridge ones from
  `router.operators`, plus `equals` (any JSON value, objects included) and
  `trn` (a TRN pattern, `eventbus_core.trn`). An unknown one-key object is
  rejected, never taken for a literal; `{"equals": {...}}` compares objects.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from eventbus_core.trn import compile_trn_pattern, validate_trn_pattern
from eventbus_server.rules.lang.limits import MAX_FIELD_VALUES, check_field_values
from eventbus_server.rules.lang.operators import (
    MISSING,
    PatternError,
    compile_literals,
    compile_operator,
)
from eventbus_server.rules.lang.paths import Selector, compile_path
from eventbus_server.rules.lang.pattern import Failure

__all__ = ["OPERATORS", "Condition", "compile_conditions", "leaves", "literal_key"]

#: Every operator a match_fields condition knows.
OPERATORS = (
    "anything-but",
    "cidr",
    "equals",
    "equals-ignore-case",
    "exists",
    "numeric",
    "prefix",
    "suffix",
    "trn",
    "wildcard",
)

# A test of one selected value: a scalar leaf, or (for equality) any JSON value.
_Test = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class _Item:
    test: _Test
    matches_missing: bool = False
    #: Whether the test also sees dicts and whole lists (equality does; operators see leaves).
    whole_values: bool = False
    #: For equality with a scalar: its `literal_key`, so rules can be looked up by value.
    literal: Hashable | None = None
    #: For equality with a scalar: the scalar, so a list of them is one lookup.
    scalar: Any = None


def literal_key(value: Any) -> Hashable | None:
    """A key that two scalars share exactly when JSON equality (`_equals`) says equal:
    1 and 1.0 share one, true and 1 do not. None for objects and arrays."""
    if value is None or isinstance(value, bool):
        return (bool, value)
    if isinstance(value, (int, float)):
        return (float, float(value))  # equal numbers give equal floats
    if isinstance(value, str):
        return (str, value)
    return None


class Condition:
    __slots__ = ("expected", "items", "key", "literals", "matches_missing", "select", "tests")

    def __init__(self, key: str, expected: Any, select: Selector, items: list[_Item]) -> None:
        self.key = key
        self.expected = expected
        self.select = select
        #: When the condition is "equals one of these scalars": their keys (see router/plan.py).
        self.literals = (
            frozenset(item.literal for item in items)
            if all(item.literal is not None for item in items)
            else None
        )
        self.items = _one_lookup_for_scalars(items)
        self.tests = tuple(item.test for item in self.items)
        self.matches_missing = any(item.matches_missing for item in self.items)

    def holds(self, envelope: dict[str, Any]) -> bool:
        values = self.select(envelope)
        if not values:
            return self.matches_missing
        if len(values) == 1 and not isinstance(values[0], (list, dict)):
            # The common case, on the path of every event: one scalar, which every
            # test sees as it is (a leaf, and the whole value).
            value = values[0]
            if len(self.tests) == 1:
                return self.tests[0](value)
            return any(test(value) for test in self.tests)
        scalars = leaves(values)
        for item in self.items:
            if item.whole_values and any(item.test(v) for v in values):
                return True
            if any(item.test(v) for v in scalars):
                return True
        return False

    def explain(self, envelope: dict[str, Any]) -> Failure | None:
        if self.holds(envelope):
            return None
        values = self.select(envelope)
        saw = MISSING if not values else values[0] if len(values) == 1 else values
        return Failure(self.key, self.expected, saw)


def compile_conditions(
    match_fields: dict[str, Any], where: str = "match_fields"
) -> list[Condition]:
    """Compile every condition; the first bad one raises PatternError naming its path."""
    conditions = []
    for key, expected in match_fields.items():
        at = f"{where}.{key}"
        select = compile_path(key, at)
        items = (
            [_item(value, f"{at}[{i}]") for i, value in enumerate(expected)]
            if isinstance(expected, list)
            else [_item(expected, at)]
        )
        if not items:
            raise PatternError(at, "an empty list matches nothing; give at least one value")
        conditions.append(Condition(key, expected, select, items))
    return conditions


def _item(value: Any, where: str) -> _Item:
    if isinstance(value, dict) and len(value) == 1:
        ((name, argument),) = value.items()
        return _operator(name, argument, f"{where}.{name}")
    if isinstance(value, list):
        raise PatternError(
            where, 'a list inside a list is not a condition; use {"equals": [...]} for a list value'
        )
    return _scalar_or_object(value)


def _scalar_or_object(value: Any) -> _Item:
    if isinstance(value, (dict, list)):
        return _Item(_equals(value), whole_values=True)
    return _Item(_equals(value), literal=literal_key(value), scalar=value)


def _one_lookup_for_scalars(items: list[_Item]) -> list[_Item]:
    """The items, with every "equals this scalar" merged into one set lookup:
    a list of 1,000 allowed values costs one lookup per event value, not 1,000."""
    scalars = [item.scalar for item in items if item.literal is not None]
    if len(scalars) < 2:
        return items
    merged = _Item(compile_literals(scalars))
    return [merged, *(item for item in items if item.literal is None)]


def _operator(name: str, argument: Any, where: str) -> _Item:
    if name == "equals":
        return _scalar_or_object(argument)
    if name == "trn":
        if not isinstance(argument, str):
            raise PatternError(where, 'trn takes a TRN pattern string, such as "trn:user:*"')
        try:
            matches = compile_trn_pattern(validate_trn_pattern(argument))
        except ValueError as exc:
            raise PatternError(where, str(exc)) from None
        return _Item(lambda v: isinstance(v, str) and matches(v))
    if name not in OPERATORS:
        raise PatternError(
            where.rpartition(".")[0],
            f"unknown operator {name!r} (known: {', '.join(OPERATORS)}); "
            'to compare with an object, write {"equals": {...}}',
        )
    test = compile_operator(name, argument, where)
    return _Item(test, matches_missing=test.matches_missing)


def _equals(expected: Any) -> _Test:
    # JSON equality: 1 == 1.0, but true is not 1.
    if isinstance(expected, bool) or expected is None:
        return lambda v: v is expected
    if isinstance(expected, (int, float)):
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == expected
    return lambda v: type(v) is type(expected) and v == expected


def leaves(values: list[Any]) -> list[Any]:
    """Scalars, with arrays opened element by element (nested arrays too).

    Each array is opened once: a JSONPath such as `$..*` selects an array and
    the arrays inside it, and opening each of them again would cost the depth
    of the nesting times its size.
    """
    leaves: list[Any] = []
    opened: set[int] = set()
    stack = list(reversed(values))
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            if id(value) not in opened:
                opened.add(id(value))
                stack.extend(reversed(value))
        elif not isinstance(value, dict):
            leaves.append(value)
            if len(leaves) > MAX_FIELD_VALUES:
                check_field_values(leaves)
    return leaves
