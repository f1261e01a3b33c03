"""Leaf value tests of AWS EventBridge event patterns, shared with `match_fields`.

An EventBridge leaf is an array of alternatives: literals (`"a"`, `3`, `true`,
`null`) and one-key operator objects (`{"prefix": "us-"}`). This module
compiles them into `ValueTest`s: cheap callables over one present JSON leaf
(str, int, float, bool or None). Lists and objects never reach a test; the
caller opens arrays and treats objects as absent leaves.

Semantics and rejections follow EventBridge (checked against AWS-validated
cases in `shared/conformance/eventbridge-patterns`):

- numbers compare by value (`300` matches `300.0`) but never match strings or
  booleans; `true` is not `1`;
- `prefix`, `suffix`, `equals-ignore-case`, `wildcard` and `cidr` only match
  strings, and an empty `prefix`/`suffix` matches every string;
- `anything-but` matches every *present* value outside its set, `null` and
  values of another type included; it never matches a missing field;
- `numeric` works on numbers in [-5e9, 5e9], as the AWS docs specify;
- `{"exists": false}` is the only test that a missing field passes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeGuard

__all__ = [
    "MISSING",
    "PatternError",
    "ValueTest",
    "compile_alternatives",
    "compile_literals",
    "compile_operator",
]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "missing"


#: The value of a field the event does not have.
MISSING: Final = _Missing()


class PatternError(ValueError):
    """A pattern or condition that EventBridge would reject."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ValueTest(Protocol):
    #: True only for tests that hold when the field is absent ({"exists": false}).
    matches_missing: bool

    def __call__(self, value: Any) -> bool: ...


# EventBridge limits numeric matching to this range (AWS docs, "Numeric matching").
_NUMERIC_LIMIT: Final = 5.0e9
# More wildcards than this in one string is "too complex" for AWS; the exact
# AWS measure is an automaton size, this count reproduces its validated verdicts.
_MAX_WILDCARDS: Final = 5
_RANGE_OPERATORS: Final = ("<", "<=", "=", ">=", ">")


class _Test:
    """A value test from a plain predicate; `matches_missing` is False but for exists:false."""

    __slots__ = ("matches_missing", "predicate")

    def __init__(self, predicate: Callable[[Any], bool], *, matches_missing: bool = False) -> None:
        self.predicate = predicate
        self.matches_missing = matches_missing

    def __call__(self, value: Any) -> bool:
        return self.predicate(value)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- literals -----------------------------------------------------------------


class _Literals:
    """Exact values, split by JSON type so that 1, 1.0 and true stay apart."""

    __slots__ = ("bools", "has_null", "numbers", "strings")

    def __init__(self, values: list[Any]) -> None:
        self.strings = frozenset(v for v in values if isinstance(v, str))
        self.bools = frozenset(v for v in values if isinstance(v, bool))
        self.numbers = frozenset(v for v in values if _is_number(v))
        self.has_null = any(v is None for v in values)

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in self.strings
        if isinstance(value, bool):
            return value in self.bools
        if value is None:
            return self.has_null
        return value in self.numbers


class _Alternatives:
    """Any of: a literal, or an operator test."""

    __slots__ = ("literals", "matches_missing", "operators")

    def __init__(self, literals: _Literals, operators: tuple[ValueTest, ...]) -> None:
        self.literals = literals
        self.operators = operators
        self.matches_missing = any(test.matches_missing for test in operators)

    def __call__(self, value: Any) -> bool:
        if value in self.literals:
            return True
        return any(test(value) for test in self.operators)


