"""The rule book's index, updated in place one rule at a time, matches exactly
what an index built from scratch over the same rules matches, in the same
order, after any sequence of registrations, replacements, deletions,
disables, enables and reloads of rules another node changed; and a topic's
plan, once taken, never changes under the batch holding it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus_core.event import Event
from eventbus_core.rules import Rule
from eventbus_server.rules.lang.index import RuleIndex
from eventbus_server.rules.lang.matcher import CompiledRule, compile_rule, envelope_of
from eventbus_server.rules.rulebook import RuleBook
from eventbus_server.storage.memory.store import MemoryStorage

IDS = [f"r{i}" for i in range(6)]
TOKENS = ["a", "b", "c"]
TOPICS = [
    ".".join(tokens) for length in (1, 2, 3) for tokens in itertools.product(TOKENS, repeat=length)
] + ["_sys.a"]
PAYLOADS: list[Any] = [{"k": 0}, {"k": 1}, {"k": "xa"}, {}]

patterns = st.builds(
    lambda head, last: ".".join([*head, last]),
    st.lists(st.sampled_from(["a", "b", "*"]), max_size=2),
    st.sampled_from(["a", "b", "*", ">"]),
)
fields = st.sampled_from(
    [{}, {"k": 0}, {"k": 1}, {"k": [0, "xa"]}, {"k": {"prefix": "x"}}, {"k": 0, "j": 1}]
)
bodies = st.builds(
    lambda rule_id, topic, match_fields, enabled: {
        "id": rule_id,
        "topic": topic,
        "match_fields": match_fields,
        "enabled": enabled,
        "action": {"type": "EmitEvent", "topic": "out"},
    },
    st.sampled_from(IDS),
    patterns,
    fields,
    st.booleans(),
)
steps = st.one_of(
    st.tuples(st.just("put"), bodies),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("enable"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("plan"), st.sampled_from(TOPICS)),
    st.tuples(st.just("elsewhere put"), bodies),
    st.tuples(st.just("elsewhere delete"), st.sampled_from(IDS)),
    st.tuples(st.just("check")),
)


class Model:
    """What the book should hold: each rule's body and enabled flag, in the order
    a build from scratch lists them (new ids last, replaced ones in place)."""

    def __init__(self) -> None:
        self.rules: dict[str, tuple[dict[str, Any], bool]] = {}

    def reference(self) -> RuleIndex:
        return RuleIndex(
            compile_rule(Rule.model_validate(body))
            for body, enabled in self.rules.values()
            if enabled
        )

    def reload(self, stored: dict[str, tuple[dict[str, Any], bool]]) -> None:
        """A reload keeps the places of known rules and appends new ones in storage order."""
        self.rules = {
            rule_id: stored[rule_id]
            for rule_id in [*self.rules, *sorted(stored)]
            if rule_id in stored
        }


def _ids(rules: list[CompiledRule]) -> list[str]:
    return [rule.id for rule in rules]


def _assert_same(index: RuleIndex, reference: RuleIndex) -> None:
    assert _ids(index.rules) == _ids(reference.rules)
    for topic in TOPICS:
        assert _ids(index.candidates(topic)) == _ids(reference.candidates(topic)), topic
        for payload in PAYLOADS:
            event = Event(1, topic, payload, 0, None, None, None, None)
            envelope = envelope_of(event)
            planned = [
                r for r in index.plan(topic).candidates(envelope) if r.matches(event, envelope)
            ]
            every = [r for r in reference.rules if r.matches(event, envelope)]
            assert _ids(planned) == _ids(every), (topic, payload)


async def _run(steps_: list[tuple[Any, ...]]) -> None:
    storage = MemoryStorage(100)
    book = RuleBook(storage, bus_id="b", accepted_by=dict)
    model = Model()
    taken: list[tuple[Any, str, list[list[str]]]] = []
    for step in steps_:
        kind = step[0]
        if kind == "put":
            body = step[1]
            await book.register(body, replace=True)
            model.rules[body["id"]] = (body, body["enabled"])
        elif kind == "delete" and step[1] in model.rules:
            await book.delete(step[1])
            del model.rules[step[1]]
        elif kind == "enable" and step[1] in model.rules:
            await book.set_enabled(step[1], step[2])
            model.rules[step[1]] = (model.rules[step[1]][0], step[2])
        elif kind == "plan":
            plan = book.index.plan(step[1])
            taken.append((plan, step[1], _plan_ids(plan, step[1])))
        elif kind.startswith("elsewhere"):
            # Another node changed storage: this book hears of it and reloads.
            if kind == "elsewhere put":
                body = {key: value for key, value in step[1].items() if key != "enabled"}
                await storage.put_rule(body["id"], body, step[1]["enabled"], 0)
            else:
                await storage.delete_rule(step[1])
            await book.load()
            model.reload({s.id: (s.body, s.enabled) for s in await storage.load_rules()})
        elif kind == "check":
            _assert_same(book.index, model.reference())
    _assert_same(book.index, model.reference())
    for plan, topic, ids in taken:
        assert _plan_ids(plan, topic) == ids  # a plan is a snapshot: changes make new ones


def _plan_ids(plan: Any, topic: str) -> list[list[str]]:
    ids = []
    for payload in PAYLOADS:
        envelope = envelope_of(Event(1, topic, payload, 0, None, None, None, None))
        ids.append(_ids(plan.candidates(envelope)))
    return ids


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40))
def test_the_index_updated_in_place_matches_one_built_from_scratch(
    steps_: list[tuple[Any, ...]],
) -> None:
    asyncio.run(_run(steps_))


def test_removing_rules_leaves_no_empty_nodes() -> None:
    """Churn does not grow the index: a deleted rule's nodes go with it."""
    index = RuleIndex()
    for i in range(100):
        index.put(i, compile_rule(Rule.model_validate(_body(f"r{i}", f"t{i}.*.x.>"))))
    for i in range(100):
        assert index.remove(f"r{i}")
    assert not index.remove("r0")
    assert len(index) == 0
    assert index.candidates("t1.a.x.b") == []
    assert _node_count(index._root) == 1


def _body(rule_id: str, topic: str) -> dict[str, Any]:
    return {"id": rule_id, "topic": topic, "action": {"type": "EmitEvent", "topic": "out"}}


def _node_count(node: Any) -> int:
    children = [*(node.children or {}).values(), *([node.star] if node.star else [])]
    return 1 + sum(_node_count(child) for child in children)
