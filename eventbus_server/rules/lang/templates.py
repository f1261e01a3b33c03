"""Rule action templates (DESIGN.md §4).

A string that is exactly `{{ <path> }}` becomes the selected value, typed
(`{{ $.payload.size }}` stays a number); `{{ … }}` inside a longer string is
interpolated as text (strings as they are, other values as JSON); everything
else is copied. Paths are those of `router.paths`. A path that selects
nothing renders as null (alone) or as an empty string (inside text); one that
selects several values renders as their list.

Templates are compiled once, when the rule is registered, so a bad path is a
-32602 at `register_rule` rather than a failed firing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventbus_core.codec import dumps
from eventbus_server.rules.lang.paths import Selector, compile_path

__all__ = ["Template", "compile_template", "placeholders"]

Template = Callable[[dict[str, Any]], Any]


def compile_template(template: Any, where: str) -> Template:
    """Compile a JSON value with `{{ path }}` placeholders; `where` names it in errors."""
    if isinstance(template, str):
        return _compile_string(template, where)
    if isinstance(template, dict):
        parts = {key: compile_template(value, f"{where}.{key}") for key, value in template.items()}
        return lambda envelope: {key: part(envelope) for key, part in parts.items()}
    if isinstance(template, list):
        items = [compile_template(value, f"{where}[{index}]") for index, value in enumerate(template)]
        return lambda envelope: [item(envelope) for item in items]
    return lambda envelope: template


def _compile_string(text: str, where: str) -> Template:
    spots = placeholders(text)
    if len(spots) == 1 and spots[0][:2] == (0, len(text)):
        select = compile_path(spots[0][2], where)
        return lambda envelope: _typed(select(envelope))
    pieces: list[str | Selector] = []
    position = 0
    for start, end, path in spots:
        pieces.append(text[position:start])
        pieces.append(compile_path(path, where))
        position = end
    if not pieces:
        return lambda envelope: text
    pieces.append(text[position:])
    return lambda envelope: "".join(
        piece if isinstance(piece, str) else _text(piece(envelope)) for piece in pieces
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


def _typed(values: list[Any]) -> Any:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _text(values: list[Any]) -> str:
    value = _typed(values)
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()
