"""JSON codec and the sans-IO line framer, without sockets (DESIGN.md §3)."""

from __future__ import annotations

from typing import Any

import pytest

from eventbus_core.codec import DecodeError, LineFramer, dumps, dumps_line, loads


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes]:
    lines: list[bytes] = []
    for chunk in chunks:
        lines += framer.feed(chunk)
    return lines


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


STREAMS = [
    pytest.param([b'{"a":1}\n'], [b'{"a":1}'], id="one-line"),
    pytest.param([b"one\ntwo\nthree\n"], [b"one", b"two", b"three"], id="several-lines-one-feed"),
    pytest.param([b"one\r\ntwo\r\n"], [b"one", b"two"], id="crlf"),
    pytest.param([b"one\r\ntwo\nthree\r\n"], [b"one", b"two", b"three"], id="mixed-terminators"),
    pytest.param([b"on", b"e\ntw", b"o\n"], [b"one", b"two"], id="split-mid-line"),
    pytest.param([b"one\r", b"\ntwo\n"], [b"one", b"two"], id="crlf-split-between-cr-and-lf"),
    pytest.param([b"one", b"\n"], [b"one"], id="terminator-alone"),
    pytest.param([b"\n\n\none\n\n"], [b"one"], id="blank-lines-dropped"),
    pytest.param([b"\r\n \r\n\t\none\n"], [b"one"], id="whitespace-lines-dropped"),
    pytest.param([b"", b"one\n", b""], [b"one"], id="empty-feeds"),
    pytest.param([b"no newline yet"], [], id="partial-is-held"),
    pytest.param(["héllo ✓\n".encode()], ["héllo ✓".encode()], id="utf8"),
    pytest.param([b"a\\nb\n"], [b"a\\nb"], id="escaped-newline-is-not-a-terminator"),
]


@pytest.mark.parametrize(("chunks", "expected"), STREAMS)
def test_framer_splits_lines(chunks: list[bytes], expected: list[bytes]) -> None:
    framer = LineFramer(1024)
    assert feed_all(framer, chunks) == expected
    assert not framer.overflowed


@pytest.mark.parametrize("chunks", [p.values[0] for p in STREAMS], ids=[p.id for p in STREAMS])
def test_framer_gives_the_same_lines_byte_by_byte(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    whole = feed_all(LineFramer(1024), [data])
    assert feed_all(LineFramer(1024), bytewise(data)) == whole


def test_framer_keeps_the_partial_line_for_the_next_feed() -> None:
    framer = LineFramer(1024)
    assert framer.feed(b'{"jsonrpc": "2.0", ') == []
    assert framer.feed(b'"method": "ping"}\n{"id"') == [b'{"jsonrpc": "2.0", "method": "ping"}']
    assert framer.feed(b": 1}\n") == [b'{"id": 1}']


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"tail"], [b"tail"], id="unterminated"),
        pytest.param([b"tail\r"], [b"tail"], id="unterminated-cr"),
        pytest.param([b"one\ntail"], [b"tail"], id="after-a-line"),
        pytest.param([b"one\n"], [], id="nothing-left"),
        pytest.param([b"one\n  "], [], id="only-whitespace-left"),
        pytest.param([], [], id="nothing-fed"),
    ],
)
def test_flush_returns_the_unterminated_last_line(
    chunks: list[bytes], expected: list[bytes]
) -> None:
    framer = LineFramer(1024)
    feed_all(framer, chunks)
    assert framer.flush() == expected
    assert framer.flush() == []


LIMIT = 16


@pytest.mark.parametrize(
    "terminator",
    [pytest.param(b"\n", id="lf"), pytest.param(b"\r\n", id="crlf")],
)
@pytest.mark.parametrize(
    "split", [pytest.param(False, id="whole"), pytest.param(True, id="bytewise")]
)
def test_line_exactly_at_the_limit_is_accepted(terminator: bytes, split: bool) -> None:
    line = b"x" * LIMIT
    data = line + terminator + b"next" + terminator
    framer = LineFramer(LIMIT)
    assert feed_all(framer, bytewise(data) if split else [data]) == [line, b"next"]
    assert not framer.overflowed


