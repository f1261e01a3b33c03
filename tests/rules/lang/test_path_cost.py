"""Selecting and walking event values costs time linear in the event.

JSONPaths that could cost more (regexes, a second `..`, `$` inside filters,
arithmetic, sorting, `parent`) are refused when compiled, naming the path;
the walks over nested arrays never recurse, so a 1,000-deep event neither
raises nor re-opens the same arrays again and again.
"""

from __future__ import annotations

import warnings
from typing import Any

import orjson
import pytest

from eventbus_core.errors import InvalidParams
from eventbus_core.rules import Rule
from eventbus_server.rules.lang.conditions import compile_conditions, leaves
from eventbus_server.rules.lang.matcher import compile_rule
from eventbus_server.rules.lang.operators import PatternError
from eventbus_server.rules.lang.paths import MAX_JSONPATH_CHARS, compile_path
from eventbus_server.rules.lang.pattern import compile_pattern
from eventbus_server.rules.lang.templates import compile_template

# (JSONPath, a word of the reason)
REFUSED: list[tuple[str, str]] = [
    ("$.payload.items[?(@.name =~ '(a+)+$')]", "regex"),
    ("$.payload.name.`sub(/(a+)+$/, x)`", "regex"),
    ("$..a..b", "only one `..`"),
    ("$.payload[?(@..b)]", "inside a filter"),
    ("$.payload.items[?(@.a == $.payload.b)]", "filters may only look at `@`"),
    ("$.payload[?($.payload.x)]", "filters may only look at `@`"),
    ("$.payload.a | $.payload.b", "may only start the path"),
    ("$.payload.a & $.payload.b", "not implemented"),
    ("$.payload.s * $.payload.n", "arithmetic"),
    ("$.payload.a + 1", "arithmetic"),
    ("$.payload.items.`parent`", "parent"),
    ("$.payload.items[/name]", "sorting"),
    ("$.payload.items.`sorted`", "sorting"),
    ("$.payload.s.`split(',', *, -1)`", "string functions"),
    ("$.payload.s.`str()`", "string functions"),
    ("$.payload.s.`path`", "not supported"),
    ("$.payload.items where name", "where"),
    ("$.payload.items wherenot name", "wherenot"),
    ("$" + "[0]" * (MAX_JSONPATH_CHARS // 3 + 1), f"at most {MAX_JSONPATH_CHARS} characters"),
]


@pytest.mark.parametrize(("key", "reason"), REFUSED, ids=[key[:40] for key, _ in REFUSED])
def test_a_costly_jsonpath_is_refused_naming_the_path(key: str, reason: str) -> None:
    with pytest.raises(PatternError) as raised, warnings.catch_warnings():
        # jsonpath-ng warns that `|` and `&` are deprecated syntax, then parses them.
        warnings.simplefilter("ignore", DeprecationWarning)
        compile_path(key, f"match_fields.{key}")
    assert raised.value.path == f"match_fields.{key}"
    assert reason in raised.value.reason


def test_register_rule_refuses_it_with_invalid_params() -> None:
    key = "$.payload.items[?(@.name =~ 'x')]"
    rule = Rule.model_validate(
        {
            "id": "r",
            "match_fields": {key: "x"},
            "action": {"type": "EmitEvent", "topic": "t", "payload": 1},
        }
    )
    with pytest.raises(InvalidParams) as raised:
        compile_rule(rule)
    assert raised.value.code == -32602
    assert raised.value.data == [{"loc": f"match_fields.{key}", "msg": raised.value.data[0]["msg"]}]
    assert "regex" in raised.value.data[0]["msg"]


def test_templates_refuse_them_too() -> None:
    with pytest.raises(PatternError) as raised:
        compile_template({"x": "{{ $.payload.a.`parent` }}"}, "action.payload")
    assert raised.value.path == "action.payload.x"


EVENT: dict[str, Any] = {
    "payload": {
        "items": [{"name": "a", "qty": 2, "tags": ["x"]}, {"name": "b", "qty": 0, "tags": []}],
        "deep": {"x": 1, "more": {"x": 2}},
        "s": "text",
    }
}

# (JSONPath, values it selects): what stays allowed still selects as before.
ALLOWED: list[tuple[str, list[Any]]] = [
    ("$.payload.items[*].name", ["a", "b"]),
    ("$.payload.items[?(@.qty > 1)].name", ["a"]),
    ("$.payload.items[?(@.qty > 1 && @.name == 'a')].name", ["a"]),
    ("$.payload.items[?(@.qty == 0 || @.name == 'a')].name", ["a", "b"]),
    ("$.payload.items[?(!@.missing)].name", ["a", "b"]),
    ("$.payload.items[?(@.tags[?(@ == 'x')])].name", ["a"]),
    ("$.payload.items[-1].name", ["b"]),
    ("$.payload.items[0:1].name", ["a"]),
    ("$.payload['s','missing']", ["text"]),
    ("$..x", [1, 2]),
    ("$.payload..x", [1, 2]),
    ("$..items[?(@.qty > 1)].name", ["a"]),
    ("$.payload.items.`len`", [2]),
    ("$.payload.deep.`keys`", ["x", "more"]),
]


@pytest.mark.parametrize(("key", "selected"), ALLOWED, ids=[key for key, _ in ALLOWED])
def test_allowed_jsonpaths_still_select(key: str, selected: list[Any]) -> None:
    assert compile_path(key, "k")(EVENT) == selected


def nested(depth: int, leaf: str, inner: Any) -> Any:
    """A value nested `depth` levels deep, built from JSON text as an event arrives."""
    opening, closing = ('{"x":', "}") if leaf == "object" else ("[", "]")
    return orjson.loads(opening * depth + orjson.dumps(inner).decode() + closing * depth)


DEEP = 1000  # the JSON parser accepts 1,024; Python's recursion limit is 1,000


def test_recursive_descent_over_a_deep_payload_selects_every_level() -> None:
    envelope = {"payload": nested(DEEP, "object", 7)}
    assert len(compile_path("$..x", "k")(envelope)) == DEEP
    (condition,) = compile_conditions({"$..x": 7})
    assert condition.holds(envelope)


def test_a_pattern_leaf_opens_deeply_nested_arrays_without_recursion() -> None:
    envelope = {"payload": {"a": nested(DEEP, "array", 1), "b": nested(DEEP, "array", {"c": 2})}}
    assert compile_pattern({"payload": {"a": [1]}}).matches(envelope)
    assert compile_pattern({"payload": {"b": {"c": [2]}}}).matches(envelope)
    miss = compile_pattern({"payload": {"b": {"c": [3]}}})
    assert not miss.matches(envelope)
    (failure,) = miss.explain(envelope)
    assert failure.path == "payload.b" + "[0]" * DEEP + ".c"


def test_each_array_is_opened_once_however_many_selections_hold_it() -> None:
    # `$..[*]` selects every nested array and each of its elements; opening every
    # selected array in full would count the scalars once per level above them.
    width = (
        2  # 2 x 2 x 200 = 800 values, under MAX_FIELD_VALUES; opened per level it would be 40,000
    )
    value: list[Any] = []
    for _ in range(200):
        value = [*range(width), value]
    selected = compile_path("$..[*]", "k")({"payload": value})
    scalars = [v for v in leaves(selected) if isinstance(v, int)]
    assert len(scalars) <= 2 * width * 200  # each scalar: as a selection, and inside its array
