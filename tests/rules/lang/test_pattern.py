"""EventBridge event patterns from the AWS documentation ("Creating event patterns",
"Comparison operators"), so the project stands alone without the conformance data."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from eventbus_server.rules.lang.operators import (
    MISSING,
    PatternError,
    compile_alternatives,
    compile_operator,
)
from eventbus_server.rules.lang.pattern import Failure, compile_pattern

# (id, pattern, event, expected match)
MATCHING: list[tuple[str, dict[str, Any], Any, bool]] = [
    # --- literals: strings, numbers, booleans, null, "" ---
    ("string", {"source": ["aws.ec2"]}, {"source": "aws.ec2"}, True),
    ("string other", {"source": ["aws.ec2"]}, {"source": "aws.s3"}, False),
    ("string case-sensitive", {"source": ["aws.ec2"]}, {"source": "AWS.EC2"}, False),
    ("any of", {"source": ["aws.ec2", "aws.fargate"]}, {"source": "aws.fargate"}, True),
    ("key case-sensitive", {"Source": ["a"]}, {"source": "a"}, False),
    ("int equals float", {"n": [300]}, {"n": 300.0}, True),
    ("float equals int", {"n": [2.0]}, {"n": 2}, True),
    ("number is not string", {"n": [300]}, {"n": "300"}, False),
    ("string is not number", {"n": ["300"]}, {"n": 300}, False),
    ("true is not 1", {"b": [True]}, {"b": 1}, False),
    ("1 is not true", {"b": [1]}, {"b": True}, False),
    ("false", {"b": [False]}, {"b": False}, True),
    ("false is not 0", {"b": [False]}, {"b": 0}, False),
    ("null", {"v": [None]}, {"v": None}, True),
    ("null is not missing", {"v": [None]}, {}, False),
    ("null is not the string", {"v": [None]}, {"v": "null"}, False),
    ("empty string", {"v": [""]}, {"v": ""}, True),
    ("empty string is not null", {"v": [""]}, {"v": None}, False),
    ("empty string is not missing", {"v": [""]}, {}, False),
    ("mixed literals", {"v": ["a", 1, None, True]}, {"v": None}, True),
    ("mixed literals miss", {"v": ["a", 1, None, True]}, {"v": False}, False),
    # --- nesting ---
    ("nested", {"detail": {"state": ["running"]}}, {"detail": {"state": "running"}}, True),
    ("nested AND", {"a": ["1"], "detail": {"b": ["2"]}}, {"a": "1", "detail": {"b": "3"}}, False),
    ("nested parent missing", {"detail": {"state": ["x"]}}, {}, False),
    ("nested parent scalar", {"detail": {"state": ["x"]}}, {"detail": "x"}, False),
    ("JSON in a string is opaque", {"detail": {"k": ["v"]}}, {"detail": '{"k": "v"}'}, False),
    ("leaf is an object", {"detail": [{"exists": True}]}, {"detail": {"a": 1}}, False),
    ("extra event fields ignored", {"a": ["1"]}, {"a": "1", "b": {"c": [1]}}, True),
    (
        "dotted pattern key",
        {"detail": {"state.status": ["ok"]}},
        {"detail": {"state": {"status": "ok"}}},
        True,
    ),
    (
        "dotted event key",
        {"detail": {"state": {"status": ["ok"]}}},
        {"detail": {"state.status": "ok"}},
        True,
    ),
    (
        "dotted and nested merge",
        {"a.b": ["1"], "a": {"c": ["2"]}},
        {"a": {"b": "1", "c": "2"}},
        True,
    ),
    (
        "dotted and nested merge miss",
        {"a.b": ["1"], "a": {"c": ["2"]}},
        {"a": {"b": "1", "c": "3"}},
        False,
    ),
    # --- arrays in the event ---
    ("array any element", {"r": ["b"]}, {"r": ["a", "b"]}, True),
    ("array no element", {"r": ["c"]}, {"r": ["a", "b"]}, False),
    ("array intersection", {"r": ["x", "b"]}, {"r": ["a", "b"]}, True),
    ("nested arrays opened", {"r": [3]}, {"r": [[1, 2], [3]]}, True),
    ("empty array is missing", {"r": [{"exists": True}]}, {"r": []}, False),
    ("empty array exists false", {"r": [{"exists": False}]}, {"r": []}, True),
    ("array of objects", {"items": {"id": ["2"]}}, {"items": [{"id": "1"}, {"id": "2"}]}, True),
    (
        "array consistency",
        {"employees": {"first": ["Anna"], "last": ["Jones"]}},
        {"employees": [{"first": "Anna", "last": "Smith"}, {"first": "Ed", "last": "Jones"}]},
        False,
    ),
    (
        "array consistency same element",
        {"employees": {"first": ["Anna"], "last": ["Smith"]}},
        {"employees": [{"first": "Ed", "last": "Jones"}, {"first": "Anna", "last": "Smith"}]},
        True,
    ),
    # --- prefix / suffix / equals-ignore-case ---
    ("prefix", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"}, True),
    ("prefix miss", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-03T18:43:48Z"}, False),
    ("prefix empty matches any string", {"s": [{"prefix": ""}]}, {"s": "x"}, True),
    ("prefix empty not a number", {"s": [{"prefix": ""}]}, {"s": 1}, False),
    ("prefix not a number", {"n": [{"prefix": "1"}]}, {"n": 12}, False),
    (
        "prefix ignore case",
        {"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
        {"s": "eventbridge"},
        True,
    ),
    (
        "prefix ignore case miss",
        {"s": [{"prefix": {"equals-ignore-case": "EventB"}}]},
        {"s": "xeventb"},
        False,
    ),
    ("suffix", {"f": [{"suffix": ".png"}]}, {"f": "image.png"}, True),
    ("suffix case-sensitive", {"f": [{"suffix": ".png"}]}, {"f": "image.PNG"}, False),
    (
        "suffix ignore case",
        {"f": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"f": "image.PnG"},
        True,
    ),
    ("equals-ignore-case", {"n": [{"equals-ignore-case": "alice"}]}, {"n": "ALICE"}, True),
    ("equals-ignore-case miss", {"n": [{"equals-ignore-case": "alice"}]}, {"n": "alicia"}, False),
    ("equals-ignore-case not null", {"n": [{"equals-ignore-case": "null"}]}, {"n": None}, False),
    # --- wildcard ---
    ("wildcard", {"f": [{"wildcard": "dir/*.png"}]}, {"f": "dir/a/b.png"}, True),
    ("wildcard miss", {"f": [{"wildcard": "dir/*.png"}]}, {"f": "dir/a.jpg"}, False),
    ("wildcard whole value", {"f": [{"wildcard": "a*"}]}, {"f": "ba"}, False),
    ("wildcard empty run", {"f": [{"wildcard": "a*b"}]}, {"f": "ab"}, True),
    ("wildcard across newline", {"f": [{"wildcard": "a*b"}]}, {"f": "a\nb"}, True),
    ("wildcard regex chars literal", {"f": [{"wildcard": "a.c*"}]}, {"f": "abcd"}, False),
    ("wildcard escaped star", {"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"}, True),
    ("wildcard escaped star literal", {"f": [{"wildcard": "a\\*b"}]}, {"f": "axb"}, False),
    ("wildcard escaped backslash", {"f": [{"wildcard": "a\\\\*"}]}, {"f": "a\\xyz"}, True),
    ("wildcard middle parts in order", {"f": [{"wildcard": "*ab*ba*"}]}, {"f": "xbaxab"}, False),
    (
        "wildcard prefix and suffix do not overlap",
        {"f": [{"wildcard": "ab*ba"}]},
        {"f": "aba"},
        False,
    ),
    ("wildcard middle part between them", {"f": [{"wildcard": "a*b*a"}]}, {"f": "aba"}, True),
    ("wildcard empty", {"f": [{"wildcard": ""}]}, {"f": ""}, True),
    ("wildcard not a number", {"f": [{"wildcard": "*"}]}, {"f": 1}, False),
    # --- anything-but ---
    ("anything-but string", {"s": [{"anything-but": "init"}]}, {"s": "run"}, True),
    ("anything-but string hit", {"s": [{"anything-but": "init"}]}, {"s": "init"}, False),
    ("anything-but missing", {"s": [{"anything-but": "init"}]}, {}, False),
    ("anything-but null", {"s": [{"anything-but": "init"}]}, {"s": None}, True),
    ("anything-but other type", {"s": [{"anything-but": 123}]}, {"s": "123"}, True),
    ("anything-but number", {"n": [{"anything-but": 123}]}, {"n": 123.0}, False),
    ("anything-but list", {"s": [{"anything-but": ["a", "b"]}]}, {"s": "b"}, False),
    ("anything-but list other", {"s": [{"anything-but": ["a", "b"]}]}, {"s": "c"}, True),
    ("anything-but array any element", {"s": [{"anything-but": "a"}]}, {"s": ["a", "b"]}, True),
    ("anything-but array all excluded", {"s": [{"anything-but": "a"}]}, {"s": ["a", "a"]}, False),
    ("anything-but prefix", {"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "eu-west-1"}, True),
    (
        "anything-but prefix hit",
        {"r": [{"anything-but": {"prefix": "us-"}}]},
        {"r": "us-east-1"},
        False,
    ),
    ("anything-but prefix number", {"r": [{"anything-but": {"prefix": "1"}}]}, {"r": 12}, True),
    (
        "anything-but prefix list",
        {"r": [{"anything-but": {"prefix": ["us-", "eu-"]}}]},
        {"r": "eu-1"},
        False,
    ),
    ("anything-but suffix", {"f": [{"anything-but": {"suffix": ".png"}}]}, {"f": "a.jpg"}, True),
    (
        "anything-but suffix hit",
        {"f": [{"anything-but": {"suffix": ".png"}}]},
        {"f": "a.png"},
        False,
    ),
    (
        "anything-but ignore case",
        {"s": [{"anything-but": {"equals-ignore-case": "init"}}]},
        {"s": "INIT"},
        False,
    ),
    (
        "anything-but ignore case list",
        {"s": [{"anything-but": {"equals-ignore-case": ["a", "b"]}}]},
        {"s": "C"},
        True,
    ),
    (
        "anything-but wildcard",
        {"p": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"p": "/usr/bin/x"},
        True,
    ),
    (
        "anything-but wildcard hit",
        {"p": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"p": "/usr/lib/x"},
        False,
    ),
    # --- numeric ---
    ("numeric >", {"n": [{"numeric": [">", 0]}]}, {"n": 0.000001}, True),
    ("numeric > bound", {"n": [{"numeric": [">", 0]}]}, {"n": 0}, False),
    ("numeric >=", {"n": [{"numeric": [">=", 0]}]}, {"n": 0}, True),
    ("numeric <", {"n": [{"numeric": ["<", 10]}]}, {"n": 10}, False),
    ("numeric <=", {"n": [{"numeric": ["<=", 10]}]}, {"n": 10.0}, True),
    ("numeric =", {"n": [{"numeric": ["=", 301.8]}]}, {"n": 301.8}, True),
    ("numeric range", {"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5}, True),
    ("numeric range out", {"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5.5}, False),
    ("numeric range upper first", {"n": [{"numeric": ["<", 5, ">=", 1]}]}, {"n": 1}, True),
    ("numeric negative", {"n": [{"numeric": [">=", -5e9, "<", -1]}]}, {"n": -2}, True),
    ("numeric string", {"n": [{"numeric": [">", 0]}]}, {"n": "5"}, False),
    ("numeric bool", {"n": [{"numeric": [">", 0]}]}, {"n": True}, False),
    ("numeric null", {"n": [{"numeric": [">", 0]}]}, {"n": None}, False),
    ("numeric beyond limit", {"n": [{"numeric": [">", 0]}]}, {"n": 6e9}, False),
    ("numeric array", {"n": [{"numeric": [">", 10]}]}, {"n": [1, 20]}, True),
    # --- cidr ---
    ("cidr v4", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.255"}, True),
    ("cidr v4 out", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.0"}, False),
    ("cidr v4 invalid address", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.256"}, False),
    ("cidr v4 leading zero", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.01"}, False),
    ("cidr v4 /32", {"ip": [{"cidr": "10.0.0.7/32"}]}, {"ip": "10.0.0.7"}, True),
    ("cidr v4 /0", {"ip": [{"cidr": "0.0.0.0/0"}]}, {"ip": "203.0.113.9"}, True),
    ("cidr v4 /0 not an address", {"ip": [{"cidr": "0.0.0.0/0"}]}, {"ip": "nope"}, False),
    ("cidr v4 host bits", {"ip": [{"cidr": "10.0.0.9/24"}]}, {"ip": "10.0.0.1"}, True),
    ("cidr v4 not v6", {"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "::ffff:10.0.0.1"}, False),
    ("cidr number", {"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": 10}, False),
    (
        "cidr v6",
        {"ip": [{"cidr": "2001:db8:1234:1a00::/64"}]},
        {"ip": "2001:db8:1234:1a00::1"},
        True,
    ),
    (
        "cidr v6 long form",
        {"ip": [{"cidr": "2001:db8::/32"}]},
        {"ip": "2001:0DB8:0000:0000:0000:0000:0000:0001"},
        True,
    ),
    (
        "cidr v6 out",
        {"ip": [{"cidr": "2001:db8:1234:1a00::/64"}]},
        {"ip": "2001:db8:1234:1a01::"},
        False,
    ),
    ("cidr v6 v4 tail", {"ip": [{"cidr": "::ffff:0:0/96"}]}, {"ip": "::ffff:192.0.2.1"}, True),
    ("cidr v6 loopback", {"ip": [{"cidr": "::1/128"}]}, {"ip": "::1"}, True),
    ("cidr v6 not v4", {"ip": [{"cidr": "::/0"}]}, {"ip": "10.0.0.1"}, False),
    ("cidr v6 garbage", {"ip": [{"cidr": "::/0"}]}, {"ip": "1::2::3"}, False),
    # --- exists ---
    ("exists", {"s": [{"exists": True}]}, {"s": "x"}, True),
    ("exists null", {"s": [{"exists": True}]}, {"s": None}, True),
    ("exists missing", {"s": [{"exists": True}]}, {}, False),
    ("exists false missing", {"s": [{"exists": False}]}, {}, True),
    ("exists false present", {"s": [{"exists": False}]}, {"s": ""}, False),
    ("exists false parent missing", {"a": {"b": {"c": [{"exists": False}]}}}, {"x": 1}, True),
    ("exists false parent scalar", {"a": {"b": [{"exists": False}]}}, {"a": "s"}, True),
    ("exists or value", {"s": ["x", {"exists": False}]}, {}, True),
    ("exists or value hit", {"s": ["x", {"exists": False}]}, {"s": "x"}, True),
    ("exists or value miss", {"s": ["x", {"exists": False}]}, {"s": "y"}, False),
    ("after exists ignored", {"s": [{"exists": True}, {"prefix": "zzz"}]}, {"s": "a"}, True),
    # --- $or ---
    ("$or first", {"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"a": "1"}, True),
    ("$or second", {"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "2"}, True),
    ("$or neither", {"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"a": "2", "b": "1"}, False),
    (
        "$or with sibling",
        {"s": ["x"], "$or": [{"a": ["1"]}, {"b": ["2"]}]},
        {"s": "y", "a": "1"},
        False,
    ),
    (
        "$or nested",
        {
            "detail": {
                "$or": [{"c": [{"numeric": [">", 0, "<=", 5]}]}, {"d": [{"numeric": ["<", 10]}]}]
            }
        },
        {"detail": {"c": 0, "d": 9}},
        True,
    ),
    (
        "$or inside $or",
        {"$or": [{"a": ["1"]}, {"$or": [{"b": ["2"]}, {"c": ["3"]}]}]},
        {"c": "3"},
        True,
    ),
]


@pytest.mark.parametrize(
    ("pattern", "event", "expected"), [c[1:] for c in MATCHING], ids=[c[0] for c in MATCHING]
)
def test_matches(pattern: dict[str, Any], event: Any, expected: bool) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.matches(event) is expected
    assert (compiled.explain(event) == []) is expected


# (id, pattern, error path, reason fragment)
INVALID: list[tuple[str, Any, str, str]] = [
    ("not an object", ["a"], "pattern", "must be a JSON object"),
    ("empty pattern", {}, "pattern", "Empty objects are not allowed"),
    ("empty nested", {"detail": {}}, "pattern.detail", "Empty objects are not allowed"),
    ("scalar leaf", {"detail": {"n": 42}}, "pattern.detail.n", '"n" must be an object or an array'),
    ("string leaf", {"s": "x"}, "pattern.s", '"s" must be an object or an array'),
    ("empty array", {"s": []}, "pattern.s", "Empty arrays are not allowed"),
    ("array in array", {"s": [["a"]]}, "pattern.s[0]", "Match value must be String"),
    (
        "unknown operator",
        {"s": [{"EXISTS": True}]},
        "pattern.s[0].EXISTS",
        "Unrecognized match type EXISTS",
    ),
    ("empty operator", {"s": [{}]}, "pattern.s[0]", "Empty objects are not allowed"),
    ("two operators", {"s": [{"prefix": "a", "suffix": "b"}]}, "pattern.s[0]", "exactly one key"),
    (
        "prefix number",
        {"s": [{"prefix": 1}]},
        "pattern.s[0].prefix",
        "prefix match pattern must be a string",
    ),
    (
        "prefix list",
        {"s": [{"prefix": ["a"]}]},
        "pattern.s[0].prefix",
        "prefix match pattern must be a string",
    ),
    (
        "prefix ignore case number",
        {"s": [{"prefix": {"equals-ignore-case": 1}}]},
        "pattern.s[0].prefix.equals-ignore-case",
        "equals-ignore-case match pattern must be a string",
    ),
    (
        "suffix object",
        {"s": [{"suffix": {"x": "a"}}]},
        "pattern.s[0].suffix",
        "suffix match pattern must be a string",
    ),
    (
        "ignore case list",
        {"s": [{"equals-ignore-case": ["a"]}]},
        "pattern.s[0].equals-ignore-case",
        "must be a string",
    ),
    (
        "wildcard number",
        {"s": [{"wildcard": 1}]},
        "pattern.s[0].wildcard",
        "wildcard match pattern must be a string",
    ),
    (
        "wildcard **",
        {"s": [{"wildcard": "ab**"}]},
        "pattern.s[0].wildcard",
        "Consecutive wildcard characters at pos 3",
    ),
    (
        "wildcard bad escape",
        {"s": [{"wildcard": "a\\b"}]},
        "pattern.s[0].wildcard",
        "Invalid escape character at pos 1",
    ),
    (
        "wildcard trailing escape",
        {"s": [{"wildcard": "a\\"}]},
        "pattern.s[0].wildcard",
        "Invalid escape character",
    ),
    (
        "wildcard too complex",
        {"s": [{"wildcard": "*a*b*c*d*e*"}]},
        "pattern.s[0].wildcard",
        "Rule is too complex",
    ),
    ("exists string", {"s": [{"exists": "true"}]}, "pattern.s[0].exists", "either true or false"),
    (
        "anything-but null",
        {"s": [{"anything-but": None}]},
        "pattern.s[0].anything-but",
        "array or single string/number",
    ),
    (
        "anything-but bool",
        {"s": [{"anything-but": True}]},
        "pattern.s[0].anything-but",
        "array or single string/number",
    ),
    (
        "anything-but empty",
        {"s": [{"anything-but": []}]},
        "pattern.s[0].anything-but",
        "Empty arrays are not allowed",
    ),
    (
        "anything-but list null",
        {"s": [{"anything-but": ["a", None]}]},
        "pattern.s[0].anything-but[1]",
        "start|null|boolean is not supported",
    ),
    (
        "anything-but empty prefix",
        {"s": [{"anything-but": {"prefix": ""}}]},
        "pattern.s[0].anything-but.prefix",
        "Null prefix/suffix not allowed",
    ),
    (
        "anything-but prefix ignore case",
        {"s": [{"anything-but": {"prefix": {"equals-ignore-case": "a"}}}]},
        "pattern.s[0].anything-but.prefix",
        "array or single string/number",
    ),
    (
        "anything-but suffix list number",
        {"s": [{"anything-but": {"suffix": [1, ".png"]}}]},
        "pattern.s[0].anything-but.suffix[0]",
        "prefix/suffix match pattern must be a string",
    ),
    (
        "anything-but ignore case number",
        {"s": [{"anything-but": {"equals-ignore-case": 1}}]},
        "pattern.s[0].anything-but.equals-ignore-case",
        "number|start|null|boolean is not supported",
    ),
    (
        "anything-but numeric",
        {"s": [{"anything-but": {"numeric": [">", 1]}}]},
        "pattern.s[0].anything-but.numeric",
        "Unsupported anything-but pattern: numeric",
    ),
    (
        "numeric scalar",
        {"n": [{"numeric": 10}]},
        "pattern.n[0].numeric",
        "Value of numeric must be an array.",
    ),
    (
        "numeric empty",
        {"n": [{"numeric": []}]},
        "pattern.n[0].numeric",
        "numeric takes [op, number]",
    ),
    (
        "numeric bad op",
        {"n": [{"numeric": ["!=", 1]}]},
        "pattern.n[0].numeric[0]",
        "Unrecognized numeric range operator",
    ),
    (
        "numeric string",
        {"n": [{"numeric": [">", "1"]}]},
        "pattern.n[0].numeric[1]",
        "Value of > must be numeric",
    ),
    (
        "numeric bool",
        {"n": [{"numeric": [">", True]}]},
        "pattern.n[0].numeric[1]",
        "Value of > must be numeric",
    ),
    (
        "numeric dangling",
        {"n": [{"numeric": [">", 0, "<"]}]},
        "pattern.n[0].numeric[3]",
        "Value of < must be numeric",
    ),
    (
        "numeric two lower",
        {"n": [{"numeric": [">", 0, ">", 1]}]},
        "pattern.n[0].numeric",
        "Bad numeric range operator: >",
    ),
    (
        "numeric = in range",
        {"n": [{"numeric": ["=", 0, "<", 1]}]},
        "pattern.n[0].numeric",
        "Bad numeric range operator: =",
    ),
    (
        "numeric empty range",
        {"n": [{"numeric": [">", 5, "<", 5]}]},
        "pattern.n[0].numeric",
        "lower bound",
    ),
    (
        "numeric too big",
        {"n": [{"numeric": ["<", 6e9]}]},
        "pattern.n[0].numeric[1]",
        "between -5.0e9 and 5.0e9",
    ),
    (
        "cidr list",
        {"ip": [{"cidr": ["10.0.0.0/8"]}]},
        "pattern.ip[0].cidr",
        "cidr match pattern must be a string",
    ),
    ("cidr no slash", {"ip": [{"cidr": "10.0.0.0"}]}, "pattern.ip[0].cidr", "one '/' required"),
    (
        "cidr bad mask",
        {"ip": [{"cidr": "10.0.0.0/x"}]},
        "pattern.ip[0].cidr",
        "mask bits must be an integer",
    ),
    (
        "cidr mask too long",
        {"ip": [{"cidr": "10.0.0.0/33"}]},
        "pattern.ip[0].cidr",
        "Malformed CIDR",
    ),
    (
        "cidr bad address",
        {"ip": [{"cidr": "xx.1.xx/8"}]},
        "pattern.ip[0].cidr",
        "Nonstandard IP address: xx.1.xx",
    ),
    (
        "cidr bad v6",
        {"ip": [{"cidr": "xxxx:db8::/64"}]},
        "pattern.ip[0].cidr",
        "Nonstandard IP address: xxxx:db8::",
    ),
    ("$or one branch", {"$or": [{"a": ["1"]}]}, "pattern.$or", "at least two"),
    ("$or not list", {"$or": {"a": ["1"]}}, "pattern.$or", "at least two"),
    ("$or literal", {"$or": [{"a": ["1"]}, "b"]}, "pattern.$or[1]", "must be a pattern object"),
    (
        "$or bad branch",
        {"$or": [{"a": ["1"]}, {"b": 2}]},
        "pattern.$or[1].b",
        '"b" must be an object or an array',
    ),
    (
        "deep path",
        {"payload": {"size": [{"numeric": 1}]}},
        "pattern.payload.size[0].numeric",
        "must be an array",
    ),
    (
        "ignored still checked",
        {"s": [{"exists": True}, {"prefix": 1}]},
        "pattern.s[1].prefix",
        "must be a string",
    ),
]


@pytest.mark.parametrize(
    ("pattern", "path", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid(pattern: Any, path: str, reason: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(caught.value) == f"{path}: {caught.value.reason}"


def test_error_path_prefix_is_configurable() -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern({"a": 1}, path="rule.pattern")
    assert caught.value.path == "rule.pattern.a"


# (id, pattern, event, expected failures)
EXPLAINED: list[tuple[str, dict[str, Any], Any, list[Failure]]] = [
    (
        "wrong value",
        {"payload": {"branch": ["main"]}},
        {"payload": {"branch": "dev"}},
        [Failure("payload.branch", ["main"], "dev")],
    ),
    (
        "missing field",
        {"source": [{"prefix": "trn:user:"}], "payload": {"branch": ["main"]}},
        {"source": "trn:user:alice", "payload": {}},
        [Failure("payload.branch", ["main"], MISSING)],
    ),
    (
        "every failing field",
        {"a": ["1"], "b": [{"numeric": [">", 5]}]},
        {"a": "2", "b": 1},
        [Failure("a", ["1"], "2"), Failure("b", [{"numeric": [">", 5]}], 1)],
    ),
    (
        "array-valued",
        {"tags": ["prod"]},
        {"tags": ["dev", "test"]},
        [Failure("tags", ["prod"], ["dev", "test"])],
    ),
    (
        "parent not an object",
        {"detail": {"k": ["v"]}},
        {"detail": "text"},
        [Failure("detail.k", ["v"], MISSING)],
    ),
    (
        "$or alternatives",
        {"$or": [{"a": ["1"]}, {"payload": {"kind": ["push"]}}]},
        {"a": "2", "payload": {"kind": "tag"}},
        [Failure("$or[0].a", ["1"], "2"), Failure("$or[1].payload.kind", ["push"], "tag")],
    ),
    (
        "closest array element",
        {"items": {"id": ["9"], "ok": [True]}},
        {"items": [{"id": "1", "ok": False}, {"id": "2", "ok": True}]},
        [Failure("items[1].id", ["9"], "2")],
    ),
    (
        "dotted pattern key",
        {"detail.state": ["on"]},
        {"detail": {"state": "off"}},
        [Failure("detail.state", ["on"], "off")],
    ),
]


@pytest.mark.parametrize(
    ("pattern", "event", "failures"), [c[1:] for c in EXPLAINED], ids=[c[0] for c in EXPLAINED]
)
def test_explain(pattern: dict[str, Any], event: Any, failures: list[Failure]) -> None:
    assert compile_pattern(pattern).explain(event) == failures


def test_missing_repr() -> None:
    assert repr(MISSING) == "missing"


def test_operator_api_for_conditions() -> None:
    # match_fields conditions use the operators one by one.
    prefix = compile_operator("prefix", "trn:user:", "match_fields.source_trn.prefix")
    assert prefix("trn:user:alice") and not prefix("trn:org:x") and not prefix.matches_missing
    absent = compile_operator("exists", False, "x.exists")
    assert absent.matches_missing and not absent("anything")
    either = compile_alternatives(["push", {"suffix": "-tag"}], "x")
    assert either("push") and either("v1-tag") and not either("pull")
    with pytest.raises(PatternError, match=r"^x\.nope: Unrecognized match type nope$"):
        compile_operator("nope", 1, "x.nope")


@pytest.mark.parametrize(
    "address",
    [
        "::",
        "::1",
        "1::",
        "fe80::1:2",
        "2001:db8:0:0:1:0:0:1",
        "::ffff:1.2.3.4",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:1.2.3.4",
        "1.2.3.4",
        "255.255.255.255",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        ":1",
        "1:",
        "12345::",
        "::1.2.3",
        "g::",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "",
        "::1.2.3.4:5",
        "1:2:3:4:5:6:7::8",
    ],
)
def test_cidr_parses_addresses_like_ipaddress(address: str) -> None:
    try:
        parsed: Any = ipaddress.ip_address(address)
    except ValueError:
        parsed = None
    v4 = compile_operator("cidr", "0.0.0.0/0", "c")
    v6 = compile_operator("cidr", "::/0", "c")
    assert v4(address) is (parsed is not None and parsed.version == 4)
    assert v6(address) is (parsed is not None and parsed.version == 6)


@pytest.mark.parametrize(
    ("wildcard", "long", "short"),
    [("*a*a*a*a*a", False, True), ("a*a*a*a*a*", True, True), ("*aa*aa*aa*ab", True, False)],
)
def test_wildcards_match_in_linear_time(wildcard: str, long: bool, short: bool) -> None:
    """Found by tests/hostile/test_fuzz.py: the regex form backtracked exponentially
    (17 s for 200 characters, minutes for 400), in the event loop every bus shares."""
    import time

    test = compile_alternatives([{"wildcard": wildcard}], "f")
    started = time.monotonic()
    assert test("a" * 100_000 + "b") is long
    assert test("a" * 10) is short
    assert time.monotonic() - started < 1.0
