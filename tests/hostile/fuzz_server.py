"""The fuzzer's side of the wire: a server subprocess, raw exchanges, and what every reply must be.

Blocking sockets on purpose: the fuzzer sends bytes no client would, so it
uses neither the project's client nor its codec. The server's stderr goes to
a file (a pipe nobody drains would fill and stall the server's logging), and
is scanned after every example for tracebacks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.processes import LISTEN_RE

#: The codes DESIGN.md §3 lists, without -32603 (internal error: a bug, never an answer to input).
SPECIFIC_CODES = frozenset({-32700, -32600, -32601, -32602, *range(-32009, -32000)})
#: What the bus pushes: event and firing subscriptions and their `lagged` ends.
NOTIFICATIONS = frozenset({"event", "lagged", "rule_fired"})
#: Lines in the server's log that mean a bug, whatever the input was.
BAD_LOG_MARKERS = ("Traceback", "internal error", "never awaited")


class ServerLog:
    """The server's stderr file; `new()` returns what was written since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new(self) -> str:
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        self._offset += len(data)
        return data.decode(errors="replace")

    def all(self) -> str:
        return self.path.read_bytes().decode(errors="replace")


class FuzzServer:
    """`python -m eventbus_server --config FILE` with stderr in a file, ports parsed from it."""

    def __init__(
        self, proc: subprocess.Popen[bytes], ports: dict[str, int], log: ServerLog
    ) -> None:
        self.proc = proc
        self.ports = ports
        self.log = log

    @classmethod
    def start(
        cls, config_path: Path, *, env: dict[str, str], timeout_s: float = 30.0
    ) -> FuzzServer:
        buses = json.loads(config_path.read_text())
        log_path = config_path.with_name("server.stderr")
        with log_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "eventbus_server", "--config", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **env},
            )
        log = ServerLog(log_path)
        ports: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ports) < len(buses):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"server did not start:\n{log.all()}")
            for match in LISTEN_RE.finditer(log.all()):
                ports[match.group(1)] = int(match.group(3))
            time.sleep(0.02)
        log.new()
        return cls(proc, ports, log)

    def address(self, bus_id: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[bus_id])

    def assert_healthy(self, *, ping_within_s: float = 2.0) -> None:
        """Alive, answering `ping` on a fresh connection to every bus, and nothing bad in its log."""
        assert self.proc.poll() is None, (
            f"server exited with {self.proc.returncode}:\n{self.log.all()[-5000:]}"
        )
        for bus_id in self.ports:
            reply = call(self.address(bus_id), "ping", timeout_s=ping_within_s)
            assert reply == {"jsonrpc": "2.0", "id": "health", "result": "pong"}, (bus_id, reply)
        assert_clean_log(self.log.new())

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as an operator would; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    "server did not stop within {timeout_s} s of SIGTERM"
                ) from None
        return self.proc.returncode


def assert_clean_log(text: str) -> None:
    for marker in BAD_LOG_MARKERS:
        assert marker not in text, f"server log holds {marker!r}:\n{text[-8000:]}"


