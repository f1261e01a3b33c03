"""Which rules could match a topic, without looking at the others.

A token trie over the rules' topic patterns (the shape NATS uses for its
subject lists): an emit walks one path per wildcard branch, so its cost
depends on the topic's length and the rules that share its prefix, not on
how many rules watch other topics. Candidates are then checked in full by
`CompiledRule.matches`, which also keeps `>`'s `_sys.` exclusion in one place.

The index is immutable: rules change rarely, so the engine builds a new one
on every change and swaps it in. So the plan for a topic (plan.py: the
topic's rules grouped by the literal values they need) is built once per
topic and kept, up to `MAX_PLANS` topics.
"""

from __future__ import annotations

from collections.abc import Iterable

from eventbus_server.rules.lang.matcher import CompiledRule
from eventbus_server.rules.lang.plan import TopicPlan

__all__ = ["RuleIndex"]

#: Topics whose plan is kept; beyond that the cache starts over (topics are usually few).
MAX_PLANS = 10_000


class _Node:
    __slots__ = ("children", "ending_here", "rest", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.ending_here: list[int] = []  # rules whose pattern ends at this node
        self.rest: list[int] = []  # rules whose pattern ends in `>` here


class RuleIndex:
    def __init__(self, rules: Iterable[CompiledRule] = ()) -> None:
        self.rules = list(rules)
        self._plans: dict[str, TopicPlan] = {}
        self._root = _Node()
        for position, rule in enumerate(self.rules):
            self._add(position, rule.rule.topic)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, topic: str) -> list[CompiledRule]:
        """Rules whose topic pattern may match `topic`, in registration order."""
        return [self.rules[position] for position in self._positions(topic)]

    def plan(self, topic: str) -> TopicPlan:
        """The rules of `topic`, ready to be narrowed by each event's values."""
        plan = self._plans.get(topic)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[topic] = TopicPlan(
                [(p, self.rules[p]) for p in self._positions(topic)]
            )
        return plan

    def _positions(self, topic: str) -> list[int]:
        found: list[int] = []
        _collect(self._root, topic.split("."), 0, found)
        if len(found) > 1:
            found.sort()
        return found

    def _add(self, position: int, pattern: str) -> None:
        node = self._root
        for token in pattern.split("."):
            if token == ">":
                node.rest.append(position)
                return
            if token == "*":
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                node = node.children.setdefault(token, _Node())
        node.ending_here.append(position)


def _collect(node: _Node, tokens: list[str], index: int, found: list[int]) -> None:
    if index == len(tokens):
        found.extend(node.ending_here)
        return
    found.extend(node.rest)
    child = node.children.get(tokens[index])
    if child is not None:
        _collect(child, tokens, index + 1, found)
    if node.star is not None:
        _collect(node.star, tokens, index + 1, found)