def compile_alternatives(spec: list[Any], path: str) -> ValueTest:
    """Compile an EventBridge array of alternatives, e.g. `["a", null, {"prefix": "b"}]`."""
    if not isinstance(spec, list):
        raise PatternError(path, "must be an array of values and operators")
    if not spec:
        raise PatternError(path, "Empty arrays are not allowed")
    literals: list[Any] = []
    operators: list[ValueTest] = []
    for index, item in enumerate(spec):
        where = f"{path}[{index}]"
        if isinstance(item, dict):
            name, argument = _single_key(item, where)
            operators.append(compile_operator(name, argument, f"{where}.{name}"))
            if name == "exists":
                # AWS evaluates nothing after an exists operator in the same array
                # (validated: [{"exists": true}, {"prefix": "X"}] matches "my-value").
                for later, rest in enumerate(spec[index + 1 :], index + 1):
                    _validate_ignored(rest, f"{path}[{later}]")
                break
        elif isinstance(item, list):
            raise PatternError(where, "Match value must be String, number, true, false, or null")
        else:
            literals.append(item)
    if not operators and len(literals) == 1:
        return _single_literal(literals[0])
    return _Alternatives(_Literals(literals), tuple(operators))


def compile_literals(values: list[Any]) -> ValueTest:
    """Any of these scalars, by JSON equality, in one lookup however many there are."""
    if len(values) == 1:
        return _single_literal(values[0])
    return _Test(_Literals(values).__contains__)


def _validate_ignored(item: Any, where: str) -> None:
    # Ignored alternatives must still be well-formed: a typo should not hide.
    if isinstance(item, dict):
        name, argument = _single_key(item, where)
        compile_operator(name, argument, f"{where}.{name}")
    elif isinstance(item, list):
        raise PatternError(where, "Match value must be String, number, true, false, or null")


def _single_literal(expected: Any) -> ValueTest:
    # The common `["main"]` leaf: one comparison instead of a set lookup by type.
    if isinstance(expected, bool) or expected is None:
        return _Test(lambda v: v is expected)
    if isinstance(expected, str):
        return _Test(lambda v: v == expected and isinstance(v, str))
    return _Test(lambda v: v == expected and _is_number(v))


def _single_key(item: dict[str, Any], where: str) -> tuple[str, Any]:
    if not item:
        raise PatternError(where, "Empty objects are not allowed")
    if len(item) != 1:
        names = ", ".join(item)
        raise PatternError(where, f"an operator object has exactly one key, got: {names}")
    ((name, argument),) = item.items()
    return name, argument


# --- operators ------------------------------------------------------------------


def compile_operator(name: str, argument: Any, path: str) -> ValueTest:
    """Compile one operator object `{name: argument}`; `path` names the operator itself."""
    compiler = _OPERATORS.get(name)
    if compiler is None:
        raise PatternError(path, f"Unrecognized match type {name}")
    return compiler(argument, path)


def _string_argument(operator: str, argument: Any, path: str) -> str:
    if not isinstance(argument, str):
        raise PatternError(path, f"{operator} match pattern must be a string")
    return argument


def _ignore_case_argument(operator: str, argument: Any, path: str) -> str | None:
    """The string of `{"equals-ignore-case": s}` inside prefix/suffix, else None."""
    if isinstance(argument, dict) and list(argument) == ["equals-ignore-case"]:
        return _string_argument(
            "equals-ignore-case", argument["equals-ignore-case"], f"{path}.equals-ignore-case"
        )
    if not isinstance(argument, str):
        raise PatternError(
            path, f'{operator} match pattern must be a string or {{"equals-ignore-case": string}}'
        )
    return None


def _prefix(argument: Any, path: str) -> ValueTest:
    folded = _ignore_case_argument("prefix", argument, path)
    if folded is not None:
        lowered = folded.lower()
        return _Test(
            lambda v: isinstance(v, str) and _lower_head(v, len(lowered)).startswith(lowered)
        )
    return _Test(lambda v: isinstance(v, str) and v.startswith(argument))


def _suffix(argument: Any, path: str) -> ValueTest:
    folded = _ignore_case_argument("suffix", argument, path)
    if folded is not None:
        lowered = folded.lower()
        return _Test(
            lambda v: isinstance(v, str) and _lower_tail(v, len(lowered)).endswith(lowered)
        )
    return _Test(lambda v: isinstance(v, str) and v.endswith(argument))


def _equals_ignore_case(argument: Any, path: str) -> ValueTest:
    lowered = _string_argument("equals-ignore-case", argument, path).lower()
    return _Test(lambda v: isinstance(v, str) and len(v) <= len(lowered) and v.lower() == lowered)


