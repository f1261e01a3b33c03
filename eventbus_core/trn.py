"""TRN strings and TRN patterns (DESIGN.md §4).

A TRN is `trn:` followed by two or more `:`-separated segments of
`[A-Za-z0-9._-]`, optionally ending in `@algo:hex`:

    trn:user:alice:openapi:github-api:get-repo:v1
    trn:org:acme:tool:workflow:etl:v2.1:prod@sha256:ab12

A TRN pattern is matched the same way everywhere (allow-lists, rule
conditions, query and tail filters, tool routes):

- a segment `*` matches exactly one segment;
- a final `*` segment also matches any number of further segments (and the
  hash suffix), so `trn:org:abc:workflow:*` matches everything under
  `trn:org:abc:workflow:`;
- a pattern ending in `:` (`trn:user:`) is a prefix;
- any other pattern matches exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MAX_TRN_LENGTH",
    "TRN_RE",
    "Trn",
    "compile_trn_pattern",
    "is_valid_trn",
    "parse_trn",
    "trn_matches",
    "validate_trn",
    "validate_trn_pattern",
]

MAX_TRN_LENGTH = 1024

_SEGMENT = r"[A-Za-z0-9._-]+"
_HASH = r"@(?P<algo>[A-Za-z0-9]+):(?P<digest>[0-9A-Fa-f]+)"
_TRN_RE = re.compile(rf"trn(?P<segments>(?::{_SEGMENT}){{2,}})(?:{_HASH})?")
#: What a valid TRN of at most MAX_TRN_LENGTH characters fullmatches (for hot paths).
TRN_RE = _TRN_RE
_PATTERN_SEGMENT_RE = re.compile(rf"\*|{_SEGMENT}")

TrnMatcher = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Trn:
    """A parsed TRN: `platform` and `scope` are the first two segments."""

    segments: tuple[str, ...]
    hash_algo: str | None = None
    hash_digest: str | None = None

    @property
    def platform(self) -> str:
        return self.segments[0]

    @property
    def scope(self) -> str:
        return self.segments[1]

    def __str__(self) -> str:
        text = "trn:" + ":".join(self.segments)
        if self.hash_algo is not None:
            text += f"@{self.hash_algo}:{self.hash_digest}"
        return text


def _explain_invalid_trn(value: str) -> str:
    if not value.startswith("trn:"):
        return "must start with 'trn:'"
    if len(value) > MAX_TRN_LENGTH:
        return f"is longer than {MAX_TRN_LENGTH} characters"
    body = value[4:].split("@", 1)[0]
    segments = body.split(":")
    if len(segments) < 2:
        return "needs at least two segments after 'trn:' (platform and scope)"
    for index, segment in enumerate(segments, start=1):
        if not segment:
            return f"segment {index} is empty"
        if not re.fullmatch(_SEGMENT, segment):
            return (
                f"segment {index} ({segment!r}) may only contain letters, digits, '.', '_' and '-'"
            )
    return "has a malformed '@algo:hex' suffix"


def validate_trn(value: object) -> str:
    """Return `value` if it is a valid TRN, else raise ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"a TRN must be a string, not {type(value).__name__}")
    if len(value) <= MAX_TRN_LENGTH and _TRN_RE.fullmatch(value):
        return value
    raise ValueError(f"invalid TRN {value!r}: {_explain_invalid_trn(value)}")


def is_valid_trn(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) <= MAX_TRN_LENGTH and bool(_TRN_RE.fullmatch(value))
    )


def parse_trn(value: str) -> Trn:
    """Parse a TRN into its segments and optional hash; ValueError if invalid."""
    validate_trn(value)
    match = _TRN_RE.fullmatch(value)
    assert match is not None
    segments = tuple(match.group("segments")[1:].split(":"))
    return Trn(segments, match.group("algo"), match.group("digest"))


def validate_trn_pattern(pattern: object) -> str:
    """Return `pattern` if it is a valid TRN pattern, else raise ValueError saying why."""
    if not isinstance(pattern, str):
        raise ValueError(f"a TRN pattern must be a string, not {type(pattern).__name__}")
    if not pattern.startswith("trn:"):
        raise ValueError(f"invalid TRN pattern {pattern!r}: must start with 'trn:'")
    if len(pattern) > MAX_TRN_LENGTH:
        raise ValueError(f"invalid TRN pattern: longer than {MAX_TRN_LENGTH} characters")
    if pattern.endswith(":"):
        body = pattern[4:-1]
        if body and not all(re.fullmatch(_SEGMENT, s) for s in body.split(":")):
            raise ValueError(
                f"invalid TRN prefix {pattern!r}: segments before the final ':' must be "
                "letters, digits, '.', '_' or '-' (no '*' in a prefix)"
            )
        return pattern
    body, at, digest = pattern[4:].partition("@")
    segments = body.split(":")
    for index, segment in enumerate(segments, start=1):
        if not _PATTERN_SEGMENT_RE.fullmatch(segment):
            raise ValueError(
                f"invalid TRN pattern {pattern!r}: segment {index} ({segment!r}) must be '*' "
                "or letters, digits, '.', '_', '-'"
            )
    if len(segments) < 2 and segments != ["*"]:
        raise ValueError(
            f"invalid TRN pattern {pattern!r}: needs at least two segments after 'trn:'"
        )
    if at and not re.fullmatch(r"[A-Za-z0-9]+:[0-9A-Fa-f]+", digest):
        raise ValueError(f"invalid TRN pattern {pattern!r}: malformed '@algo:hex' suffix")
    return pattern


@lru_cache(maxsize=4096)
def compile_trn_pattern(pattern: str) -> TrnMatcher:
    """A fast predicate for `pattern`; ValueError if the pattern is invalid."""
    validate_trn_pattern(pattern)
    if pattern.endswith(":"):
        return lambda value: value.startswith(pattern)
    if "*" not in pattern:
        return lambda value: value == pattern
    body, at, digest = pattern[4:].partition("@")
    parts = body.split(":")
    regex = ":".join(r"[A-Za-z0-9._-]+" if p == "*" else re.escape(p) for p in parts)
    if at:
        regex += re.escape("@" + digest)
    elif parts[-1] == "*":
        # A final '*' reaches into everything below: more segments and a hash.
        regex += r"(?::[A-Za-z0-9._-]+)*(?:@[A-Za-z0-9]+:[0-9A-Fa-f]+)?"
    compiled = re.compile("trn:" + regex)
    return lambda value: compiled.fullmatch(value) is not None


def trn_matches(pattern: str, value: str | None) -> bool:
    """True if the TRN `value` matches `pattern`; None never matches."""
    return value is not None and compile_trn_pattern(pattern)(value)
