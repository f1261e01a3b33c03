"""Which rules could match a topic, without looking at the others.

A token trie over the rules' topic patterns (the shape NATS uses for its
subject lists): an emit walks one path per wildcard branch, so its cost
depends on the topic's length and the rules that share its prefix, not on
how many rules watch other topics. Candidates are then checked in full by
`CompiledRule.matches`, which also keeps `>`'s `_sys.` exclusion in one place.

Changes are incremental: `put` and `remove` touch only the nodes of the
rule's own pattern, so registering the 10,000th rule costs what the first
did. Each rule carries a position (the rule book's registration order),
and candidates come in that order, as a build from scratch would give them.

The plan for a topic (plan.py: the topic's rules grouped by the literal
values they need) is built once per topic and kept, up to `MAX_PLANS`
topics; a rule change drops only the plans of the topics its pattern can
match. A plan is never changed once built, so a batch that took its plans
before a change matches against the rules as they were (the engine's
snapshot), while the next batch sees the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from eventbus_server.rules.lang.matcher import CompiledRule
from eventbus_server.rules.lang.plan import TopicPlan

__all__ = ["IndexedRule", "RuleIndex"]


class IndexedRule(Protocol):
    """What the index keeps of a rule: a `CompiledRule`, or a stand-in that
    compiles it when a topic's plan first needs it (the rule book's)."""

    @property
    def id(self) -> str: ...

    @property
    def topic(self) -> str: ...

    def compiled(self) -> CompiledRule: ...


#: Topics whose plan is kept; beyond that the cache starts over (topics are usually few).
MAX_PLANS = 10_000

_Entries = dict[int, IndexedRule]  # position → rule


class _Node:
    # Containers are made when first needed: most nodes use one of the four, and
    # every empty dict would be one more object for the garbage collector to walk.
    __slots__ = ("children", "ending_here", "rest", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.star: _Node | None = None
        self.ending_here: _Entries | None = None  # rules whose pattern ends at this node
        self.rest: _Entries | None = None  # rules whose pattern ends in `>` here

    def is_empty(self) -> bool:
        return not (self.children or self.star or self.ending_here or self.rest)


class RuleIndex:
    def __init__(self, rules: Iterable[IndexedRule] = ()) -> None:
        """An index of `rules`, positioned in the order given."""
        self._root = _Node()
        self._entries: dict[str, tuple[int, IndexedRule]] = {}
        self._plans = _PlanCache()
        for position, rule in enumerate(rules):
            self.put(position, rule)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, rule_id: str) -> bool:
        return rule_id in self._entries

    @property
    def rules(self) -> list[CompiledRule]:
        """Every indexed rule, in position order, compiled."""
        return [rule.compiled() for _, rule in sorted(self._entries.values(), key=_position)]

    def get(self, rule_id: str) -> IndexedRule | None:
        entry = self._entries.get(rule_id)
        return None if entry is None else entry[1]

    def put(self, position: int, rule: IndexedRule) -> bool:
        """Index `rule` at `position`, in place of the rule with its id if there is one;
        True if a topic that has seen events (one with a plan) needs it now."""
        self.remove(rule.id)
        self._entries[rule.id] = (position, rule)
        node = self._root
        tokens = rule.topic.split(".")
        for token in tokens:
            if token == ">":
                if node.rest is None:
                    node.rest = {}
                node.rest[position] = rule
                break
            node = _child(node, token)
        else:
            if node.ending_here is None:
                node.ending_here = {}
            node.ending_here[position] = rule
        return self._plans.drop(tokens) > 0

    def remove(self, rule_id: str) -> bool:
        """Take a rule out of the index; False if it was not in it."""
        entry = self._entries.pop(rule_id, None)
        if entry is None:
            return False
        position, rule = entry
        tokens = rule.topic.split(".")
        _unlink(self._root, tokens, 0, position)
        self._plans.drop(tokens)
        return True

    def candidates(self, topic: str) -> list[CompiledRule]:
        """Rules whose topic pattern may match `topic`, in position order."""
        return [rule.compiled() for _, rule in self._positioned(topic)]

    def plan(self, topic: str) -> TopicPlan:
        """The rules of `topic`, ready to be narrowed by each event's values."""
        plan = self._plans.get(topic)
        if plan is None:
            plan = TopicPlan([(p, rule.compiled()) for p, rule in self._positioned(topic)])
            self._plans.put(topic, plan)
        return plan

    def _positioned(self, topic: str) -> list[tuple[int, IndexedRule]]:
        found: list[tuple[int, IndexedRule]] = []
        _collect(self._root, topic.split("."), 0, found)
        if len(found) > 1:
            found.sort(key=_position)
        return found