# Case-insensitive tests lower only as much of the value as they compare, so
# their cost follows the pattern rather than a 1 MiB event string. That is
# exact because `str.lower()` maps each character on its own to one or more
# characters; only the capital sigma looks at its neighbours (final U+03C2 or
# U+03C3), so a window holding one is lowered whole (linear, as before). And a
# value longer than a lowered pattern can never lower to it.

_SIGMA: Final = "\u03a3"


def _lower_head(value: str, length: int) -> str:
    """A prefix of `value.lower()` at least `length` characters long (or all of it)."""
    head = value[:length]
    return value.lower() if _SIGMA in head else head.lower()


def _lower_tail(value: str, length: int) -> str:
    """A suffix of `value.lower()` at least `length` characters long (or all of it)."""
    tail = value[max(len(value) - length, 0) :] if length else ""
    return value.lower() if _SIGMA in tail else tail.lower()


def _wildcard(argument: Any, path: str) -> ValueTest:
    glob = compile_wildcard(_string_argument("wildcard", argument, path), path)
    return _Test(lambda v: isinstance(v, str) and glob.matches(v))


class Glob:
    r"""A wildcard as its literal segments, matched in time linear in the value.

    `a*b*c` must start with `a` and end with `c`, with `b` somewhere between;
    a regex of `.*` joins would backtrack (`*a*a*a*a*b` against `"aaaa…"`
    takes minutes at 2,000 characters). Finding each middle segment at its
    leftmost place is enough: an earlier end leaves later segments more room.
    """

    __slots__ = ("head", "middle", "tail")

    def __init__(self, segments: list[str]) -> None:
        # One segment: no star, an exact match (head is the whole text, tail None).
        self.head = segments[0]
        self.middle = tuple(segments[1:-1])
        self.tail = segments[-1] if len(segments) > 1 else None

    def matches(self, value: str) -> bool:
        head, tail = self.head, self.tail
        if tail is None:
            return value == head
        # The head and the tail may not overlap: "ab*ba" does not match "aba".
        end = len(value) - len(tail)
        if end < len(head) or not value.startswith(head) or not value.endswith(tail):
            return False
        position = len(head)
        for segment in self.middle:
            found = value.find(segment, position, end)
            if found < 0:
                return False
            position = found + len(segment)
        return True


def compile_wildcard(text: str, path: str) -> Glob:
    r"""`*` matches any run of characters; `\*` is a literal star and `\\` a backslash."""
    segments: list[str] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in ("*", "\\"):
                raise PatternError(path, f"Invalid escape character at pos {index}")
            literal.append(escaped)
            index += 2
            continue
        if char == "*":
            if index > 0 and text[index - 1] == "*":
                raise PatternError(path, f"Consecutive wildcard characters at pos {index}")
            segments.append("".join(literal))
            literal.clear()
        else:
            literal.append(char)
        index += 1
    if len(segments) > _MAX_WILDCARDS:
        raise PatternError(
            path,
            "Rule is too complex - try using fewer wildcard characters or fewer "
            "repeating character sequences after a wildcard character",
        )
    segments.append("".join(literal))
    return Glob(segments)


def _exists(argument: Any, path: str) -> ValueTest:
    if not isinstance(argument, bool):
        raise PatternError(path, "exists match pattern must be either true or false")
    # A present value (null included) exists; only a missing field passes exists:false.
    return _Test(lambda v: argument, matches_missing=not argument)


def _cidr(argument: Any, path: str) -> ValueTest:
    text = _string_argument("cidr", argument, path)
    address, slash, mask = text.partition("/")
    if not slash or "/" in mask:
        raise PatternError(path, "Malformed CIDR, one '/' required")
    if not mask.isdecimal():
        raise PatternError(path, "Malformed CIDR, mask bits must be an integer")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise PatternError(path, f"Nonstandard IP address: {address}") from None
    try:
        # strict=False: AWS accepts host bits in the pattern and ignores them.
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise PatternError(path, f"Malformed CIDR, {exc}") from None
    parse = _parse_ipv4 if network.version == 4 else _parse_ipv6
    base, netmask = int(network.network_address), int(network.netmask)
    return _Test(lambda v: isinstance(v, str) and _masked(parse(v), netmask) == base)


