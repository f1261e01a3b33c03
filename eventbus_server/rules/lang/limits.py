"""What one rule may cost every event: caps checked before a rule is compiled.

Every value test is linear in the event value it reads, but a rule runs all
of its tests on every event of its topics, and a JSON pattern can ask for a
great many. So a rule is refused at `register_rule` (-32602, naming the part)
when its `pattern` or `match_fields` is larger than `MAX_MATCH_BYTES` as
compact JSON, nests deeper than `MAX_DEPTH` (that, or its action), runs
more than `MAX_VALUE_TESTS` tests on a value, or its action names more than
`MAX_PLACEHOLDERS` paths. docs/rules.md ("What it costs")
says the same to users.

How tests are counted, by what each costs per event value:

- a pattern leaf's literals, together: 1 (one set lookup, however many);
- in `match_fields`, a condition's scalar literals, together: 1, and each
  object literal: 1;
- every operator object: 1, except `anything-but` with a list of
  wildcards, which matches each of them: 1 per wildcard.
"""

from __future__ import annotations

from typing import Any, Final

from eventbus_core.codec import dumps
from eventbus_server.rules.lang.operators import PatternError
from eventbus_server.rules.lang.templates import placeholders

__all__ = [
    "MAX_DEPTH",
    "MAX_FIELD_VALUES",
    "MAX_MATCH_BYTES",
    "MAX_PLACEHOLDERS",
    "MAX_VALUE_TESTS",
    "TooManyValues",
    "check_field_values",
    "check_rule_cost",
]

#: `pattern` and `match_fields` each, as compact JSON: 8x EventBridge's 2,048
#: characters, room for long lists of allowed values (they cost one lookup).
MAX_MATCH_BYTES: Final = 16_384
#: Value tests per rule, pattern and match_fields together. Each one reads its
#: field's values on every event, so this bounds a rule's work per event.
MAX_VALUE_TESTS: Final = 64
#: Values one field of one event may offer a rule's tests (array elements, nested
#: arrays opened): past it the rule does not match that event (the engine counts
#: and logs it). 64 tests over a 1 MiB array of 150,000 numbers held the event
#: loop for 2.5 s; over 1,000 values they take about 11 ms.
MAX_FIELD_VALUES: Final = 1_000


class TooManyValues(Exception):
    """An event field holds more values than a rule may test (MAX_FIELD_VALUES)."""


def check_field_values(found: list[Any]) -> None:
    if len(found) > MAX_FIELD_VALUES:
        raise TooManyValues(f"an event field holds more than {MAX_FIELD_VALUES} values to test")


#: `{{ path }}` placeholders in one action, as EventBridge allows 100 input paths
#: in an input transformer. Each is compiled at register_rule (a `..` path in
#: 0.35 ms: 60,000 of them in a 1 MiB rule held the loop 21 s) and evaluated on
#: every firing.
MAX_PLACEHOLDERS: Final = 100

#: Nesting of objects and arrays in pattern, match_fields and the action: the
#: matcher and the templates recurse once per level, well inside Python's stack.
MAX_DEPTH: Final = 32


def check_rule_cost(
    pattern: Any, match_fields: dict[str, Any], action_template: Any, action_part: str
) -> None:
    """Raise PatternError naming the part of a rule that is over a cap."""
    parts = {"pattern": pattern, "match_fields": match_fields}
    for name, value in parts.items():
        if value is None or not value:
            continue
        size = len(dumps(value))
        if size > MAX_MATCH_BYTES:
            raise PatternError(name, f"is {size} bytes as JSON; at most {MAX_MATCH_BYTES}")
    for name, value in (*parts.items(), (action_part, action_template)):
        depth = _depth(value)
        if depth > MAX_DEPTH:
            raise PatternError(name, f"nests {depth} levels deep; at most {MAX_DEPTH}")
    named = _placeholder_count(action_template)
    if named > MAX_PLACEHOLDERS:
        raise PatternError(
            action_part, f"names more than {MAX_PLACEHOLDERS} paths in {{{{ … }}}} placeholders"
        )
    counts = {"pattern": _pattern_tests(pattern), "match_fields": _condition_tests(match_fields)}
    if sum(counts.values()) > MAX_VALUE_TESTS:
        worst = max(counts, key=lambda name: counts[name])
        raise PatternError(
            worst,
            f"the rule runs {sum(counts.values())} value tests on every event "
            f"(pattern {counts['pattern']}, match_fields {counts['match_fields']}); at most {MAX_VALUE_TESTS}",
        )


def _placeholder_count(template: Any) -> int:
    """Placeholders in a template's strings, counted up to one past the cap."""
    found = 0
    stack = [template]
    while stack and found <= MAX_PLACEHOLDERS:
        node = stack.pop()
        if isinstance(node, str):
            found += len(placeholders(node))
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _depth(value: Any) -> int:
    """Levels of objects and arrays (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


# The counts below read the rule as written, before it is compiled, so they
# accept any shape: what is malformed is refused by the compiler, by name.


def _pattern_tests(node: Any) -> int:
    if not isinstance(node, dict):
        return 0
    total = 0
    for key, value in node.items():
        if key == "$or" and isinstance(value, list):
            total += sum(_pattern_tests(branch) for branch in value)
        elif isinstance(value, list):
            total += _alternatives_tests(value)
        else:
            total += _pattern_tests(value)
    return total


def _condition_tests(match_fields: dict[str, Any]) -> int:
    return sum(
        _alternatives_tests(v if isinstance(v, list) else [v]) for v in match_fields.values()
    )


def _alternatives_tests(items: list[Any]) -> int:
    scalars = any(not isinstance(item, (dict, list)) for item in items)
    return int(scalars) + sum(
        _operator_tests(item) for item in items if isinstance(item, (dict, list))
    )


def _operator_tests(item: Any) -> int:
    if isinstance(item, dict) and len(item) == 1:
        ((name, argument),) = item.items()
        if name == "anything-but" and isinstance(argument, dict):
            wildcards = argument.get("wildcard")
            if isinstance(wildcards, list):
                return max(len(wildcards), 1)
    return 1
