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

import re
from collections.abc import Callable
from typing import Any

from eventbus_core.codec import dumps

from .paths import Selector, compile_path

__all__ = ["Template", "compile_template"]

Template = Callable[[dict[str, Any]], Any]

# The inner part may not contain `}}`, so `{{ a }} x {{ b }}` is two
# placeholders even under fullmatch.
_PLACEHOLDER = re.compile(r"\{\{\s*((?:(?!\}\}).)*?)\s*\}\}")


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
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        select = compile_path(whole.group(1), where)
        return lambda envelope: _typed(select(envelope))
    pieces: list[str | Selector] = []
    position = 0
    for placeholder in _PLACEHOLDER.finditer(text):
        pieces.append(text[position : placeholder.start()])
        pieces.append(compile_path(placeholder.group(1), where))
        position = placeholder.end()
    if not pieces:
        return lambda envelope: text
    pieces.append(text[position:])
    return lambda envelope: "".join(
        piece if isinstance(piece, str) else _text(piece(envelope)) for piece in pieces
    )


def _typed(values: list[Any]) -> Any:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _text(values: list[Any]) -> str:
    value = _typed(values)
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()
