"""A protocol fuzzer: hypothesis against a real server process, over raw TCP.

One server subprocess per module serves five buses: `mem` (memory), `lite`
(SQLite, rules, a python tool), `rules` (memory, rules, an allow-list), `auth`
(a token) and `pg` (PostgreSQL, rules; when it is reachable), all with a small
line limit, batch limit and output budget so the limits are hit. Five tests
draw from `strategies.py`: valid-shaped calls of every method with hostile
values, arbitrary JSON requests, malformed framing, rules with the events that
fire them, and subscriptions. Every example opens a fresh connection, writes
what was drawn in several writes with pauses (so the bus sees partial lines),
half-closes, reads to EOF (now and then it resets the connection instead) and
asserts:

1. every line the bus wrote is JSON-RPC 2.0: a response (`jsonrpc`, an `id`
   that was sent or null, exactly one of `result`/`error`, an int `code` and a
   string `message`, `-32602` data as `[{loc, msg}]`) or a notification for a
   subscription made on this connection; batch replies are arrays of responses;
2. no error is -32603, and every code is one DESIGN.md §3 lists;
3. the replies are exactly those owed (`expect.py`): none lost, none doubled,
   and the bus closed the connection rather than resetting it;
4. the process is alive, `ping` answers on a fresh connection to every bus
   within 2 s, and nothing new in its log is a traceback or "internal error".

Bounded for CI: 150 examples per test, about 20 s on two cores. The long mode
is `EVENTBUS_FUZZ_EXAMPLES=N` (N per test, no timeout). The inputs tried are
printed at the end (`pytest -s`) and written with what each method answered
to `fuzz-counts.json` and `fuzz-outcomes.json` in the module's tmp dir.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import postgres

from .expect import expect
from .fuzz_server import FuzzServer, assert_clean_log, calls, check_exchange, exchange, id_key
from .strategies import (
    ABSENT,
    METHOD_PARAMS,
    METHODS,
    Call,
    any_json,
    deep,
    emit_params,
    encode,
    hostile,
    request_objects,
    rule_bodies,
    test_events,
)
from .strategies import calls as call_specs

LONG_EXAMPLES = int(os.environ.get("EVENTBUS_FUZZ_EXAMPLES", "0"))
EXAMPLES = LONG_EXAMPLES or 150
MAX_LINE = 65_536
MAX_BATCH = 8
TOKEN = "fuzz-secret-token"
TOKEN_ENV = "EVENTBUS_FUZZ_TOKEN"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(0 if LONG_EXAMPLES else 120),
    # Requests of 64 KiB have reprs of 64 KiB; hypothesis warns about printing them.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

TOOL_MODULE = """
def echo(request):
    return {"echo": request["input"], "event_id": request["event"].get("event_id")}
