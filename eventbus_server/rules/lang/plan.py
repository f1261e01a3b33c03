"""Which of a topic's rules to check for one event, looking each literal up once.

Rules on the same topic often differ by one value: `"repo": "acme/api"` in
one, `"repo": "acme/web"` in the next. Checking them one by one costs each
of them per event. A plan groups the rules that require "this path equals
one of these scalars" by that path (their first such condition), selects the
path once per event and looks its value up: only the rules listing that value
are checked in full. Rules without such a condition are always checked. It is
only a filter: `CompiledRule.matches` still decides, so a rule the plan lets
through can still fail, and a rule it skips could not have matched. A path
that raises on an event (it should not: paths are checked when compiled)
lets all its rules through, so each is judged, and logged, on its own.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from eventbus_server.rules.lang.conditions import leaves, literal_key
from eventbus_server.rules.lang.matcher import CompiledRule
from eventbus_server.rules.lang.paths import Selector

__all__ = ["TopicPlan"]


class TopicPlan:
    """The candidate rules of one topic (each with its registration position)."""

    __slots__ = ("always", "by_value", "reads_whole_event")

    def __init__(self, rules: list[tuple[int, CompiledRule]]) -> None:
        #: Whether a rule of the topic has a JSONPath that may walk the whole event:
        #: the engine then matches the topic's events off the event loop.
        self.reads_whole_event = any(rule.reads_whole_event for _, rule in rules)
        self.always: list[tuple[int, CompiledRule]] = []
        groups: dict[str, _Group] = {}
        for position, rule in rules:
            literal = next((c for c in rule.conditions if c.literals is not None), None)
            if literal is None:
                self.always.append((position, rule))
                continue
            group = groups.setdefault(literal.key, _Group(literal.select))
            group.rules.append((position, rule))
            for key in literal.literals or ():
                group.table.setdefault(key, []).append((position, rule))
        self.by_value = list(groups.values())

    def __bool__(self) -> bool:
        return bool(self.always or self.by_value)

    def candidates(self, envelope: dict[str, Any]) -> list[CompiledRule]:
        """The rules to check for this event, in registration order."""
        if not self.by_value:
            return [rule for _, rule in self.always]
        found = dict(self.always)
        for group in self.by_value:
            found.update(group.candidates(envelope))
        return [found[position] for position in sorted(found)]


class _Group:
    """The rules whose first literal condition reads one path, by the values they list."""

    __slots__ = ("rules", "select", "table")

    def __init__(self, select: Selector) -> None:
        self.select = select
        self.table: dict[Hashable, list[tuple[int, CompiledRule]]] = {}
        self.rules: list[tuple[int, CompiledRule]] = []

    def candidates(self, envelope: dict[str, Any]) -> list[tuple[int, CompiledRule]]:
        try:
            values = self.select(envelope)
        except Exception:
            # Not logged here: every rule of the group is matched in full next,
            # under the engine's guard, which logs the rule that raises.
            return self.rules
        if len(values) == 1 and not isinstance(values[0], (list, dict)):
            return self.table.get(literal_key(values[0]), [])
        # Each distinct value once: 100,000 equal leaves must not list its rules 100,000 times.
        keys = {literal_key(leaf) for leaf in leaves(values)}
        return [pair for key in keys for pair in self.table.get(key, ())]