def call(
    address: tuple[str, int], method: str, params: Any = None, *, timeout_s: float = 5.0
) -> Any:
    """One well-formed request on a fresh connection; its reply."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": "health"}
    if params is not None:
        request["params"] = params
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        reader = sock.makefile("rb")
        line = reader.readline()
    assert line, f"{method}: connection closed without a reply"
    return json.loads(line)


def calls(
    address: tuple[str, int], requests: list[tuple[str, dict[str, Any]]], *, timeout_s: float = 10.0
) -> list[Any]:
    """Several requests on one fresh connection, each sent once the one before is answered."""
    replies = []
    with socket.create_connection(address, timeout=timeout_s) as sock:
        reader = sock.makefile("rb")
        for index, (method, params) in enumerate(requests):
            sock.sendall(
                json.dumps(
                    {"jsonrpc": "2.0", "method": method, "params": params, "id": index}
                ).encode()
                + b"\n"
            )
            line = reader.readline()
            replies.append(json.loads(line) if line else None)
    return replies


# -- one exchange ------------------------------------------------------------------


@dataclass
class Exchange:
    """What one connection sent and received."""

    sent: bytes
    received: bytes
    #: The server closed the connection (EOF) within the deadline.
    finished: bool
    #: The server reset the connection instead of closing it (DESIGN §3: never).
    reset: bool = False
    aborted: bool = False
    lines: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lines = self.received.split(b"\n")
        if self.lines and self.lines[-1] == b"":
            self.lines.pop()


_LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # l_onoff=1, l_linger=0: close() sends RST


class _Sender(threading.Thread):
    """Writes `first`, waits for its reply, then the chunks with their pauses, then half-closes."""

    def __init__(
        self,
        sock: socket.socket,
        first: bytes,
        chunks: list[bytes],
        pauses: list[float],
        *,
        half_close: bool,
        then: Callable[[bytes], bytes] | None,
    ) -> None:
        super().__init__(daemon=True)
        self.sock, self.first, self.chunks, self.pauses, self.half_close = (
            sock,
            first,
            chunks,
            pauses,
            half_close,
        )
        self.then = then
        self.first_answered = threading.Event()
        self.first_reply = b""
        self.sent_after_first = b""

    def answered(self, line: bytes) -> None:
        if not self.first_answered.is_set():
            self.first_reply = line
            self.first_answered.set()

    def run(self) -> None:
        try:
            if self.first:
                self.sock.sendall(self.first)
                self.first_answered.wait(30)
                if self.then is not None:
                    self.sent_after_first = self.then(self.first_reply)
                    self.sock.sendall(self.sent_after_first)
            for index, chunk in enumerate(self.chunks):
                self.sock.sendall(chunk)
                if index < len(self.pauses) and self.pauses[index] > 0:
                    time.sleep(self.pauses[index])
            if self.half_close:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed first (a refusal): what it said is in what we read


def exchange(
    address: tuple[str, int],
    chunks: Iterable[bytes],
    *,
    pauses_s: Iterable[float] = (),
    abort: bool = False,
    first: bytes = b"",
    then: Callable[[bytes], bytes] | None = None,
    timeout_s: float = 20.0,
) -> Exchange:
    """Send `chunks` (one write each, `pauses_s` between them) from a thread while reading,
    then half-close and read to EOF. `abort`: reset the connection instead, unread.
    `first` (an authenticate line) is sent alone, and the rest once its reply is in;
    `then(reply)` makes bytes sent right after it (an unsubscribe of the subscription made)."""
    chunks = list(chunks)
    sock = socket.create_connection(address, timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sender = _Sender(sock, first, chunks, list(pauses_s), half_close=not abort, then=then)
    sender.start()
    sent = first + b"".join(chunks)
    try:
        if abort:
            if first:
                sender.answered(sock.recv(1 << 16).split(b"\n")[0])
            sender.join(timeout_s)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            return Exchange(sent, b"", finished=True, aborted=True)
        received, finished, reset = _read_to_eof(
            sock, sender.answered, time.monotonic() + timeout_s
        )
        sender.first_answered.set()
        sender.join(timeout_s)
        return Exchange(
            first + sender.sent_after_first + b"".join(chunks), received, finished, reset=reset
        )
    finally:
        sender.first_answered.set()
        sender.join(timeout_s)
        sock.close()


def _read_to_eof(
    sock: socket.socket, got_a_line: Callable[[bytes], None], deadline: float
) -> tuple[bytes, bool, bool]:
    """(bytes read, EOF seen, reset seen) by `deadline`; `got_a_line(first line)` once one is in."""
    received = bytearray()
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            return bytes(received), False, False
        except ConnectionResetError:
            return bytes(received), True, True
        if not data:
            return bytes(received), True, False
        received += data
        if b"\n" in data:
            got_a_line(bytes(received).split(b"\n", 1)[0])
    return bytes(received), False, False


# -- what a reply must be ----------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(line: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity."""
    return json.loads(line.decode("utf-8"), parse_constant=_no_constants)


def id_key(value: Any) -> Any:
    """Compare ids as JSON does: 1 and 1.0 are one id, true is not 1."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int | float):
        return ("number", float(value)) if math.isfinite(float(value)) else ("number", repr(value))
    if isinstance(value, str):
        return ("string", value)
    return ("other", json.dumps(value, sort_keys=True))


def _sent_objects(stream: bytes) -> Iterable[dict[str, Any]]:
    """The request objects of this byte stream, as the server's framer splits it."""
    for raw in stream.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            data = json.loads(line, parse_int=int)
        except (ValueError, RecursionError):
            continue
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                yield item


