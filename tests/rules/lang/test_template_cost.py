"""Finding `{{ path }}` placeholders is one pass over the template string.

The regex it replaced was right and is the reference here; it backtracked
for 40 s on a 4 KB string of spaces after a `{{`, at `register_rule`, on the
event loop every bus of the process shares.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus_server.rules.lang.templates import (
    RenderBudget,
    TemplateTooLarge,
    compile_template,
    placeholders,
)

REFERENCE = re.compile(r"\{\{\s*((?:(?!\}\}).)*?)\s*\}\}")


@settings(max_examples=5000, deadline=None)
@given(st.text(alphabet="{} \n\tax", max_size=16))
def test_placeholders_are_those_the_regex_found(text: str) -> None:
    expected = [(m.start(), m.end(), m.group(1)) for m in REFERENCE.finditer(text)]
    assert placeholders(text) == expected
    whole = REFERENCE.fullmatch(text) is not None
    assert whole == (len(expected) == 1 and expected[0][:2] == (0, len(text)))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("{{ $.a }}", [(0, 9, "$.a")]),
        ("x {{a}} y {{ b }}", [(2, 7, "a"), (10, 17, "b")]),
        ("{{ a }}}", [(0, 7, "a")]),
        ("{{{ a }}", [(0, 8, "{ a")]),
        ("{{\n a \n}}", [(0, 9, "a")]),  # line breaks around the path are spaces
        ("{{ a\nb }}", []),  # inside it they are not
        ("{{{\n a }}", [(1, 9, "a")]),  # so the next `{{` is tried, as the regex did
        ("{{ a", []),
    ],
)
def test_placeholders(text: str, found: list[tuple[int, int, str]]) -> None:
    assert placeholders(text) == found


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        "{{" * 500_000,
        "{{ " + " " * 1_000_000,
        "{{" + " \n" * 500_000 + "$.a }}",
        "{{ a\n b " * 100_000 + "}}",
    ],
    ids=["braces", "spaces", "line breaks", "broken paths"],
)
def test_a_hostile_template_string_compiles_in_one_pass(text: str) -> None:
    compile_template({"note": text}, "action.payload")


# -- what a rendering may cost -----------------------------------------------------------------

BIG = {"payload": {"blob": "x" * 1_000_000, "numbers": list(range(100_000))}}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "template",
    [
        ["{{ $.payload }}"]
        * 100,  # one value named 100 times (the most an action may): 100 MB as JSON
        {"k": ["{{ $.payload.blob }}"] * 100},
        "{{ $.payload.blob }}" * 100,  # the same, interpolated into one string
        "{{ $.payload.numbers }}," * 100,
        ["{{ $..numbers }}"] * 100,
    ],
    ids=["typed", "nested", "text", "text-encoded", "several-values"],
)
def test_a_template_that_multiplies_the_event_stops_at_its_budget(template: Any) -> None:
    render = compile_template(template, "action.payload")
    with pytest.raises(TemplateTooLarge, match="more than 1048576 bytes"):
        render(BIG, RenderBudget(1_048_576))


def test_a_value_named_often_is_measured_once_and_a_rendering_within_budget_is_whole() -> None:
    render = compile_template(
        {"copies": ["{{ $.payload.id }}"] * 99, "note": "id {{ $.payload.id }}"}, "action.payload"
    )
    envelope = {"payload": {"id": "x" * 10_000, "unused": "y" * 1_000_000}}
    assert render(envelope, RenderBudget(1_048_576)) == {
        "copies": ["x" * 10_000] * 99,
        "note": "id " + "x" * 10_000,
    }
    with pytest.raises(TemplateTooLarge):
        render(envelope, RenderBudget(900_000))  # 100 copies of 10,000 x's: about 1 MB as JSON