"""

#: What every example tried, by test, for the report.
COUNTS: Counter[str] = Counter()
#: What each method answered ("register_rule:ok", "emit_event:-32602"): how deep the fuzz got.
OUTCOMES: Counter[str] = Counter()
#: A few error messages of each outcome, for whoever reads the report.
SAMPLES: dict[str, list[str]] = {}


def _limits() -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "max_message_bytes": MAX_LINE,
        "max_batch": MAX_BATCH,
        "max_output_bytes": 1_048_576,
        "max_subscriptions": 16,
        "subscriber_buffer": 64,
        "memory_buffer": 2000,
        "queue_size": 1000,
        "max_hops": 1,
        "retry": {"attempts": 1, "backoff_ms": 0},
    }


def _config(tmp: Path) -> list[dict[str, Any]]:
    tools = [{"match": "trn:fuzz:echo:*", "kind": "python", "function": "fuzz_tool:echo"}]
    buses = [
        {"id": "mem", **_limits()},
        {
            "id": "lite",
            **_limits(),
            "persist": True,
            "storage_path": str(tmp / "lite.db"),
            "enable_rules": True,
            "tools": tools,
            "accept_from_buses": ["rules"],
        },
        {
            "id": "rules",
            **_limits(),
            "enable_rules": True,
            "tools": tools,
            "allowed_sources": ["trn:user:", "trn:fuzz:"],
            "accept_from_buses": ["lite"],
        },
        {"id": "auth", **_limits(), "enable_rules": True, "auth_token_env": TOKEN_ENV},
    ]
    if postgres.reachable() or postgres.REQUIRED:
        buses.append(
            {
                "id": "pg",
                **_limits(),
                "persist": True,
                "storage_url": postgres.storage_url(tmp / "pg"),
                "enable_rules": True,
                "tools": tools,
            }
        )
    return buses


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "fuzz_tool.py").write_text(TOOL_MODULE)
    config = tmp / "buses.json"
    config.write_text(json.dumps(_config(tmp)))
    started = time.monotonic()
    # The tool module sits next to the config, whose folder the server puts on the import
    # path (DESIGN §7).
    running = FuzzServer.start(config, env={TOKEN_ENV: TOKEN})
    try:
        yield running
        # A subprocess has no wait_idle(): give the last firings a moment, then look once more.
        time.sleep(0.5)
        running.assert_healthy()
    finally:
        status = running.stop()
        log = running.log.all()
        report = {**COUNTS, "seconds": round(time.monotonic() - started, 1)}
        (tmp / "fuzz-counts.json").write_text(json.dumps(report))
        (tmp / "fuzz-outcomes.json").write_text(
            json.dumps({"outcomes": dict(sorted(OUTCOMES.items())), "samples": SAMPLES}, indent=1)
        )
        print(f"\nfuzz: {json.dumps(report)} (log: {running.log.path})")
        print("fuzz outcomes:", ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.items())))
    assert status == 0, f"server exited with {status} after SIGTERM:\n{log[-5000:]}"
    assert_clean_log(log)


# -- running one example -----------------------------------------------------------


class Script:
    """The bytes of one connection, with a fresh string id for every request that has one."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.parts: list[bytes] = []
        #: Sent alone before the rest, which waits for its reply (authentication).
        self.first = b""
        #: Bytes made from the reply to `first`, sent right after it.
        self.then: Callable[[bytes], bytes] | None = None
        #: id → method, to tally what each method answered.
        self.methods: dict[str, Any] = {}

    def request(self, call: Call) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": call.method}
        if call.params is not ABSENT:
            message["params"] = call.params
        if not call.notification:
            message["id"] = f"fz-{next(self._ids)}"
            self.methods[message["id"]] = call.method
        return message

    def line(self, value: Any, *, ending: bytes = b"\n", ascii_only: bool = True) -> None:
        self.parts.append(encode(value, ascii_only=ascii_only) + ending)

    def raw(self, data: bytes) -> None:
        self.parts.append(data)

    def stream(self) -> bytes:
        """Everything after `first`."""
        return b"".join(self.parts)


def _cut(stream: bytes, cuts: list[float]) -> list[bytes]:
    """The stream in writes, cut at these fractions of its length."""
    points = sorted({int(len(stream) * c) for c in cuts} - {0, len(stream)})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


writes = st.tuples(
    st.lists(st.floats(0, 1), max_size=4),
    st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.002, 0.01]), max_size=4),
    st.sampled_from([False] * 19 + [True]),  # abort: reset instead of half-close, now and then
)


def run(
    server: FuzzServer,
    bus: str,
    script: Script,
    how: tuple[list[float], list[float], bool],
    name: str,
) -> None:
    """Send the script on a fresh connection to `bus`, check every reply, then the server's health."""
    cuts, pauses, abort = how
    stream = script.stream()
    COUNTS[name] += 1
    COUNTS["bytes_sent"] += len(script.first) + len(stream)
    result = exchange(
        server.address(bus),
        _cut(stream, cuts),
        pauses_s=pauses,
        abort=abort,
        first=script.first,
        then=script.then,
    )
    if not abort:
        assert result.finished, (
            f"no EOF within the deadline (a hang?) on {bus}; got {result.received[-2000:]!r}"
        )
        assert not result.reset, (
            f"the bus reset the connection instead of closing it; got {result.received[-2000:]!r}"
        )
        checked = check_exchange(result)
        _tally(script, checked.outcomes)
        owed = expect(result.sent, max_line=MAX_LINE, max_batch=MAX_BATCH)
        if owed.overflowed:
            assert -32007 in checked.codes, (
                "a line over max_message_bytes was not refused with -32007"
            )
        elif not checked.closed_by_refusal:
            got = Counter(id_key(i) for i in checked.answered)
            assert got == owed.replies, f"replies owed {dict(owed.replies)}, got {dict(got)}"
    server.assert_healthy()


