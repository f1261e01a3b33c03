"""TRN strings and TRN patterns (DESIGN.md §4), table by table."""

from __future__ import annotations

import pytest

from eventbus_core.trn import (
    MAX_TRN_LENGTH,
    Trn,
    compile_trn_pattern,
    is_valid_trn,
    parse_trn,
    trn_matches,
    validate_trn,
    validate_trn_pattern,
)

VALID_TRNS = [
    pytest.param("trn:user:alice", id="two-segments"),
    pytest.param("trn:user:alice:openapi:github-api:get-repo:v1", id="design-example-1"),
    pytest.param("trn:org:acme:tool:workflow:etl:v2.1:prod@sha256:ab12", id="design-example-2"),
    pytest.param("trn:aiplatform:team-7", id="platform-aiplatform"),
    pytest.param("trn:a:b", id="one-char-segments"),
    pytest.param("trn:A:Z", id="upper-case"),
    pytest.param("trn:0:9", id="digits"),
    pytest.param("trn:user:alice.smith", id="dot-in-segment"),
    pytest.param("trn:user:alice_smith", id="underscore-in-segment"),
    pytest.param("trn:user:alice-smith", id="dash-in-segment"),
    pytest.param("trn:user:...", id="only-dots"),
    pytest.param("trn:user:-_.", id="only-punctuation"),
    pytest.param("trn:trn:trn", id="trn-as-segment"),
    pytest.param("trn:user:alice@sha256:ab12", id="hash-two-segments"),
    pytest.param("trn:user:alice@md5:0", id="hash-one-digit"),
    pytest.param("trn:user:alice@sha256:ABCDEF0123456789", id="hash-upper-hex"),
    pytest.param("trn:user:alice@SHA3:abc", id="hash-algo-upper"),
    pytest.param("trn:user:alice@blake2b512:ff", id="hash-algo-with-digits"),
    pytest.param("trn:x:" + "y" * (MAX_TRN_LENGTH - 6), id="exactly-max-length"),
    pytest.param("trn:" + ":".join(["s"] * 100), id="hundred-segments"),
]

INVALID_TRNS = [
    pytest.param("", "must start with 'trn:'", id="empty"),
    pytest.param("trn", "must start with 'trn:'", id="bare-trn"),
    pytest.param("trn:", "at least two segments", id="trn-colon-only"),
    pytest.param("TRN:user:alice", "must start with 'trn:'", id="upper-case-scheme"),
    pytest.param("urn:user:alice", "must start with 'trn:'", id="urn-scheme"),
    pytest.param(" trn:user:alice", "must start with 'trn:'", id="leading-space"),
    pytest.param("trn:user", "at least two segments", id="one-segment"),
    pytest.param("trn:user@sha256:ab", "at least two segments", id="one-segment-with-hash"),
    pytest.param("trn:user:", "segment 2 is empty", id="trailing-colon"),
    pytest.param("trn::alice", "segment 1 is empty", id="empty-platform"),
    pytest.param("trn:user::alice", "segment 2 is empty", id="double-colon"),
    pytest.param("trn:user:alice:", "segment 3 is empty", id="trailing-colon-three"),
    pytest.param("trn:user:al ice", "segment 2 ('al ice')", id="space-in-segment"),
    pytest.param("trn:user:alice ", "segment 2", id="trailing-space"),
    pytest.param("trn:user:alice\n", "segment 2", id="trailing-newline"),
    pytest.param("trn:user:al/ice", "segment 2", id="slash"),
    pytest.param("trn:user:al*", "segment 2 ('al*')", id="star-in-segment"),
    pytest.param("trn:user:*", "segment 2 ('*')", id="wildcard-is-not-a-trn"),
    pytest.param("trn:us+er:alice", "segment 1 ('us+er')", id="plus"),
    pytest.param("trn:user:älice", "segment 2 ('älice')", id="unicode-letter"),
    pytest.param("trn:user:alice\u200b", "segment 2", id="zero-width-space"),
    pytest.param("trn:user:🙂", "segment 2", id="emoji"),
    pytest.param("trn:user:\uff41\uff4c\uff49\uff43\uff45", "segment 2", id="fullwidth-letters"),
    pytest.param("trn:user:alice@", "'@algo:hex'", id="hash-empty"),
    pytest.param("trn:user:alice@sha256", "'@algo:hex'", id="hash-without-digest"),
    pytest.param("trn:user:alice@sha256:", "'@algo:hex'", id="hash-empty-digest"),
    pytest.param("trn:user:alice@:ab12", "'@algo:hex'", id="hash-empty-algo"),
    pytest.param("trn:user:alice@sha256:xyz", "'@algo:hex'", id="hash-not-hex"),
    pytest.param("trn:user:alice@sha-256:ab", "'@algo:hex'", id="hash-algo-dash"),
    pytest.param("trn:user:alice@sha256:ab:cd", "'@algo:hex'", id="hash-two-digests"),
    pytest.param("trn:user:alice@sha256:ab@md5:cd", "'@algo:hex'", id="two-hashes"),
    pytest.param("trn:user:alice@sha256:ab ", "'@algo:hex'", id="hash-trailing-space"),
    pytest.param("trn:user:alice@sha256:ab:extra", "'@algo:hex'", id="segment-after-hash"),
    pytest.param(
        "trn:x:" + "y" * (MAX_TRN_LENGTH - 5), "longer than 1024", id="one-over-max-length"
    ),
    pytest.param("trn:x:" + "y" * 100_000, "longer than 1024", id="very-long"),
]

