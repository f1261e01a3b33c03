"""Topic names and NATS-style topic patterns (DESIGN.md §4)."""

from __future__ import annotations

import pytest

from eventbus_core.topics import (
    MAX_TOPIC_LENGTH,
    compile_topic_pattern,
    is_reserved_topic,
    literal_prefix,
    topic_matches,
    validate_topic,
    validate_topic_pattern,
)

VALID_TOPICS = [
    pytest.param("a", id="one-char"),
    pytest.param("repo.pushed", id="two-tokens"),
    pytest.param("a.b.c.d.e.f", id="many-tokens"),
    pytest.param("A-Z_0-9", id="dash-underscore"),
    pytest.param("ns:events/created", id="colon-slash"),
    pytest.param("_sys.lagged", id="reserved-prefix-is-still-a-valid-name"),
    pytest.param("x" * MAX_TOPIC_LENGTH, id="exactly-255"),
    pytest.param(".".join(["ab"] * 85), id="255-with-dots"),
]

INVALID_TOPICS = [
    pytest.param("", "must not be empty", id="empty"),
    pytest.param("x" * (MAX_TOPIC_LENGTH + 1), "256 characters long; the limit is 255", id="256"),
    pytest.param(".a", "token 1 is empty", id="leading-dot"),
    pytest.param("a.", "token 2 is empty", id="trailing-dot"),
    pytest.param("a..b", "token 2 is empty", id="double-dot"),
    pytest.param(".", "token 1 is empty", id="dot-only"),
    pytest.param("a b", "token 1 ('a b')", id="space"),
    pytest.param("a.b\tc", "token 2", id="tab"),
    pytest.param("a\n", "token 1", id="newline"),
    pytest.param("a.b ", "token 2", id="trailing-space"),
    pytest.param("ä.b", "token 1 ('ä')", id="unicode"),
    pytest.param("a.b+c", "token 2 ('b+c')", id="plus"),
    pytest.param("a.b#", "token 2", id="hash"),
    pytest.param("*", "wildcards", id="star"),
    pytest.param(">", "wildcards", id="gt"),
    pytest.param("a.*", "wildcards", id="star-token"),
    pytest.param("a.>", "wildcards", id="gt-token"),
    pytest.param("a.*.c", "wildcards", id="star-middle"),
    pytest.param("a*", "token 1 ('a*')", id="star-inside-token"),
    pytest.param("a.b>", "token 2 ('b>')", id="gt-inside-token"),
]


@pytest.mark.parametrize("topic", VALID_TOPICS)
def test_valid_topic(topic: str) -> None:
    assert validate_topic(topic) == topic