def sent_ids(stream: bytes) -> set[Any]:
    """Every `id` the requests of this byte stream carry."""
    ids: set[Any] = set()
    for item in _sent_objects(stream):
        if "id" in item:
            try:
                ids.add(id_key(item["id"]))
            except (TypeError, ValueError, OverflowError):
                pass
    return ids


def subscribes_unanswered(stream: bytes) -> bool:
    """Whether a subscribe went as a notification: it runs, and its id is never told."""
    return any(
        "id" not in item and item.get("method") in ("subscribe_topic", "subscribe_firings")
        for item in _sent_objects(stream)
    )


@dataclass
class Checked:
    """The replies of one exchange, checked: ids answered, and whether the bus closed on us."""

    answered: list[Any] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    #: A subscribe went as a notification: pushes may name a subscription no reply told of.
    silent_subscribes: bool = False
    #: Subscription ids the replies handed out, in order.
    subscriptions: list[str] = field(default_factory=list)
    #: (id, error code or None, error message) of every response.
    outcomes: list[tuple[Any, int | None, str]] = field(default_factory=list)
    closed_by_refusal: bool = False


def check_exchange(result: Exchange) -> Checked:
    """Assert every line is a valid JSON-RPC 2.0 response or notification with a specific error."""
    ids = sent_ids(result.sent)
    checked = Checked(silent_subscribes=subscribes_unanswered(result.sent))
    for line in result.lines:
        try:
            reply = strict_loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            raise AssertionError(f"reply is not JSON ({exc}): {line[:500]!r}") from None
        if isinstance(reply, list):
            assert reply, "a batch reply is an empty array"
            for item in reply:
                _check_response(item, ids, checked)
        elif isinstance(reply, dict) and "method" in reply:
            _check_notification(reply, checked)
        else:
            _check_response(reply, ids, checked)
    return checked


def _check_notification(message: dict[str, Any], checked: Checked) -> None:
    assert message.get("jsonrpc") == "2.0", message
    assert set(message) == {"jsonrpc", "method", "params"}, message
    assert message["method"] in NOTIFICATIONS, message
    params = message["params"]
    assert isinstance(params, dict), message
    # Pushed only after the reply that named the subscription, and only on its own connection.
    if not checked.silent_subscribes:
        assert params.get("subscription") in checked.subscriptions, (
            f"a push for a subscription not made here: {message!r:.500}"
        )
    if message["method"] == "event":
        assert isinstance(params.get("event"), dict) and isinstance(
            params["event"].get("event_id"), int
        ), message


def _check_response(reply: Any, ids: set[Any], checked: Checked) -> None:
    assert isinstance(reply, dict), f"a reply is not an object: {reply!r:.300}"
    assert reply.get("jsonrpc") == "2.0", reply
    assert "id" in reply, reply
    assert set(reply) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), (
        f"{reply!r:.500}"
    )
    call_id = reply["id"]
    assert call_id is None or id_key(call_id) in ids, f"reply id {call_id!r} was never sent"
    error = reply.get("error")
    if isinstance(error, dict):
        checked.outcomes.append((call_id, error.get("code"), str(error.get("message"))))
    else:
        checked.outcomes.append((call_id, None, ""))
        result = reply["result"]
        if isinstance(result, dict) and isinstance(result.get("subscription"), str):
            checked.subscriptions.append(result["subscription"])
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error, dict) and set(error) <= {"code", "message", "data"}, reply
        code = error.get("code")
        assert isinstance(code, int) and not isinstance(code, bool), reply
        assert isinstance(error.get("message"), str) and error["message"], reply
        assert code != -32603, f"internal error for a client's input: {reply}"
        assert code in SPECIFIC_CODES, f"unknown error code: {reply}"
        if code == -32602 and "data" in error:
            data = error["data"]
            assert isinstance(data, list) and data, reply
            for item in data:
                assert isinstance(item, dict) and set(item) == {"loc", "msg"}, reply
                assert isinstance(item["loc"], str) and isinstance(item["msg"], str), reply
        checked.codes.append(code)
        # Refusals end the connection and cancel what was still running on it.
        if code == -32007 or (code == -32006 and "closing" in error["message"]):
            checked.closed_by_refusal = True
    checked.answered.append(call_id)