NOT_STRINGS = [
    pytest.param(None, "NoneType", id="none"),
    pytest.param(42, "int", id="int"),
    pytest.param(b"trn:user:alice", "bytes", id="bytes"),
    pytest.param(["trn", "user", "alice"], "list", id="list"),
    pytest.param({"trn": "trn:user:alice"}, "dict", id="dict"),
]


@pytest.mark.parametrize("value", VALID_TRNS)
def test_valid_trn(value: str) -> None:
    assert validate_trn(value) == value
    assert is_valid_trn(value)


@pytest.mark.parametrize(("value", "reason"), INVALID_TRNS)
def test_invalid_trn_says_what_is_wrong(value: str, reason: str) -> None:
    assert not is_valid_trn(value)
    with pytest.raises(ValueError, match="invalid TRN") as info:
        validate_trn(value)
    assert reason in str(info.value)


@pytest.mark.parametrize(("value", "type_name"), NOT_STRINGS)
def test_trn_must_be_a_string(value: object, type_name: str) -> None:
    assert not is_valid_trn(value)
    with pytest.raises(ValueError, match=f"a TRN must be a string, not {type_name}"):
        validate_trn(value)


@pytest.mark.parametrize(
    ("value", "segments", "algo", "digest"),
    [
        pytest.param("trn:user:alice", ("user", "alice"), None, None, id="plain"),
        pytest.param(
            "trn:user:alice:openapi:github-api:get-repo:v1",
            ("user", "alice", "openapi", "github-api", "get-repo", "v1"),
            None,
            None,
            id="long",
        ),
        pytest.param(
            "trn:org:acme:tool:workflow:etl:v2.1:prod@sha256:ab12",
            ("org", "acme", "tool", "workflow", "etl", "v2.1", "prod"),
            "sha256",
            "ab12",
            id="with-hash",
        ),
        pytest.param("trn:a:b@md5:F0", ("a", "b"), "md5", "F0", id="short-with-hash"),
    ],
)
def test_parse_trn(
    value: str, segments: tuple[str, ...], algo: str | None, digest: str | None
) -> None:
    parsed = parse_trn(value)
    assert parsed == Trn(segments, algo, digest)
    assert parsed.platform == segments[0]
    assert parsed.scope == segments[1]
    assert parsed.hash_algo == algo and parsed.hash_digest == digest
    assert str(parsed) == value


@pytest.mark.parametrize("value", [p.values[0] for p in INVALID_TRNS[:10]])
def test_parse_trn_rejects_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="invalid TRN"):
        parse_trn(value)