@pytest.mark.parametrize(("topic", "reason"), INVALID_TOPICS)
def test_invalid_topic_says_why(topic: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_topic(topic)
    assert reason in str(info.value)


@pytest.mark.parametrize("value", [None, 1, b"a.b", ["a"]], ids=["none", "int", "bytes", "list"])
def test_topic_must_be_a_string(value: object) -> None:
    with pytest.raises(ValueError, match="a topic must be a string"):
        validate_topic(value)
    with pytest.raises(ValueError, match="a topic pattern must be a string"):
        validate_topic_pattern(value)


VALID_PATTERNS = [
    "*",
    ">",
    "a",
    "a.b",
    "a.>",
    "a.*",
    "*.b",
    "a.*.c",
    "*.*",
    "*.>",
    "_sys.>",
    "a.*.>",
]


@pytest.mark.parametrize("pattern", VALID_PATTERNS)
def test_valid_topic_pattern(pattern: str) -> None:
    assert validate_topic_pattern(pattern) == pattern


INVALID_PATTERNS = [
    pytest.param("", "must not be empty", id="empty"),
    pytest.param("x" * 256, "the limit is 255", id="too-long"),
    pytest.param(">.a", "'>' may only be the last token", id="gt-first"),
    pytest.param("a.>.b", "'>' may only be the last token", id="gt-middle"),
    pytest.param(">.>", "'>' may only be the last token", id="gt-twice"),
    pytest.param("a*", "token 1 ('a*')", id="partial-star"),
    pytest.param("a.b*", "token 2 ('b*')", id="partial-star-last"),
    pytest.param("a.>>", "token 2 ('>>')", id="double-gt"),
    pytest.param("**", "token 1 ('**')", id="double-star"),
    pytest.param("a..b", "token 2 is empty", id="empty-token"),
    pytest.param("a.", "token 2 is empty", id="trailing-dot"),
    pytest.param("a b.>", "token 1", id="space"),
]


@pytest.mark.parametrize(("pattern", "reason"), INVALID_PATTERNS)
def test_invalid_topic_pattern_says_why(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_topic_pattern(pattern)
    assert reason in str(info.value)
    with pytest.raises(ValueError):
        compile_topic_pattern(pattern)


MATCH_TABLE = [
    # exact
    ("a.b", "a.b", True),
    ("a.b", "a.bc", False),
    ("a.b", "a.b.c", False),
    ("a.b", "a", False),
    # '*' is exactly one token
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.*", "ab.c", False),
    ("*.b", "a.b", True),
    ("*.b", "a.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.x-y.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False),
    ("a.*.c", "a.b.d", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    # '>' is one or more tokens
    ("a.>", "a.b", True),
    ("a.>", "a.b.c.d", True),
    ("a.>", "a", False),
    ("a.>", "ab.c", False),
    ("a.>", "b.a.c", False),
    ("a.b.>", "a.b.c", True),
    ("a.b.>", "a.bc.d", False),
    ("*.>", "a.b", True),
    ("*.>", "a.b.c", True),
    ("*.>", "a", False),
    ("a.*.>", "a.b.c", True),
    ("a.*.>", "a.b", False),
    (">", "a", True),
    (">", "a.b.c", True),
    ("repo.*", "repo.pushed", True),
    # the bus's own '_sys.' topics must be named explicitly
    (">", "_sys.lagged", False),
    (">", "_sys.a.b", False),
    ("*.x", "_sys.x", False),
    ("*.*", "_sys.x", False),
    ("*.>", "_sys.x", False),
    ("_sys.>", "_sys.x", True),
    ("_sys.>", "_sys.a.b", True),
    ("_sys.*", "_sys.x", True),
    ("_sys.x", "_sys.x", True),
    ("_sys.>", "sys.x", False),
    # look-alikes of the reserved prefix are ordinary topics
    (">", "_sys", True),
    ("*", "_sys", True),
    (">", "_system.x", True),
    (">", "sys.x", True),
    ("*.x", "_sysx.x", True),
]


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    MATCH_TABLE,
    ids=[f"{p} {'~' if e else '!~'} {t}" for p, t, e in MATCH_TABLE],
)
def test_topic_pattern_matching(pattern: str, topic: str, expected: bool) -> None:
    assert compile_topic_pattern(pattern)(topic) is expected
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("a.b.c", "a.b.c"),
        ("a", "a"),
        ("a.>", "a."),
        ("a.b.>", "a.b."),
        ("a.*.c", "a."),
        ("a.b.*", "a.b."),
        ("*", ""),
        (">", ""),
        ("*.b", ""),
        ("_sys.>", "_sys."),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


@pytest.mark.parametrize("pattern", VALID_PATTERNS)
def test_every_match_starts_with_the_literal_prefix(pattern: str) -> None:
    prefix = literal_prefix(pattern)
    for topic in ["a", "a.b", "a.b.c", "a.x.c", "z.b", "_sys.x", "a.b.c.d"]:
        if topic_matches(pattern, topic):
            assert topic.startswith(prefix)


@pytest.mark.parametrize(
    ("topic", "reserved"),
    [("_sys.x", True), ("_sys.a.b", True), ("_sys", False), ("sys.x", False), ("a._sys.x", False)],
)
def test_is_reserved_topic(topic: str, reserved: bool) -> None:
    assert is_reserved_topic(topic) is reserved
