"""A rule that would cost every event too much is refused at compile time,
-32602 naming the part; a rule at the caps is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from eventbus_core.errors import InvalidParams
from eventbus_core.rules import Rule
from eventbus_server.rules.lang.conditions import compile_conditions
from eventbus_server.rules.lang.limits import MAX_DEPTH, MAX_MATCH_BYTES, MAX_VALUE_TESTS
from eventbus_server.rules.lang.matcher import compile_rule


def rule(**fields: Any) -> Rule:
    body = {
        "id": "r",
        "topic": "t",
        "action": {"type": "EmitEvent", "topic": "t.out", "payload": 1},
        **fields,
    }
    return Rule.model_validate(body)


def refusal(**fields: Any) -> dict[str, Any]:
    with pytest.raises(InvalidParams) as raised:
        compile_rule(rule(**fields))
    assert raised.value.code == -32602
    (item,) = raised.value.data
    return item


def prefixes(count: int) -> list[dict[str, str]]:
    return [{"prefix": f"p{i}"} for i in range(count)]


def nested(depth: int) -> Any:
    """Objects `depth` levels deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def test_value_tests_at_the_cap_are_accepted() -> None:
    half = MAX_VALUE_TESTS // 2
    compile_rule(
        rule(pattern={"payload": {"s": prefixes(half)}}, match_fields={"s": prefixes(half)})
    )


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"pattern": {"payload": {"s": prefixes(MAX_VALUE_TESTS + 1)}}}, "pattern"),
        ({"match_fields": {"s": prefixes(MAX_VALUE_TESTS + 1)}}, "match_fields"),
        (
            {"match_fields": {f"k{i}": {"prefix": "x"} for i in range(MAX_VALUE_TESTS + 1)}},
            "match_fields",
        ),
        (
            {"pattern": {"$or": [{"s": prefixes(MAX_VALUE_TESTS)}, {"t": ["x", {"prefix": "y"}]}]}},
            "pattern",
        ),
        (
            {
                "pattern": {"payload": {"s": prefixes(MAX_VALUE_TESTS // 2 + 1)}},
                "match_fields": {"s": prefixes(MAX_VALUE_TESTS // 2)},
            },
            "pattern",
        ),
        (
            {
                "pattern": {
                    "s": [
                        {
                            "anything-but": {
                                "wildcard": [f"*{i}*" for i in range(MAX_VALUE_TESTS + 1)]
                            }
                        }
                    ]
                }
            },
            "pattern",
        ),
    ],
    ids=[
        "pattern leaf",
        "condition list",
        "conditions",
        "$or",
        "both together",
        "anything-but wildcards",
    ],
)
def test_more_value_tests_are_refused_naming_the_part(fields: dict[str, Any], loc: str) -> None:
    item = refusal(**fields)
    assert item["loc"] == loc
    assert f"at most {MAX_VALUE_TESTS}" in item["msg"]


def test_literals_count_once_per_leaf_however_many() -> None:
    many = [f"v{i}" for i in range(1000)]
    compiled = compile_rule(
        rule(pattern={"payload": {"s": many}}, match_fields={"s": [*many, 1, None, True]})
    )
    assert compiled.matches_topic("t")


@pytest.mark.parametrize("part", ["pattern", "match_fields"])
def test_a_part_larger_than_the_byte_cap_is_refused(part: str) -> None:
    values = [f"value-{i:06}" for i in range(MAX_MATCH_BYTES // 10)]
    fields = (
        {"pattern": {"payload": {"s": values}}}
        if part == "pattern"
        else {"match_fields": {"s": values}}
    )
    item = refusal(**fields)
    assert item["loc"] == part
    assert f"at most {MAX_MATCH_BYTES}" in item["msg"]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"pattern": {"payload": nested(MAX_DEPTH)}}, "pattern"),
        ({"match_fields": {"k": {"equals": nested(MAX_DEPTH - 1)}}}, "match_fields"),
        (
            {"action": {"type": "EmitEvent", "topic": "t.out", "payload": nested(MAX_DEPTH + 1)}},
            "action.payload",
        ),
    ],
    ids=["pattern", "match_fields", "action"],
)
def test_nesting_past_the_cap_is_refused(fields: dict[str, Any], loc: str) -> None:
    item = refusal(**fields)
    assert item["loc"] == loc
    assert f"at most {MAX_DEPTH}" in item["msg"]


def test_nesting_at_the_cap_is_accepted() -> None:
    compile_rule(rule(action={"type": "EmitEvent", "topic": "t.out", "payload": nested(MAX_DEPTH)}))


# A condition's scalar literals are one lookup; JSON equality still decides.
LITERALS: list[tuple[Any, Any, bool]] = [
    (["a", 1, True, None], "a", True),
    (["a", 1, True, None], 1.0, True),
    (["a", 1, True, None], True, True),
    (["a", 1, None], True, False),  # true is not 1
    (["a", True], 1, False),  # 1 is not true
    (["a", 0], False, False),
    (["a", None], None, True),
    (["a", 2**63 - 1], float(2**63), False),  # equal as floats, not as numbers
    (["a", 1], ["x", 1], True),  # an array value: any element
    (["a", {"prefix": "b"}], "bc", True),
    (["a", {"equals": {"x": 1}}], {"x": 1}, True),
    (["a", 1], {"x": 1}, False),
]


@pytest.mark.parametrize(("expected", "value", "holds"), LITERALS)
def test_a_list_of_scalars_is_json_equality(expected: list[Any], value: Any, holds: bool) -> None:
    (condition,) = compile_conditions({"s": expected})
    assert condition.holds({"payload": {"s": value}}) is holds
