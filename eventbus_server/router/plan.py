"""Which of a topic's rules to check for one event, looking each literal up once.

Rules on the same topic often differ by one value: `"repo": "acme/api"` in
one, `"repo": "acme/web"` in the next. Checking them one by one costs each
of them per event. A plan groups the rules that require "this path equals
one of these scalars" by that path (their first such condition), selects the
path once per event and looks its value up: only the rules listing that value
are checked in full. Rules without such a condition are always checked. It is
only a filter: `CompiledRule.matches` still decides, so a rule the plan lets
through can still fail, and a rule it skips could not have matched.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .conditions import leaves, literal_key
from .matcher import CompiledRule
from .paths import Selector

__all__ = ["TopicPlan"]


class TopicPlan:
    """The candidate rules of one topic (each with its registration position)."""

    __slots__ = ("always", "by_value")

    def __init__(self, rules: list[tuple[int, CompiledRule]]) -> None:
        self.always: list[tuple[int, CompiledRule]] = []
        groups: dict[str, tuple[Selector, dict[Hashable, list[tuple[int, CompiledRule]]]]] = {}
        for position, rule in rules:
            literal = next((c for c in rule.conditions if c.literals is not None), None)
            if literal is None:
                self.always.append((position, rule))
                continue
            _, table = groups.setdefault(literal.key, (literal.select, {}))
            for key in literal.literals or ():
                table.setdefault(key, []).append((position, rule))
        self.by_value = list(groups.values())

    def __bool__(self) -> bool:
        return bool(self.always or self.by_value)

    def candidates(self, envelope: dict[str, Any]) -> list[CompiledRule]:
        """The rules to check for this event, in registration order."""
        if not self.by_value:
            return [rule for _, rule in self.always]
        found = dict(self.always)
        for select, table in self.by_value:
            values = select(envelope)
            if len(values) == 1 and not isinstance(values[0], (list, dict)):
                found.update(table.get(literal_key(values[0]), ()))
                continue
            for leaf in leaves(values):
                found.update(table.get(literal_key(leaf), ()))
        return [found[position] for position in sorted(found)]
