"""Topic names and NATS-style topic patterns (DESIGN.md §4).

A topic is 1-255 characters of dot-separated tokens of `[A-Za-z0-9_:/-]`.
In a pattern `*` matches exactly one token and `>` (last token only) matches
one or more. A pattern that starts with a wildcard never matches the bus's own
`_sys.` topics: they must be named explicitly (`_sys.>`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = [
    "MAX_TOPIC_LENGTH",
    "RESERVED_PREFIX",
    "TOPIC_RE",
    "compile_topic_pattern",
    "is_reserved_topic",
    "literal_prefix",
    "topic_matches",
    "validate_topic",
    "validate_topic_pattern",
]

MAX_TOPIC_LENGTH = 255
RESERVED_PREFIX = "_sys."

_TOKEN_RE = re.compile(r"[A-Za-z0-9_:/-]+")
_TOPIC_RE = re.compile(r"[A-Za-z0-9_:/-]+(?:\.[A-Za-z0-9_:/-]+)*")
#: What a valid topic of at most MAX_TOPIC_LENGTH characters fullmatches (for hot paths
#: that check without building an error).
TOPIC_RE = _TOPIC_RE

TopicMatcher = Callable[[str], bool]


def _check_length(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if len(value) > MAX_TOPIC_LENGTH:
        raise ValueError(f"{kind} is {len(value)} characters long; the limit is {MAX_TOPIC_LENGTH}")


def _explain_token(kind: str, value: str, index: int, token: str) -> str:
    if not token:
        return f"invalid {kind} {value!r}: token {index} is empty (no leading, trailing or double dots)"
    return (
        f"invalid {kind} {value!r}: token {index} ({token!r}) may only contain letters, "
        "digits and '_', ':', '/', '-'"
    )


def validate_topic(value: object) -> str:
    """Return `value` if it is a valid concrete topic, else raise ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"a topic must be a string, not {type(value).__name__}")
    if len(value) <= MAX_TOPIC_LENGTH and _TOPIC_RE.fullmatch(value):
        return value
    _check_length("topic", value)
    for index, token in enumerate(value.split("."), start=1):
        if token in ("*", ">"):
            raise ValueError(
                f"invalid topic {value!r}: wildcards ('*', '>') are only allowed in patterns"
            )
        if not _TOKEN_RE.fullmatch(token):
            raise ValueError(_explain_token("topic", value, index, token))
    raise ValueError(f"invalid topic {value!r}")  # pragma: no cover - unreachable


def validate_topic_pattern(value: object) -> str:
    """Return `value` if it is a valid topic pattern, else raise ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"a topic pattern must be a string, not {type(value).__name__}")
    _check_length("topic pattern", value)
    tokens = value.split(".")
    for index, token in enumerate(tokens, start=1):
        if token == ">":
            if index != len(tokens):
                raise ValueError(f"invalid topic pattern {value!r}: '>' may only be the last token")
        elif token != "*" and not _TOKEN_RE.fullmatch(token):
            raise ValueError(_explain_token("topic pattern", value, index, token))
    return value


def is_reserved_topic(topic: str) -> bool:
    return topic.startswith(RESERVED_PREFIX)


def literal_prefix(pattern: str) -> str:
    """The tokens before the first wildcard, with their trailing dot ('' if none).

    Storage uses it to narrow a scan before the exact match runs in Python.
    """
    literal: list[str] = []
    for token in pattern.split("."):
        if token in ("*", ">"):
            return ".".join(literal) + "." if literal else ""
        literal.append(token)
    return pattern


@lru_cache(maxsize=4096)
def compile_topic_pattern(pattern: str) -> TopicMatcher:
    """A fast predicate for `pattern`; ValueError if the pattern is invalid."""
    validate_topic_pattern(pattern)
    if "*" not in pattern and ">" not in pattern:
        return lambda topic: topic == pattern
    tokens = pattern.split(".")
    if tokens[-1] == ">" and "*" not in tokens:
        prefix = literal_prefix(pattern)
        if not prefix:
            return lambda topic: not topic.startswith(RESERVED_PREFIX)
        return lambda topic: topic.startswith(prefix) and len(topic) > len(prefix)
    parts = []
    for token in tokens:
        if token == "*":
            parts.append(r"[^.]+")
        elif token == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(token))
    compiled = re.compile(r"\.".join(parts))
    guard_reserved = tokens[0] in ("*", ">")

    def matches(topic: str) -> bool:
        if guard_reserved and topic.startswith(RESERVED_PREFIX):
            return False
        return compiled.fullmatch(topic) is not None

    return matches


def topic_matches(pattern: str, topic: str) -> bool:
    return compile_topic_pattern(pattern)(topic)