def _tally(script: Script, outcomes: list[tuple[Any, int | None, str]]) -> None:
    for reply_id, code, message in outcomes:
        if isinstance(reply_id, str) and reply_id in script.methods:
            key = f"{script.methods[reply_id]}:{code or 'ok'}"
            OUTCOMES[key] += 1
            samples = SAMPLES.setdefault(key, [])
            if len(samples) < 20:
                samples.append(message[:300])


def _authenticate(script: Script, bus: str, auth: str) -> None:
    if bus != "auth" or auth == "none":
        return
    token = TOKEN if auth == "token" else "not-the-token"
    script.line(script.request(Call("authenticate", {"token": token})))
    script.first = script.parts.pop()


buses = st.sampled_from(["mem", "lite", "rules", "auth", "pg"])
auth_modes = st.sampled_from(["token", "token", "none", "wrong"])
endings = st.sampled_from([b"\n", b"\n", b"\r\n"])


def _bus(server: FuzzServer, bus: str) -> str:
    return bus if bus in server.ports else "lite"


# -- (a) valid-shaped params with hostile values -----------------------------------


@FUZZ
@given(
    bus=buses,
    auth=auth_modes,
    session=st.lists(st.tuples(call_specs, endings), min_size=1, max_size=6),
    batched=st.sampled_from(["lines", "lines", "batch", "both"]),
    how=writes,
)
def test_valid_shaped_calls(
    server: FuzzServer,
    bus: str,
    auth: str,
    session: list[tuple[Call, bytes]],
    batched: str,
    how: Any,
) -> None:
    script = Script()
    bus = _bus(server, bus)
    _authenticate(script, bus, auth)
    if batched in ("batch", "both"):
        script.line([script.request(call) for call, _ in session])
    if batched in ("lines", "both"):
        for call, ending in session:
            script.line(script.request(call), ending=ending)
    run(server, bus, script, how, "valid_shaped")


# -- (b) arbitrary JSON for params, ids and whole requests -------------------------


arbitrary_lines = st.one_of(
    request_objects,
    st.lists(request_objects, min_size=1, max_size=MAX_BATCH + 2),
    st.builds(
        lambda m, p, i: {"jsonrpc": "2.0", "method": m, "params": p, "id": i},
        st.sampled_from(METHODS),
        any_json | deep,
        hostile,
    ),
    any_json,
)


@FUZZ
@given(
    bus=buses,
    auth=auth_modes,
    lines=st.lists(st.tuples(arbitrary_lines, st.booleans()), min_size=1, max_size=5),
    how=writes,
)
def test_arbitrary_json(
    server: FuzzServer, bus: str, auth: str, lines: list[tuple[Any, bool]], how: Any
) -> None:
    script = Script()
    bus = _bus(server, bus)
    _authenticate(script, bus, auth)
    for value, ascii_only in lines:
        script.line(value, ascii_only=ascii_only)
    run(server, bus, script, how, "arbitrary_json")


# -- (c) malformed framing ---------------------------------------------------------

