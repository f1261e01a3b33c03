"""Rule action templates (DESIGN.md §4).

A string that is exactly `{{ <path> }}` becomes the selected value, typed
(`{{ $.payload.size }}` stays a number); `{{ … }}` inside a longer string is
interpolated as text (strings as they are, other values as JSON); everything
else is copied. Paths are those of `router.paths`. A path that selects
nothing renders as null (alone) or as an empty string (inside text); one that
selects several values renders as their list.

Templates are compiled once, when the rule is registered, so a bad path is a
-32602 at `register_rule` rather than a failed firing.

A rendering is bounded in size (`RenderBudget`): a template may name one value
thousands of times, and rendered as a reference each time it costs nothing
until it is encoded, then N times the value (2,000 `{{ $.payload }}` and one
50 KB event stored a 100 MB event; a 1 MiB rule of them, 60 GB). What each
placeholder adds is counted as it renders, each distinct value measured once,
and rendering stops with `TemplateTooLarge` as soon as the total passes the
limit, before anything that large is built or encoded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from eventbus_core.codec import dumps
from eventbus_server.rules.lang.paths import Selector, compile_path, reads_whole_event

__all__ = ["RenderBudget", "Template", "TemplateTooLarge", "compile_template", "placeholders"]


class TemplateTooLarge(Exception):
    """The rendered template passed its budget; nothing that large was built."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"it renders to more than {limit} bytes as JSON")
        self.limit = limit


class RenderBudget:
    """Bytes one rendering may reach, about as JSON: the template's own text, plus
    each selected value's encoded size (strings by their length), measured once per
    value however often it is named."""

    __slots__ = ("_sizes", "left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit
        self._sizes: dict[
            int, int
        ] = {}  # id(value) → size; the values live as long as the rendering

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise TemplateTooLarge(self.limit)

    def value(self, value: Any) -> None:
        """Count one more copy of a selected value."""
        size = self._sizes.get(id(value))
        if size is None:
            # A string is its length (what escaping adds is left out); anything else is
            # encoded once, at most the size of the event it was selected from.
            size = len(value) + 2 if isinstance(value, str) else len(dumps(value))
            self._sizes[id(value)] = size
        self.spend(size)


_Part = Callable[[dict[str, Any], RenderBudget], Any]


class Template:
    """A compiled template: `template(envelope, budget=None)`; without a budget, unbounded."""

    __slots__ = ("_literal", "_part", "reads_whole_event")

    def __init__(self, part: _Part, literal_bytes: int, reads_whole_event: bool) -> None:
        self._part = part
        self._literal = literal_bytes
        #: A path in it may walk the whole event (`$..x`, filters): rendered off the event loop.
        self.reads_whole_event = reads_whole_event

    def __call__(self, envelope: dict[str, Any], budget: RenderBudget | None = None) -> Any:
        budget = budget if budget is not None else RenderBudget(sys.maxsize)
        budget.spend(self._literal)
        return self._part(envelope, budget)


def compile_template(template: Any, where: str) -> Template:
    """Compile a JSON value with `{{ path }}` placeholders; `where` names it in errors."""
    selectors: list[Selector] = []
    part = _compile(template, where, selectors)
    # The template as written stands for its literal parts (and a little more).
    return Template(
        part, len(dumps(template)), any(reads_whole_event(select) for select in selectors)
    )


def _compile(template: Any, where: str, selectors: list[Selector]) -> _Part:
    if isinstance(template, str):
        return _compile_string(template, where, selectors)
    if isinstance(template, dict):
        parts = {
            key: _compile(value, f"{where}.{key}", selectors) for key, value in template.items()
        }
        return lambda envelope, budget: {key: part(envelope, budget) for key, part in parts.items()}
    if isinstance(template, list):
        items = [
            _compile(value, f"{where}[{index}]", selectors) for index, value in enumerate(template)
        ]
        return lambda envelope, budget: [item(envelope, budget) for item in items]
    return lambda envelope, budget: template


def _compile_string(text: str, where: str, selectors: list[Selector]) -> _Part:
    spots = placeholders(text)
    if len(spots) == 1 and spots[0][:2] == (0, len(text)):
        select = compile_path(spots[0][2], where)
        selectors.append(select)
        return lambda envelope, budget: _typed(select(envelope), budget)
    pieces: list[str | Selector] = []
    position = 0
    for start, end, path in spots:
        pieces.append(text[position:start])
        select = compile_path(path, where)
        selectors.append(select)
        pieces.append(select)
        position = end
    if not pieces:
        return lambda envelope, budget: text
    pieces.append(text[position:])
    return lambda envelope, budget: "".join(
        piece if isinstance(piece, str) else _text(piece(envelope), budget) for piece in pieces
    )


def placeholders(text: str) -> list[tuple[int, int, str]]:
    """Every `{{ path }}` in `text`: (start, end, path), left to right.

    A placeholder ends at the first `}}` after its `{{`; its path may not hold
    a line break (the spaces around it may). This is what the regex
    `\\{\\{\\s*((?:(?!\\}\\}).)*?)\\s*\\}\\}` finds, in one pass: that regex
    backtracks, and took 40 s on a 4 KB string of spaces after a `{{`.
    """
    found: list[tuple[int, int, str]] = []
    start = text.find("{{")
    while start != -1:
        close = text.find("}}", start + 2)
        if close == -1:
            break  # no later `{{` has a `}}` after it either
        retry = _retry_from(text, start + 2, close)
        if retry is None:
            found.append((start, close + 2, text[start + 2 : close].strip()))
            start = text.find("{{", close + 2)
        else:
            start = text.find("{{", retry)
    return found


def _retry_from(text: str, inner: int, close: int) -> int | None:
    """None if text[inner:close], stripped, has no line break; else where the
    next `{{` that could open a placeholder may start."""
    end = close
    while end > inner and text[end - 1].isspace():
        end -= 1  # trailing spaces, line breaks included, are allowed
    newline = text.rfind("\n", inner, end)
    if newline == -1:
        return None
    last = newline
    while last > inner and text[last - 1].isspace():
        last -= 1
    # Only spaces before the line break: it is leading space, allowed. Otherwise
    # a `{{` whose inner part starts at or before text[last - 1] breaks the same
    # way; one right before the spaces (text[last - 2 : last]) may not.
    return None if last == inner else last - 2


def _typed(values: list[Any], budget: RenderBudget) -> Any:
    if not values:
        return None
    if len(values) == 1:
        budget.value(values[0])
        return values[0]
    budget.spend(len(values) + 1)  # brackets and commas
    for value in values:
        budget.value(value)
    return values


def _text(values: list[Any], budget: RenderBudget) -> str:
    value = _typed(values, budget)  # counted before it is encoded into the text
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()