def test_parsed_trn_is_frozen() -> None:
    parsed = parse_trn("trn:user:alice")
    with pytest.raises(AttributeError):
        parsed.segments = ("x", "y")  # type: ignore[misc]


# --- patterns ---------------------------------------------------------------

# (pattern, value, expected)
MATCH_TABLE = [
    # exact patterns
    ("trn:user:alice", "trn:user:alice", True),
    ("trn:user:alice", "trn:user:alicex", False),
    ("trn:user:alice", "trn:user:alice:tool", False),
    ("trn:user:alice", "trn:user:alic", False),
    ("trn:user:alice", "trn:user:alice@sha256:ab", False),
    ("trn:user:alice", "trn:User:alice", False),
    ("trn:user:alice@sha256:ab", "trn:user:alice@sha256:ab", True),
    ("trn:user:alice@sha256:ab", "trn:user:alice@sha256:cd", False),
    ("trn:user:alice@sha256:ab", "trn:user:alice", False),
    ("trn:a.b:c", "trn:aXb:c", False),  # '.' is literal, not a regex dot
    # '*' is exactly one segment
    ("trn:user:*:tool", "trn:user:alice:tool", True),
    ("trn:user:*:tool", "trn:user:bob:tool", True),
    ("trn:user:*:tool", "trn:user:alice:bob:tool", False),
    ("trn:user:*:tool", "trn:user::tool", False),
    ("trn:user:*:tool", "trn:user:alice:tool:v1", False),
    ("trn:user:*:tool", "trn:user:alice:tool@sha256:ab", False),
    ("trn:*:alice", "trn:user:alice", True),
    ("trn:*:alice", "trn:org:alice", True),
    ("trn:*:alice", "trn:org:bob", False),
    ("trn:*:*:tool", "trn:org:acme:tool", True),
    ("trn:*:*:tool", "trn:org:tool", False),
    # a final '*' matches one or more further segments and the hash
    ("trn:user:*", "trn:user:alice", True),
    ("trn:user:*", "trn:user:alice:tool:openapi:v1", True),
    ("trn:user:*", "trn:user:alice@sha256:ab12", True),
    ("trn:user:*", "trn:user:alice:tool@sha256:ab12", True),
    ("trn:user:*", "trn:user", False),
    ("trn:user:*", "trn:org:alice", False),
    ("trn:user:*", "trn:users:alice", False),
    ("trn:org:abc:workflow:*", "trn:org:abc:workflow:etl", True),
    ("trn:org:abc:workflow:*", "trn:org:abc:workflow:etl:v2.1:prod@sha256:ab12", True),
    ("trn:org:abc:workflow:*", "trn:org:abc:workflow", False),
    ("trn:org:abc:workflow:*", "trn:org:abc:workflows:etl", False),
    ("trn:org:abc:workflow:*", "trn:org:abd:workflow:etl", False),
    ("trn:*:*", "trn:user:alice", True),
    ("trn:*:*", "trn:a:b:c:d@md5:00", True),
    ("trn:*", "trn:user:alice", True),
    ("trn:*", "trn:org:acme:tool:x@sha256:ff", True),
    ("trn:*:alice:*", "trn:user:alice:tool", True),
    ("trn:*:alice:*", "trn:user:bob:tool", False),
    ("trn:*:alice:*", "trn:user:alice", False),
    ("trn:user:*@sha256:ab", "trn:user:alice@sha256:ab", True),
    ("trn:user:*@sha256:ab", "trn:user:alice@sha256:cd", False),
    ("trn:user:*@sha256:ab", "trn:user:alice", False),
    # a pattern ending in ':' is a prefix
    ("trn:user:", "trn:user:alice", True),
    ("trn:user:", "trn:user:alice:tool:v1@sha256:ab", True),
    ("trn:user:", "trn:users:alice", False),
    ("trn:user:", "trn:org:user", False),
    ("trn:user:", "trn:user", False),
    ("trn:org:", "trn:org:acme", True),
    ("trn:org:acme:", "trn:org:acme:tool", True),
    ("trn:org:acme:", "trn:org:acme", False),
    ("trn:org:acme:", "trn:org:acmecorp:tool", False),
    ("trn:", "trn:anything:at:all", True),
]