BAD_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xe2\x82",
    b"\xf4\x90\x80\x80",
    b"\x80",
]
FRAMING_LITERALS = [
    b"[]",
    b"[ ]",
    b"[[]]",
    b"[1,2,3]",
    b"[{}]",
    b"{}",
    b"null",
    b'"ping"',
    b"1",
    b"\xef\xbb\xbf{}",
    b"\x00",
    b'{"jsonrpc":"2.0","method":"ping","id":1}\x00',
    b"\x0b",
    b"\x0c",
    b"   ",
    b"\t",
    b'{"jsonrpc":"2.0","method":"ping","id":"a"}{"jsonrpc":"2.0","method":"ping","id":"b"}',
    b'{"jsonrpc":"2.0","method":"ping","id":1,"id":2}',
    b'{"jsonrpc":"2.0","method":"ping","id":18446744073709551616}',
    b'{"jsonrpc":"2.0","method":"ping","id":9223372036854775808}',
    b'{"jsonrpc":"2.0","method":"ping","id":1e400}',
    b'{"jsonrpc":"2.0","method":"ping","id":-9223372036854775809}',
    b'{"jsonrpc":"2.0","method":"ping","id":' + b"9" * 5000 + b"}",
]
ENDINGS = [b"\n", b"\r\n", b"\r", b"", b"\n\n", b"\r\r\n", b" \n", b"\t\n", b"\n\r\n\n"]


def _padded(method: str, target: int, call_id: str | None) -> bytes:
    """A request line of exactly `target` bytes (its payload string takes the slack)."""
    head = {"jsonrpc": "2.0", "method": method, "params": {"topic": "fz.big", "payload": ""}}
    if call_id is not None:
        head["id"] = call_id
    base = len(json.dumps(head, separators=(",", ":")))
    pad = max(0, target - base)
    head["params"]["payload"] = "x" * pad
    return json.dumps(head, separators=(",", ":")).encode()


piece = st.one_of(
    st.tuples(st.just("call"), call_specs, st.sampled_from(ENDINGS)),
    st.tuples(st.just("bytes"), st.binary(max_size=64), st.sampled_from(ENDINGS)),
    st.tuples(
        st.just("bytes"), st.sampled_from(BAD_UTF8 + FRAMING_LITERALS), st.sampled_from(ENDINGS)
    ),
    st.tuples(st.just("bad_utf8_string"), st.sampled_from(BAD_UTF8), st.sampled_from(ENDINGS)),
    st.tuples(
        st.just("batch"),
        st.lists(call_specs | request_objects | hostile, min_size=0, max_size=MAX_BATCH + 2),
        st.sampled_from(ENDINGS),
    ),
    st.tuples(st.just("notifications"), st.integers(1, MAX_BATCH + 1), st.sampled_from(ENDINGS)),
    st.tuples(
        st.just("pings"),
        st.sampled_from([MAX_BATCH - 1, MAX_BATCH, MAX_BATCH + 1, 100]),
        st.sampled_from(ENDINGS),
    ),
    st.tuples(
        st.just("big"),
        st.sampled_from([-2, -1, 0, 1, 2, 1000]),
        st.sampled_from([b"\n", b"\r\n", b""]),
    ),
    # Past max_subscriptions (16), and pages past a batch's reply budget (half of max_output_bytes).
    st.tuples(st.just("subscribes"), st.integers(1, 20), st.sampled_from(ENDINGS)),
    st.tuples(st.just("polls"), st.integers(1, MAX_BATCH), st.sampled_from(ENDINGS)),
    st.tuples(
        st.just("mutated"),
        st.tuples(
            call_specs,
            st.lists(
                st.tuples(
                    st.floats(0, 1),
                    st.sampled_from(["flip", "drop", "dup", "insert", "cut"]),
                    st.integers(0, 255),
                ),
                min_size=1,
                max_size=4,
            ),
        ),
        st.sampled_from(ENDINGS),
    ),
)


def _mutate(data: bytes, edits: list[tuple[float, str, int]]) -> bytes:
    buffer = bytearray(data)
    for where, op, byte in edits:
        if not buffer:
            break
        at = min(int(where * len(buffer)), len(buffer) - 1)
        if op == "flip":
            buffer[at] ^= byte or 1
        elif op == "drop":
            del buffer[at]
        elif op == "dup":
            buffer[at:at] = buffer[at : at + 8]
        elif op == "insert":
            buffer.insert(at, byte)
        else:
            del buffer[at:]
    return bytes(buffer)