def _position(entry: tuple[int, IndexedRule]) -> int:
    return entry[0]


def _child(node: _Node, token: str) -> _Node:
    if token == "*":
        if node.star is None:
            node.star = _Node()
        return node.star
    if node.children is None:
        node.children = {}
    child = node.children.get(token)
    if child is None:
        child = node.children[token] = _Node()
    return child


def _unlink(node: _Node, tokens: list[str], index: int, position: int) -> None:
    """Remove `position` from the end of the pattern's path, and the nodes left empty."""
    token = tokens[index] if index < len(tokens) else None
    if token is None or token == ">":
        entries = node.ending_here if token is None else node.rest
        if entries is not None:
            entries.pop(position, None)
        return
    child = node.star if token == "*" else (node.children or {}).get(token)
    if child is None:
        return
    _unlink(child, tokens, index + 1, position)
    if child.is_empty():
        if token == "*":
            node.star = None
        elif node.children is not None:
            del node.children[token]


def _collect(
    node: _Node, tokens: list[str], index: int, found: list[tuple[int, IndexedRule]]
) -> None:
    if index == len(tokens):
        if node.ending_here:
            found.extend(node.ending_here.items())
        return
    if node.rest:
        found.extend(node.rest.items())
    if node.children is not None:
        child = node.children.get(tokens[index])
        if child is not None:
            _collect(child, tokens, index + 1, found)
    if node.star is not None:
        _collect(node.star, tokens, index + 1, found)


class _PlanCache:
    """Built plans by topic, also in a token trie, so a changed pattern finds the
    topics it can match without testing every cached topic."""

    def __init__(self) -> None:
        self._plans: dict[str, TopicPlan] = {}
        self._root = _TopicNode()
        self._inserted = 0  # topics put in the trie since it was last cleared

    def get(self, topic: str) -> TopicPlan | None:
        return self._plans.get(topic)

    def put(self, topic: str, plan: TopicPlan) -> None:
        if self._inserted >= MAX_PLANS:
            self._plans.clear()
            self._root = _TopicNode()
            self._inserted = 0
        self._plans[topic] = plan
        self._inserted += 1
        node = self._root
        for token in topic.split("."):
            node = node.children.setdefault(token, _TopicNode())
        node.topic = topic

    def drop(self, pattern: list[str]) -> int:
        """Forget the plans of every topic `pattern` (split in tokens) can match; how many."""
        dropped = 0
        if self._plans:
            for topic in _topics_matching(self._root, pattern, 0):
                dropped += self._plans.pop(topic, None) is not None
        return dropped


class _TopicNode:
    __slots__ = ("children", "topic")

    def __init__(self) -> None:
        self.children: dict[str, _TopicNode] = {}
        self.topic: str | None = None  # the topic ending here, if one does


def _topics_matching(node: _TopicNode, pattern: list[str], index: int) -> Iterator[str]:
    """The cached topics under `node` that `pattern[index:]` may match (a superset
    is fine: a dropped plan is only built again)."""
    if index == len(pattern):
        if node.topic is not None:
            yield node.topic
        return
    token = pattern[index]
    if token == ">":
        for child in node.children.values():
            yield from _every_topic(child)
    elif token == "*":
        for child in node.children.values():
            yield from _topics_matching(child, pattern, index + 1)
    else:
        literal = node.children.get(token)
        if literal is not None:
            yield from _topics_matching(literal, pattern, index + 1)


def _every_topic(node: _TopicNode) -> Iterator[str]:
    if node.topic is not None:
        yield node.topic
    for child in node.children.values():
        yield from _every_topic(child)
