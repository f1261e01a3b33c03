"""Hypothesis strategies for hostile JSON-RPC input (DESIGN.md §3-§5).

Three families, as the fuzzer mixes them:

- **valid-shaped** params for every method of §5, each value sometimes swapped
  for a hostile one (integers at the int64/uint64 edges and beyond, huge,
  empty, NUL and lone-surrogate strings, deep nesting, wrong types), topics
  and TRNs at their grammar's edges, rule bodies with odd conditions,
  EventBridge patterns, JSONPath strings and templates;
- **arbitrary JSON** for params, ids and whole request objects;
- **framing**: raw bytes, invalid UTF-8, `\\r\\n`, blank lines, partial lines
  (the caller splits the stream into writes), batches.

Values are Python objects encoded by `encode`, which writes integers of any
size as literals (orjson would refuse 2^64) and splices `Raw` JSON text in
as it is (for nesting deeper than Python's json would like to build).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "ABSENT",
    "METHODS",
    "Call",
    "Raw",
    "any_json",
    "calls",
    "encode",
    "hostile",
    "request_objects",
]


@dataclass(frozen=True)
class Raw:
    """JSON text spliced into an encoded value as it is."""

    text: str


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: A member left out of the request object (no `params`).
ABSENT: Any = _Absent()


def encode(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON bytes for `value`: any integer as a literal, `Raw` spliced in, and with
    `ascii_only=False` lone surrogates written raw (invalid UTF-8)."""
    raws: list[str] = []

    def swap(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"\x01raw{len(raws) - 1}\x01"
        if isinstance(item, dict):
            return {key: swap(v) for key, v in item.items()}
        if isinstance(item, list | tuple):
            return [swap(v) for v in item]
        return item

    text = json.dumps(swap(value), ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=True)
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x01raw{index}\x01"), raw, 1)
    return text.encode("utf-8", "surrogatepass")


# -- hostile leaves ----------------------------------------------------------------

INT_EDGES = [
    0,
    1,
    -1,
    2,
    100,
    255,
    256,
    1000,
    10_000,
    10_001,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**32,
    2**53 - 1,
    2**53,
    2**53 + 1,
    -(2**53),
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    -(2**64),
    10**19,
    10**30,
    -(10**30),
    10**40,
    10**41,
    10**400,
]
FLOAT_EDGES = [
    0.0,
    -0.0,
    0.5,
    1.0,
    1e-7,
    5e-324,
    2.0**53,
    2.0**63,
    2.0**64,
    1e19,
    5e9,
    5.0000001e9,
    -5e9,
    1e308,
    -1e308,
]
RAW_NUMBERS = [
    "1e400",
    "-1e400",
    "1E2",
    "1.0e-400",
    "-0",
    "0.0",
    "00",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e",
    "9" * 500,
]

STRING_EDGES = [
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\u0000",
    "a\u0000b",
    "\U0001f600",
    "é",
    "e\u0301",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\\",
    '"',
    "'",
    "\x7f",
    "\x1b[2J",
    "null",
    "true",
    "0",
    "-1",
    "%s%n",
    "${HOME}",
    "../../etc/passwd",
    "a" * 255,
    "a" * 256,
    "a" * 400 + "b",
    "x" * 4097,
    "{{ $ }}",
    "{{",
    "}}",
    "$",
    "$.",
    "*",
    ">",
    "trn:",
    "trn:user:alice:tool:x:v1",
    "_sys.x",
]
LONG_STRING_SIZES = [1024, 10_000, 60_000, 65_000, 65_536, 70_000]


def often(
    good: st.SearchStrategy[Any], other: st.SearchStrategy[Any], times: int = 9
) -> st.SearchStrategy[Any]:
    """`good` about `times` times as often as `other` (shrinking towards `good`).

    Not `one_of([good] * times + [other])`: one_of drops repeated branches.
    """
    return st.sampled_from([True] * times + [False]).flatmap(lambda pick: good if pick else other)


ints = st.sampled_from(INT_EDGES) | st.integers()
#: Where an integer is expected: mostly within int64, at its edges now and then.
good_ints = often(st.integers(0, 10_000) | st.integers(0, 2**63 - 1), ints, 3)
floats = st.sampled_from(FLOAT_EDGES) | st.floats(allow_nan=False, allow_infinity=False)
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
#: Strings orjson refuses (lone surrogates: a -32700 for the whole line) and strings near the line limit.
LONE_SURROGATES = ["\ud800", "\udfff", "a\ud83d", "\udc00\ud800"]
rare_strings = (
    st.sampled_from(LONE_SURROGATES)
    | st.text(st.characters() | surrogates, max_size=8)
    | st.sampled_from(LONG_STRING_SIZES).map(lambda n: "x" * n)
)
strings = often(st.sampled_from(STRING_EDGES) | st.text(max_size=20), rare_strings, 8)


def _deep(depth: int, kind: str, leaf: str = "1") -> Raw:
    if kind == "list":
        return Raw("[" * depth + leaf + "]" * depth)
    if kind == "dict":
        return Raw('{"a":' * depth + leaf + "}" * depth)
    return Raw('[{"a":' * (depth // 2) + leaf + "}]" * (depth // 2))


deep = st.builds(
    _deep,
    st.sampled_from(
        [10, 100, 150, 190, 195, 196, 197, 198, 199, 200, 201, 250, 254, 255, 300, 1023, 1024, 1025]
    ),
    st.sampled_from(["list", "dict", "mixed"]),
    st.sampled_from(["1", '"{{ $ }}"', '"{{ $.payload }}"', "[]", "{}", "null"]),
)
scalars = st.none() | st.booleans() | ints | floats | strings
raw_numbers = st.sampled_from(RAW_NUMBERS).map(Raw)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12,
)
#: A value where something else was expected: any type, any size, nested too deep.
hostile = often(often(scalars, any_json, 2), deep | raw_numbers, 5)


def maybe_hostile(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `good`, sometimes anything: one bad value per request is what finds bugs."""
    return often(good, hostile)


# -- grammar edges: topics, TRNs, ids ------------------------------------------------

TOKEN = r"[A-Za-z0-9_:/-]{1,12}"
TOPIC_EDGES = [
    "fz.a",
    "fz.b.c",
    "fz.rule.out",
    "a",
    "A-z_0:9/x",
    "x" * 255,
    "x" * 256,
    "a." * 127 + "a",
    "a." * 128,
    "",
    ".",
    "..",
    "a..b",
    ".a",
    "a.",
    "_sys",
    "_sys.x",
    "_sys.>",
    "_sysx.y",
    "a b",
    "ä",
    "a\u0000",
    "a\n",
    "a.*",
    "a.>",
    ">",
    "*",
    "*.>",
    ">.a",
    "a.>.b",
    "**",
    "*a",
    "a*",
    "fz.\ud800",
]
FUZZ_TOPICS = ["fz.a", "fz.b.c", "fz.rule.out", "fz.big"]
topics = often(
    st.sampled_from(FUZZ_TOPICS) | st.from_regex(rf"{TOKEN}(\.{TOKEN}){{0,3}}", fullmatch=True),
    st.sampled_from(TOPIC_EDGES),
    3,
)
topic_patterns = often(
    st.sampled_from(["fz.>", "fz.*", "fz.a", ">", "*.*", "fz.b.*"])
    | st.from_regex(rf"({TOKEN}|\*)(\.({TOKEN}|\*)){{0,3}}(\.>)?", fullmatch=True),
    topics,
    3,
)

SEGMENT = r"[A-Za-z0-9._-]{1,8}"
TRN_EDGES = [
    "trn:user:alice:tool:openapi:github-api:v1",
    "trn:fuzz:echo:v1",
    "trn:a:b",
    "trn:a",
    "trn:",
    "trn::a",
    "trn:a::b",
    "trn:a:b:",
    "trn:a:b@sha256:ab12",
    "trn:a:b@sha256:",
    "trn:a:b@:ab",
    "trn:a:b@sha256:xyz",
    "trn:a:b@@x:1",
    "TRN:a:b",
    "trn:a:b ",
    " trn:a:b",
    "trn:a:b\u0000",
    "trn:ä:b",
    "trn:a:*",
    "trn:*",
    "trn:*:*",
    "trn:user:",
    "trn:a:*@x:1",
    "trn:a:b*",
    "trn:" + "a:" * 509 + "a",
    "trn:" + "a:" * 510 + "a",
    "trn:" + "a" * 1020,
    "trn:" + "a" * 1021,
    "trn:a:" + "b" * 1018,
    "trn:a:" + "b" * 1019,
]
trns = often(
    st.sampled_from(["trn:user:alice:tool:x:v1", "trn:fuzz:echo:v1", "trn:org:acme:repo:api:v1"])
    | st.from_regex(rf"trn(:{SEGMENT}){{2,5}}(@[a-z0-9]{{1,6}}:[0-9a-f]{{1,8}})?", fullmatch=True),
    st.sampled_from(TRN_EDGES),
    3,
)
trn_patterns = often(
    st.sampled_from(["trn:user:", "trn:user:*", "trn:*:*", "trn:fuzz:echo:v1"])
    | st.from_regex(rf"trn(:({SEGMENT}|\*)){{1,4}}:?", fullmatch=True),
    trns,
    2,
)
RULE_IDS = ["fz-1", "fz-2", "fz-3", "fz.rule_4"]
rule_ids = often(
    st.sampled_from(RULE_IDS),
    st.sampled_from(["", "a" * 128, "a" * 129, "a b", "ü", "a/b", "a\u0000", ".", "-"]),
    5,
)
BUS_IDS = ["mem", "lite", "rules", "auth", "pg", "nope", "", "a" * 65]


# -- method params -----------------------------------------------------------------


def _params(
    required: dict[str, st.SearchStrategy[Any]] | None = None,
    optional: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Any]:
    """An object with these members (values mostly well-typed), sometimes an extra key."""
    shaped = st.fixed_dictionaries(
        {k: maybe_hostile(v) for k, v in (required or {}).items()},
        optional={k: maybe_hostile(v) for k, v in (optional or {}).items()},
    )
    extra = st.dictionaries(strings, hostile, min_size=1, max_size=2)
    with_extra = st.tuples(shaped, extra).map(lambda pair: {**pair[1], **pair[0]})
    return often(shaped, with_extra, 7)


#: Payloads shaped like what rule paths look at (`a`, `a.b`, `$.payload.a`), with hostile leaves.
payloads = st.dictionaries(
    st.sampled_from(["a", "b", "c", "a.b"]),
    scalars
    | st.lists(scalars, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "c"]), scalars, max_size=3),
    max_size=4,
)
#: Payloads nested 50-199 levels: within the wire's limit, beyond it once a template wraps them.
nested_payloads = st.builds(
    lambda depth, leaf: _deep(depth, "dict", leaf),
    st.sampled_from([50, 100, 150, 180, 199]),
    st.sampled_from(["1", '"a"', "[1,2]"]),
)

envelope_fields = {
    "payload": often(often(payloads, any_json, 2), deep | nested_payloads, 6),
    "timestamp": good_ints,
    "metadata": st.dictionaries(strings, any_json, max_size=3) | st.none(),
    "source_trn": trns | st.none(),
    "target_trn": trns | st.none(),
    "correlation_id": strings | st.none(),
    "idempotency_key": st.sampled_from(["k1", "k2"]) | strings,
    "event_id": hostile,
}
emit_params = _params({"topic": topics}, envelope_fields)

PATHS = [
    "$.payload.a",
    "a",
    "a.b",
    "a.b.c",
    "topic",
    "source_trn",
    "target_trn",
    "timestamp",
    "correlation_id",
    "event_id",
    "payload",
    "metadata",
    "$",
    "$.payload",
    "$.metadata.x",
    "$..a",
    "$.payload[*]",
    "$.payload[0]",
    "$.payload[-1:]",
    "$.payload[0:10:0]",
    "$.payload[?(@.a > 1)]",
    "$.payload[?(@.a == 'x')]",
    "$.payload[?(@ ~ '(')]",
    "$.payload[?(@.a =~ '[')]",
    "$.payload.`len`",
    "$.payload.`sorted`",
    "$.payload[/a]",
    "$.payload[\\a]",
    "$.payload.`sub(/(/, x)`",
    "$.payload.`sub(/a/, \\9)`",
    "$.payload.`split(,, 5, -1)`",
    "$.payload.`split(, 99, 1)`",
    "$.payload.a + 1",
    "$.payload.a * $.payload.b",
    "$.payload.a / 0",
    "$.payload.`str()`",
    "$.`this`",
    "$.payload..*",
    "$[",
    "$.",
    "$$",
    "",
    " ",
    "1a",
    "a..b",
    "$.payload['a']",
    "$.payload.a[*].b",
    "$.payload[*].`parent`",
    "$.*.*.*",
    "$.payload.a[10000000000000000000]",
    "$.payload[?(@.a > 99999999999999999999)]",
    "$.payload.`int(a)`",
]
paths = often(st.sampled_from(PATHS), strings, 4)
TEMPLATE_STRINGS = [
    "{{ $ }}",
    "{{ $.payload }}",
    "{{ $.payload.a }}",
    "{{ a.b }}",
    "x {{ a }} y",
    "{{ a }}{{ b }}",
    "{{ }}",
    "{{ $[ }}",
    "{{ $.payload[/a] }}",
    "{{ $.payload.`sorted` }}",
    "{{ $.payload.`sub(/(/, x)` }}",
    "{{{{ a }}}}",
    "{{ topic }}",
    "{{ $..* }}",
    "}}{{",
    "{{",
    "{{ 1a }}",
    "{{ $.payload.a / 0 }}",
]
templates = often(
    st.recursive(
        st.sampled_from(TEMPLATE_STRINGS) | scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=3),
        max_leaves=8,
    ),
    deep,
    6,
)

NUMERIC_OPS = st.sampled_from(["<", "<=", "=", ">=", ">", "==", "!", ""])
numeric_args = st.lists(
    st.one_of(NUMERIC_OPS, ints, floats, hostile), min_size=0, max_size=5
) | st.tuples(
    st.sampled_from([">", ">="]), ints | floats, st.sampled_from(["<", "<="]), ints | floats
).map(list)
CIDRS = [
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/32",
    "1.2.3.4/32",
    "1.2.3.4/33",
    "1.2.3.4",
    "x/1",
    "::1/129",
    "1.2.3.4/-1",
    "1.2.3.4/\u0663",
    "1.2.3.4/ 8",
    "1.2.3.4/08",
    "1.2.3.4//8",
    "::ffff:1.2.3.4/120",
    "/8",
    "",
]
WILDCARDS = [
    "*",
    "a*b",
    "**",
    "\\",
    "\\*",
    "a\\",
    "*" * 6,
    "a*b*c*d*e*f",
    "\\\\*",
    "*\u0000*",
    "x" * 1000 + "*",
    "*a*a*a*a*a",
    "a*a*a*a*a*",
    "*aa*aa*aa*ab",  # backtracking bait
]
string_ops = strings | st.fixed_dictionaries({"equals-ignore-case": maybe_hostile(strings)})
operator_objects = st.one_of(
    st.fixed_dictionaries({"prefix": maybe_hostile(string_ops)}),
    st.fixed_dictionaries({"suffix": maybe_hostile(string_ops)}),
    st.fixed_dictionaries({"equals-ignore-case": maybe_hostile(strings)}),
    st.fixed_dictionaries({"wildcard": maybe_hostile(st.sampled_from(WILDCARDS) | strings)}),
    st.fixed_dictionaries({"numeric": numeric_args | hostile}),
    st.fixed_dictionaries({"cidr": maybe_hostile(st.sampled_from(CIDRS) | strings)}),
    st.fixed_dictionaries({"exists": maybe_hostile(st.booleans())}),
    st.fixed_dictionaries({"equals": hostile}),
    st.fixed_dictionaries({"trn": maybe_hostile(trn_patterns)}),
    st.fixed_dictionaries(
        {
            "anything-but": st.one_of(
                scalars,
                st.lists(scalars, max_size=3),
                st.dictionaries(
                    st.sampled_from(
                        ["prefix", "suffix", "equals-ignore-case", "wildcard", "numeric", "x"]
                    ),
                    st.lists(strings, max_size=3) | strings | hostile,
                    max_size=2,
                ),
            )
        }
    ),
    st.dictionaries(
        st.sampled_from(["nope", "$or", "", "PREFIX", "exists "]), hostile, min_size=1, max_size=2
    ),
)
condition_values = st.one_of(
    scalars,
    operator_objects,
    st.lists(scalars | operator_objects, max_size=4),
    any_json,
)
PATTERN_KEYS = ["payload", "topic", "source_trn", "a", "b.c", "a.b.c", "$or", "", ".", "payload.a"]
pattern_values = st.recursive(
    st.lists(scalars | operator_objects, max_size=4),
    lambda inner: (
        st.dictionaries(st.sampled_from(PATTERN_KEYS) | strings, inner, max_size=3)
        | st.lists(st.dictionaries(st.sampled_from(PATTERN_KEYS), inner, max_size=2), max_size=3)
    ),
    max_leaves=10,
)
event_patterns = st.dictionaries(
    st.sampled_from(PATTERN_KEYS) | strings, pattern_values, max_size=3
)
invoke_tool = _params(
    {
        "type": st.just("InvokeTool"),
        "tool_id": st.sampled_from(["trn:fuzz:echo:v1", "trn:fuzz:none:v1"]) | trns,
    },
    {"input": templates, "result_topic": topics, "timeout_ms": good_ints},
)
emit_event_action = _params(
    {"type": st.just("EmitEvent"), "topic": st.sampled_from(["fz.rule.out"]) | topics},
    {"payload": templates, "bus": st.sampled_from(BUS_IDS), "target_trn": trns},
)


def _untagged(action: Any) -> Any:
    if isinstance(action, dict) and isinstance(action.get("type"), str):
        body = {k: v for k, v in action.items() if k != "type"}
        return {action["type"]: body}
    return action


actions = st.one_of(
    invoke_tool, emit_event_action, invoke_tool.map(_untagged), emit_event_action.map(_untagged)
)
rule_bodies = _params(
    {"id": rule_ids, "action": actions},
    {
        "topic": topic_patterns,
        "match_fields": st.dictionaries(paths, condition_values, max_size=3),
        "pattern": event_patterns,
        "enabled": st.booleans(),
        "description": strings,
        "retry": _params(optional={"attempts": good_ints, "backoff_ms": good_ints}),
        "replace": st.booleans(),
    },
)
test_events = _params(optional={"topic": topics, **envelope_fields})

consumer_names = st.sampled_from(["fz-c", "w"]) | strings

METHOD_PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "emit_event": emit_params,
    "emit_events": _params({"events": st.lists(emit_params, max_size=5)}),
    "poll_events": _params(
        optional={
            "topic": topic_patterns,
            "since": good_ints,
            "limit": good_ints,
            "source_trn": trn_patterns,
            "target_trn": trn_patterns,
            "correlation_id": strings,
            "from_ts": good_ints,
            "to_ts": good_ints,
            "order": st.sampled_from(["asc", "desc", "ASC", ""]),
        }
    ),
    "list_topics": _params(),
    "subscribe_topic": _params(
        {"topic": topic_patterns},
        {"since": good_ints, "source_trn": trn_patterns, "target_trn": trn_patterns},
    ),
    "unsubscribe": _params({"subscription": st.sampled_from(["1", "s1", "sub-1", "0"]) | strings}),
    "register_rule": rule_bodies,
    "list_rules": _params(),
    "get_rule": _params({"id": rule_ids}),
    "delete_rule": _params({"id": rule_ids}),
    "set_rule_enabled": _params({"id": rule_ids, "enabled": st.booleans()}),
    "test_rule": st.one_of(
        _params({"event": test_events, "rule": rule_bodies}),
        _params({"event": test_events, "rule_id": rule_ids}),
        _params({"event": test_events}, {"rule": rule_bodies, "rule_id": rule_ids}),
    ),
    "list_firings": _params(
        optional={
            "rule_id": rule_ids,
            "status": st.sampled_from(["pending", "ok", "failed", "skipped", "OK", ""]),
            "since": good_ints,
            "limit": good_ints,
            "order": st.sampled_from(["asc", "desc", "up"]),
        }
    ),
    "subscribe_firings": _params(optional={"rule_id": rule_ids}),
    # Small limits: a replay of the whole window in every example would grow the log geometrically.
    "replay_events": _params(
        {"since_ts": good_ints, "until_ts": good_ints},
        {
            "topic": topic_patterns,
            "source_trn": trn_patterns,
            "target_trn": trn_patterns,
            "to_topic": topics,
            "to_bus": st.sampled_from(BUS_IDS),
            "dry_run": st.booleans(),
            "after_id": good_ints,
            "until_id": good_ints,
            "limit": often(st.integers(1, 20), ints, 3),
        },
    ),
    # Durable consumers: a few names, so fetches find what creates made; short waits, so
    # an example does not hold the fuzzer for a minute.
    "create_consumer": _params(
        {"name": consumer_names},
        {
            "topic": topic_patterns,
            "source_trn": trn_patterns,
            "target_trn": trn_patterns,
            "pattern": event_patterns,
            "start": st.sampled_from(["new", "all", "old"])
            | _params({"after_id": good_ints})
            | _params({"from_ts": good_ints}),
            "ack_wait_ms": good_ints,
            "max_deliver": good_ints,
            "backoff_ms": st.lists(good_ints, max_size=4),
            "max_ack_pending": good_ints,
            "replace": st.booleans(),
        },
    ),
    "list_consumers": _params(),
    "get_consumer": _params({"name": consumer_names}),
    "delete_consumer": _params({"name": consumer_names}),
    "fetch": _params(
        {"consumer": consumer_names},
        {"max": good_ints, "wait_ms": often(st.integers(0, 50), ints, 3)},
    ),
    "ack": _params({"consumer": consumer_names, "event_ids": st.lists(good_ints, max_size=5)}),
    "nack": _params(
        {"consumer": consumer_names, "event_ids": st.lists(good_ints, max_size=5)},
        {"delay_ms": good_ints},
    ),
    "extend": _params({"consumer": consumer_names, "event_ids": st.lists(good_ints, max_size=5)}),
    "term": _params(
        {"consumer": consumer_names, "event_ids": st.lists(good_ints, max_size=5)},
        {"reason": strings},
    ),
    "list_dead_letters": _params(
        {"consumer": consumer_names}, {"after_id": good_ints, "limit": good_ints}
    ),
    "redrive": _params(
        {"consumer": consumer_names}, {"event_ids": st.lists(good_ints, max_size=5)}
    ),
    "bus_info": _params(),
    "ping": _params(),
    "authenticate": _params({"token": st.sampled_from(["wrong", ""]) | strings}),
}
METHODS = tuple(METHOD_PARAMS)


@dataclass(frozen=True)
class Call:
    """One request as the fuzzer means it; the test gives it a fresh id (unless a notification)."""

    method: Any
    params: Any = ABSENT
    notification: bool = False


def _call(method: str) -> st.SearchStrategy[Call]:
    params = often(
        METHOD_PARAMS[method], st.just(ABSENT) | st.lists(hostile, max_size=3) | hostile, 8
    )
    return st.builds(Call, st.just(method), params, st.sampled_from([False, False, True]))


#: Valid-shaped calls of every method (about one in three a notification).
calls = st.sampled_from(METHODS).flatmap(_call)

#: Whole request objects of arbitrary JSON: odd ids, odd versions, odd methods.
request_objects = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", "2", ""]) | hostile,
        "method": st.sampled_from(METHODS)
        | st.sampled_from(["", "Ping", "ping ", "__init__", "rpc.x"])
        | hostile,
        "params": any_json | deep | st.lists(hostile, max_size=2),
        "id": st.sampled_from(
            [0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**41, 1.5, -0.0, "", None, True]
        )
        | hostile,
        "result": hostile,
        "error": hostile,
    },
)