def test_unterminated_line_exactly_at_the_limit_is_held_and_flushed() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b"x" * LIMIT) == []
    assert not framer.overflowed
    assert framer.flush() == [b"x" * LIMIT]


def test_over_long_complete_line_overflows_after_the_earlier_lines() -> None:
    framer = LineFramer(LIMIT)
    lines = framer.feed(b"first\nsecond\n" + b"x" * (LIMIT + 1) + b"\nafter\n")
    assert lines == [b"first", b"second"]
    assert framer.overflowed


def test_over_long_line_split_across_feeds_overflows() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b"ok\n" + b"x" * 10) == [b"ok"]
    assert not framer.overflowed
    assert framer.feed(b"x" * 10 + b"\n") == []
    assert framer.overflowed


@pytest.mark.parametrize(
    "split", [pytest.param(False, id="one-feed"), pytest.param(True, id="bytewise")]
)
def test_over_long_partial_without_newline_overflows_early(split: bool) -> None:
    # The framer must not buffer an unbounded line waiting for its newline.
    data = b"x" * (LIMIT + 1)
    framer = LineFramer(LIMIT)
    assert feed_all(framer, bytewise(data) if split else [data]) == []
    assert framer.overflowed


def test_nothing_comes_out_after_an_overflow() -> None:
    framer = LineFramer(LIMIT)
    framer.feed(b"x" * (LIMIT + 1))
    assert framer.overflowed
    assert framer.feed(b"\nfine\n") == []
    assert framer.flush() == []
    assert framer.overflowed


def test_limit_counts_bytes_not_characters() -> None:
    framer = LineFramer(LIMIT)
    # 6 characters, 18 bytes of UTF-8.
    assert framer.feed("✓✓✓✓✓✓\n".encode()) == []
    assert framer.overflowed


# --- dumps / loads ----------------------------------------------------------

ROUND_TRIPS = [
    pytest.param(None, id="null"),
    pytest.param(True, id="true"),
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param(2**63 - 1, id="int64-max"),
    pytest.param(-(2**63), id="int64-min"),
    pytest.param(2**64 - 1, id="uint64-max"),
    pytest.param(1.5, id="float"),
    pytest.param(1e300, id="big-float"),
    pytest.param("", id="empty-string"),
    pytest.param("héllo wörld ✓ 日本語 🙂", id="unicode"),
    pytest.param("line\nbreak\r\n\u2028\u2029", id="newlines-are-escaped"),
    pytest.param('quote " backslash \\ nul \x00', id="escapes"),
    pytest.param([], id="empty-list"),
    pytest.param({}, id="empty-object"),
    pytest.param({"a": [1, {"b": None}], "ü": "✓"}, id="nested"),
    pytest.param({"big": 1764300000123, "ids": [2**53 + 1]}, id="ms-timestamps-and-beyond-2-53"),
]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_round_trip(value: Any) -> None:
    encoded = dumps(value)
    assert isinstance(encoded, bytes)
    assert loads(encoded) == value
    assert loads(encoded.decode()) == value


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_dumps_line_is_exactly_one_framed_line(value: Any) -> None:
    line = dumps_line(value)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    framer = LineFramer(1 << 20)
    assert [loads(x) for x in framer.feed(line)] == [value]
    assert loads(line) == value


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()


def test_dumps_accepts_non_string_keys() -> None:
    assert loads(dumps({1: "a"})) == {"1": "a"}


def test_integers_beyond_64_bits_are_refused_not_corrupted() -> None:
    with pytest.raises(TypeError):
        dumps(2**64)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"   ", id="whitespace"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"a":1,}', id="trailing-comma"),
        pytest.param(b"{'a': 1}", id="single-quotes"),
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"Infinity", id="infinity"),
        pytest.param(b"[1] [2]", id="two-texts"),
        pytest.param(b"\xff\xfe", id="invalid-utf8"),
        pytest.param(b'"\xed\xa0\x80"', id="surrogate"),
        pytest.param(b"undefined", id="undefined"),
        pytest.param(b'{"a" 1}', id="missing-colon"),
    ],
)
def test_loads_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        loads(data)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)