# Event values are parsed by hand: `ipaddress` raises on every string that is not
# an address, and the match path must not raise. None means "not an address".
# A string longer than any address is refused before it is split, so a 1 MiB
# value of dots costs a length check, not a million-item list.

_MAX_IPV4_CHARS: Final = len("255.255.255.255")
_MAX_IPV6_CHARS: Final = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")


def _masked(address: int | None, netmask: int) -> int | None:
    return None if address is None else address & netmask


def _parse_ipv4(text: str) -> int | None:
    if len(text) > _MAX_IPV4_CHARS:
        return None
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        # Like `ipaddress`: decimal only, no leading zeros (they could mean octal).
        if (
            not (part.isascii() and part.isdecimal())
            or len(part) > 3
            or (len(part) > 1 and part[0] == "0")
        ):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _parse_ipv6(text: str) -> int | None:
    if len(text) > _MAX_IPV6_CHARS:
        return None
    head, double_colon, tail = text.partition("::")
    left, right = _ipv6_groups(head), _ipv6_groups(tail)
    if left is None or right is None or "::" in tail:
        return None
    zeros = 8 - len(left) - len(right)
    if (double_colon and zeros < 1) or (not double_colon and zeros != 0):
        return None
    value = 0
    for group in [*left, *[0] * zeros, *right]:
        value = value << 16 | group
    return value


def _ipv6_groups(text: str) -> list[int] | None:
    """The 16-bit groups of one side of `::`; a dotted IPv4 tail counts as two."""
    if not text:
        return []
    groups: list[int] = []
    fields = text.split(":")
    for index, field in enumerate(fields):
        if "." in field and index == len(fields) - 1:
            v4 = _parse_ipv4(field)
            if v4 is None:
                return None
            groups += [v4 >> 16, v4 & 0xFFFF]
        elif 1 <= len(field) <= 4 and _HEX_DIGITS.issuperset(field):
            groups.append(int(field, 16))
        else:
            return None
    return groups


_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _numeric(argument: Any, path: str) -> ValueTest:
    if not isinstance(argument, list):
        raise PatternError(path, "Value of numeric must be an array.")
    if not 2 <= len(argument) <= 4:
        raise PatternError(path, "numeric takes [op, number] or [op, number, op, number]")
    bounds = [_numeric_bound(argument, i, path) for i in range(0, len(argument), 2)]
    if len(bounds) == 1:
        return _Numeric(*bounds)
    (first_op, _), (second_op, _) = bounds
    if first_op in (">", ">=") and second_op in ("<", "<="):
        return _Numeric(*bounds, path=path)
    if first_op in ("<", "<=") and second_op in (">", ">="):
        return _Numeric(*reversed(bounds), path=path)
    bad = first_op if first_op == "=" else second_op
    raise PatternError(path, f"Bad numeric range operator: {bad}")


def _numeric_bound(argument: list[Any], index: int, path: str) -> tuple[str, float]:
    op = argument[index]
    if op not in _RANGE_OPERATORS:
        raise PatternError(f"{path}[{index}]", f"Unrecognized numeric range operator: {op}")
    limit = argument[index + 1] if index + 1 < len(argument) else None
    if not _is_number(limit):
        raise PatternError(f"{path}[{index + 1}]", f"Value of {op} must be numeric")
    if not -_NUMERIC_LIMIT <= limit <= _NUMERIC_LIMIT:
        raise PatternError(
            f"{path}[{index + 1}]", f"Value of {op} must be between -5.0e9 and 5.0e9"
        )
    return op, limit


class _Numeric:
    """A numeric interval; each bound open or closed, the missing one at the AWS limit."""

    __slots__ = ("high", "high_closed", "low", "low_closed", "matches_missing")

    def __init__(self, *bounds: tuple[str, float], path: str = "") -> None:
        self.low, self.low_closed = -_NUMERIC_LIMIT, True
        self.high, self.high_closed = _NUMERIC_LIMIT, True
        for op, limit in bounds:
            if op in ("=", ">", ">="):
                self.low, self.low_closed = limit, op != ">"
            if op in ("=", "<", "<="):
                self.high, self.high_closed = limit, op != "<"
        if self.low >= self.high and len(bounds) == 2:
            raise PatternError(
                path, "the lower bound of a numeric range must be below the upper bound"
            )
        self.matches_missing = False

    def __call__(self, value: Any) -> bool:
        if value.__class__ is bool or not isinstance(value, (int, float)):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below