def _add_piece(script: Script, kind: str, value: Any, ending: bytes) -> None:
    if kind == "call":
        script.line(script.request(value), ending=ending)
    elif kind == "bytes":
        script.raw(value + ending)
    elif kind == "bad_utf8_string":
        script.raw(
            b'{"jsonrpc":"2.0","method":"emit_event","params":{"topic":"fz.a","payload":"'
            + value
            + b'"},"id":"fz-u"}'
            + ending
        )
    elif kind == "batch":
        script.line([script.request(v) if isinstance(v, Call) else v for v in value], ending=ending)
    elif kind == "notifications":
        script.line([{"jsonrpc": "2.0", "method": "ping"} for _ in range(value)], ending=ending)
    elif kind == "pings":
        script.line([script.request(Call("ping")) for _ in range(value)], ending=ending)
    elif kind == "big":
        script.raw(
            _padded("emit_event", MAX_LINE + value, script.request(Call("emit_event"))["id"])
            + ending
        )
    elif kind == "subscribes":
        # A quiet topic: sixteen replays of the whole log in every such example would make
        # a long run quadratic (test_subscriptions replays, once per example).
        for _ in range(value):
            script.line(
                script.request(Call("subscribe_topic", {"topic": "fz.quiet.>", "since": 0})),
                ending=ending,
            )
    elif kind == "polls":
        script.line(
            [
                script.request(Call("poll_events", {"topic": "fz.big", "limit": 10_000}))
                for _ in range(value)
            ],
            ending=ending,
        )
    elif kind == "mutated":
        call, edits = value
        script.raw(_mutate(encode(script.request(call)), edits) + ending)


@FUZZ
@given(bus=buses, auth=auth_modes, pieces=st.lists(piece, min_size=1, max_size=8), how=writes)
def test_malformed_framing(
    server: FuzzServer, bus: str, auth: str, pieces: list[tuple[str, Any, bytes]], how: Any
) -> None:
    script = Script()
    bus = _bus(server, bus)
    _authenticate(script, bus, auth)
    for kind, value, ending in pieces:
        _add_piece(script, kind, value, ending)
    run(server, bus, script, how, "malformed_framing")


# -- rules: registered, tested, then fired by events -------------------------------


def _registration(body: Any, replace: bool) -> Call:
    if isinstance(body, dict) and replace:
        body = {**body, "replace": True}
    return Call("register_rule", body)


registrations = st.builds(_registration, rule_bodies, st.sampled_from([True, True, False]))
rule_probes = st.sampled_from(
    [
        "test_rule",
        "get_rule",
        "list_rules",
        "list_firings",
        "set_rule_enabled",
        "delete_rule",
        "subscribe_firings",
    ]
).flatmap(lambda method: st.builds(Call, st.just(method), METHOD_PARAMS[method]))
emits = st.builds(Call, st.just("emit_event"), emit_params) | st.builds(
    Call, st.just("emit_events"), METHOD_PARAMS["emit_events"]
)


tests_of_rules = st.builds(
    Call, st.just("test_rule"), st.fixed_dictionaries({"rule": rule_bodies, "event": test_events})
)


@FUZZ
@given(
    bus=st.sampled_from(["lite", "rules", "auth", "pg"]),
    rules=st.lists(registrations, max_size=3),
    events=st.lists(emits, max_size=3),
    probes=st.lists(tests_of_rules | rule_probes, max_size=3),
    how=writes,
)
def test_rules(
    server: FuzzServer,
    bus: str,
    rules: list[Call],
    events: list[Call],
    probes: list[Call],
    how: Any,
) -> None:
    """Rules registered, then events that may fire them, then dry runs and reads."""
    script = Script()
    bus = _bus(server, bus)
    _authenticate(script, bus, "token")
    for call in [*rules, *events, *probes]:
        script.line(script.request(call))
    run(server, bus, script, how, "rules")


