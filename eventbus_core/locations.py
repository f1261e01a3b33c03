"""Where a validation problem is and what it says: pydantic's errors in our words.

Config errors (`[1].listen`) and -32602 `data` items use the same form, and
the same plain messages for wrong types and int64 bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from eventbus_core.errors import InvalidParams
from eventbus_core.numbers import INT64_MAX

__all__ = ["format_loc", "invalid_params", "plain_message", "relocated", "validation_data"]

#: What a strict type error says instead of pydantic's "Input should be a valid …".
_TYPE_WORDS = {
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "tuple_type": "must be an array",
    "list_type": "must be an array",
}


def plain_message(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of `ValidationError.errors()`) as a short sentence."""
    kind = error["type"]
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, not {shown(error['input'])}"
    if kind == "less_than_equal" and error.get("ctx", {}).get("le") == INT64_MAX:
        return f"must be at most 2^63-1 (int64), not {shown(error['input'])}"
    return str(error["msg"]).removeprefix("Value error, ")


def shown(value: Any) -> str:
    """A wrong value as JSON spells it: `"yes"`, `8.5`, `[1]` (cut at 40 characters)."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def format_loc(parts: Sequence[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_data(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as DESIGN's `[{loc, msg}]`, locations like `events[3].topic`."""
    return [
        {"loc": format_loc(error["loc"]), "msg": plain_message(error)}
        for error in exc.errors(include_url=False)
    ]


def invalid_params(method: str, exc: ValidationError) -> InvalidParams:
    """A validation failure of `method`'s params as the -32602 error a client reads."""
    return InvalidParams(
        f"invalid params for {method}: {_summary(validation_data(exc))}", validation_data(exc)
    )


def relocated(field: str, method: str, exc: ValidationError | InvalidParams) -> InvalidParams:
    """`exc` about a value that sits in the params under `field`: its locations start there."""
    data = validation_data(exc) if isinstance(exc, ValidationError) else list(exc.data or [])
    data = [{"loc": f"{field}.{d['loc']}" if d["loc"] else field, "msg": d["msg"]} for d in data]
    if isinstance(exc, InvalidParams):
        return InvalidParams(exc.message, data or None)
    return InvalidParams(f"invalid params for {method}: {_summary(data)}", data)


def _summary(data: list[dict[str, str]]) -> str:
    """The first three problems in a line, and how many more there are."""
    summary = "; ".join(f"{d['loc']}: {d['msg']}" if d["loc"] else d["msg"] for d in data[:3])
    return summary + (f" (and {len(data) - 3} more)" if len(data) > 3 else "")