def _match_id(row: tuple[str, str, bool]) -> str:
    pattern, value, expected = row
    return f"{pattern} {'~' if expected else '!~'} {value}"


@pytest.mark.parametrize(
    ("pattern", "value", "expected"), MATCH_TABLE, ids=[_match_id(r) for r in MATCH_TABLE]
)
def test_trn_pattern_matching(pattern: str, value: str, expected: bool) -> None:
    assert validate_trn_pattern(pattern) == pattern
    assert compile_trn_pattern(pattern)(value) is expected
    assert trn_matches(pattern, value) is expected


@pytest.mark.parametrize("pattern", ["trn:user:", "trn:user:*", "trn:user:alice", "trn:*"])
def test_none_never_matches(pattern: str) -> None:
    assert trn_matches(pattern, None) is False


INVALID_PATTERNS = [
    pytest.param("user:*", "must start with 'trn:'", id="no-scheme"),
    pytest.param("", "must start with 'trn:'", id="empty"),
    pytest.param("*", "must start with 'trn:'", id="star-alone"),
    pytest.param("TRN:user:*", "must start with 'trn:'", id="upper-scheme"),
    pytest.param("trn:user:al*", "segment 2 ('al*')", id="partial-wildcard-suffix"),
    pytest.param("trn:user:*ice", "segment 2 ('*ice')", id="partial-wildcard-prefix"),
    pytest.param("trn:user:a*e:tool", "segment 2 ('a*e')", id="partial-wildcard-middle"),
    pytest.param("trn:user:**", "segment 2 ('**')", id="double-star"),
    pytest.param("trn:user:>", "segment 2 ('>')", id="nats-gt"),
    pytest.param("trn:*:", "no '*' in a prefix", id="star-in-prefix"),
    pytest.param("trn:user:*:", "no '*' in a prefix", id="star-then-prefix"),
    pytest.param("trn:user::", "no '*' in a prefix", id="empty-segment-in-prefix"),
    pytest.param("trn:us er:", "no '*' in a prefix", id="space-in-prefix"),
    pytest.param("trn:user::alice", "segment 2 ('')", id="empty-segment"),
    pytest.param("trn::*", "segment 1 ('')", id="empty-first-segment"),
    pytest.param("trn:user:älice", "segment 2", id="unicode"),
    pytest.param("trn:user", "at least two segments", id="one-segment"),
    pytest.param("trn:user:*@sha256:xyz", "'@algo:hex'", id="hash-not-hex"),
    pytest.param("trn:user:*@sha256", "'@algo:hex'", id="hash-without-digest"),
    pytest.param("trn:user:alice@", "'@algo:hex'", id="hash-empty"),
    pytest.param("trn:user:*@sha256:*", "'@algo:hex'", id="wildcard-in-hash"),
    pytest.param("trn:x:" + "y" * MAX_TRN_LENGTH, "longer than 1024", id="too-long"),
]


@pytest.mark.parametrize(("pattern", "reason"), INVALID_PATTERNS)
def test_invalid_trn_pattern_is_rejected_with_a_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match="invalid TRN") as info:
        validate_trn_pattern(pattern)
    assert reason in str(info.value)
    with pytest.raises(ValueError):
        compile_trn_pattern(pattern)
    with pytest.raises(ValueError):
        trn_matches(pattern, "trn:user:alice")


@pytest.mark.parametrize("pattern", [None, 1, b"trn:user:*"], ids=["none", "int", "bytes"])
def test_trn_pattern_must_be_a_string(pattern: object) -> None:
    with pytest.raises(ValueError, match="a TRN pattern must be a string"):
        validate_trn_pattern(pattern)


@pytest.mark.parametrize("value", [p.values[0] for p in VALID_TRNS])
def test_every_valid_trn_matches_itself_as_an_exact_pattern(value: str) -> None:
    assert trn_matches(value, value)
    assert trn_matches("trn:*", value)
    assert trn_matches("trn:", value)