def _anything_but(argument: Any, path: str) -> ValueTest:
    if isinstance(argument, dict):
        name, inner = _single_key(argument, path)
        compiler = _ANYTHING_BUT_FORMS.get(name)
        if compiler is None:
            raise PatternError(f"{path}.{name}", f"Unsupported anything-but pattern: {name}")
        return compiler(inner, f"{path}.{name}")
    if isinstance(argument, list):
        if not argument:
            raise PatternError(path, "Empty arrays are not allowed")
        for index, item in enumerate(argument):
            if not isinstance(item, str) and not _is_number(item):
                raise PatternError(
                    f"{path}[{index}]",
                    "Inside anything but list, start|null|boolean is not supported.",
                )
        values = _Literals(argument)
    elif isinstance(argument, str) or _is_number(argument):
        values = _Literals([argument])
    else:
        raise PatternError(
            path, "Value of anything-but must be an array or single string/number value."
        )
    return _Test(lambda v: v not in values)


def _strings(operator: str, argument: Any, path: str) -> list[str]:
    """A string or a non-empty list of strings, as the anything-but forms take."""
    items = argument if isinstance(argument, list) else [argument]
    if not items:
        raise PatternError(path, "Empty arrays are not allowed")
    for index, item in enumerate(items):
        if not isinstance(item, str):
            where = f"{path}[{index}]" if isinstance(argument, list) else path
            raise PatternError(where, f"{operator} match pattern must be a string")
    return items


def _not_affix(operator: str, argument: Any, path: str) -> tuple[str, ...]:
    if isinstance(argument, dict):
        # AWS has no case-insensitive prefix/suffix under anything-but.
        raise PatternError(
            path, "Value of anything-but must be an array or single string/number value."
        )
    affixes = tuple(_strings("prefix/suffix", argument, path))
    if "" in affixes:
        raise PatternError(path, "Null prefix/suffix not allowed")
    return affixes


def _anything_but_prefix(argument: Any, path: str) -> ValueTest:
    prefixes = _not_affix("prefix", argument, path)
    return _Test(lambda v: not (isinstance(v, str) and v.startswith(prefixes)))


def _anything_but_suffix(argument: Any, path: str) -> ValueTest:
    suffixes = _not_affix("suffix", argument, path)
    return _Test(lambda v: not (isinstance(v, str) and v.endswith(suffixes)))


def _anything_but_ignore_case(argument: Any, path: str) -> ValueTest:
    items = argument if isinstance(argument, list) else [argument]
    if not items:
        raise PatternError(path, "Empty arrays are not allowed")
    if not all(isinstance(item, str) for item in items):
        raise PatternError(
            path,
            "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
        )
    lowered = frozenset(item.lower() for item in items)
    # A value longer than every item cannot lower to one of them (see _lower_head).
    longest = max(map(len, lowered))
    return _Test(lambda v: not (isinstance(v, str) and len(v) <= longest and v.lower() in lowered))


def _anything_but_wildcard(argument: Any, path: str) -> ValueTest:
    globs = tuple(compile_wildcard(text, path) for text in _strings("wildcard", argument, path))
    return _Test(lambda v: not (isinstance(v, str) and any(g.matches(v) for g in globs)))


_Compiler = Callable[[Any, str], ValueTest]

_ANYTHING_BUT_FORMS: Final[dict[str, _Compiler]] = {
    "prefix": _anything_but_prefix,
    "suffix": _anything_but_suffix,
    "equals-ignore-case": _anything_but_ignore_case,
    "wildcard": _anything_but_wildcard,
}

_OPERATORS: Final[dict[str, _Compiler]] = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _equals_ignore_case,
    "wildcard": _wildcard,
    "anything-but": _anything_but,
    "numeric": _numeric,
    "cidr": _cidr,
    "exists": _exists,
}