# -- subscriptions: made, pushed to, ended ------------------------------------------


subscribes = st.one_of(
    st.builds(Call, st.just("subscribe_topic"), METHOD_PARAMS["subscribe_topic"]),
    st.builds(
        Call,
        st.just("subscribe_topic"),
        st.fixed_dictionaries(
            {
                "topic": st.sampled_from(["fz.>", ">", "fz.a"]),
                "since": st.sampled_from([0, 1, 2**63 - 1]),
            }
        ),
    ),
    st.builds(Call, st.just("subscribe_firings"), METHOD_PARAMS["subscribe_firings"]),
)
followers = st.lists(
    st.sampled_from(["unsubscribe", "unsubscribe_other", "emit", "emit", "subscribe_again"]),
    max_size=6,
)


def _subscription_of(reply: bytes) -> Any:
    try:
        result = json.loads(reply).get("result")
    except ValueError:
        return "none"
    return result.get("subscription", "none") if isinstance(result, dict) else "none"


@FUZZ
@given(
    bus=st.sampled_from(["mem", "lite", "rules", "pg"]),
    subscribe=subscribes,
    then=followers,
    calls_after=st.lists(call_specs, max_size=3),
    how=writes,
)
def test_subscriptions(
    server: FuzzServer,
    bus: str,
    subscribe: Call,
    then: list[str],
    calls_after: list[Call],
    how: Any,
) -> None:
    """A subscription, then (knowing its id) unsubscribes, emits it should see and more."""
    script = Script()
    bus = _bus(server, bus)
    script.line(script.request(subscribe))
    script.first = script.parts.pop()

    def follow(reply: bytes) -> bytes:
        subscription = _subscription_of(reply)
        lines = []
        for step in then:
            if step == "unsubscribe":
                call = Call("unsubscribe", {"subscription": subscription})
            elif step == "unsubscribe_other":
                call = Call("unsubscribe", {"subscription": f"{subscription}0"})
            elif step == "emit":
                call = Call(
                    "emit_event",
                    {"topic": "fz.a", "payload": {"a": 1}, "source_trn": "trn:fuzz:echo:v1"},
                )
            else:
                call = subscribe
            lines.append(encode(script.request(call)) + b"\n")
        return b"".join(lines)

    script.then = follow
    for call in calls_after:
        script.line(script.request(call))
    run(server, bus, script, how, "subscriptions")


# -- state the examples share --------------------------------------------------------


def test_rules_the_fuzz_left_still_list_and_delete(server: FuzzServer) -> None:
    """Whatever register_rule accepted can be listed, read back, tested and deleted."""
    for bus in ("lite", "rules", "pg"):
        if bus not in server.ports:
            continue
        (listed,) = calls(server.address(bus), [("list_rules", {})])
        assert listed is not None and "result" in listed, listed
        for rule in listed["result"]["rules"]:
            got, tested, deleted = calls(
                server.address(bus),
                [
                    ("get_rule", {"id": rule["id"]}),
                    (
                        "test_rule",
                        {"rule_id": rule["id"], "event": {"topic": "fz.a", "payload": {"a": 1}}},
                    ),
                    ("delete_rule", {"id": rule["id"]}),
                ],
            )
            for reply in (got, tested, deleted):
                assert reply is not None and "result" in reply, (rule, reply)
    server.assert_healthy()


def test_the_fuzzed_data_still_reads_back(server: FuzzServer) -> None:
    """Every stored event and firing pages out whole, with valid JSON."""
    for bus in server.ports:
        requests: list[tuple[str, dict[str, Any]]] = [
            ("poll_events", {"limit": 10_000}),
            ("poll_events", {"order": "desc"}),
        ]
        if bus != "auth" and bus != "mem":
            requests.append(("list_firings", {"limit": 10_000}))
        if bus == "auth":
            requests.insert(0, ("authenticate", {"token": TOKEN}))
        for reply in calls(server.address(bus), requests):
            assert reply is not None and "result" in reply, (bus, reply)
    server.assert_healthy()
