"""Finding `{{ path }}` placeholders is one pass over the template string.

The regex it replaced was right and is the reference here; it backtracked
for 40 s on a 4 KB string of spaces after a `{{`, at `register_rule`, on the
event loop every bus of the process shares.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus_server.rules.lang.templates import compile_template, placeholders

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
    ["{{" * 500_000, "{{ " + " " * 1_000_000, "{{" + " \n" * 500_000 + "$.a }}", "{{ a\n b " * 100_000 + "}}"],
    ids=["braces", "spaces", "line breaks", "broken paths"],
)
def test_a_hostile_template_string_compiles_in_one_pass(text: str) -> None:
    compile_template({"note": text}, "action.payload")
