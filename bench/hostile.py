"""Hostile clients against a real server process: what the other users of the process see.

    .venv/bin/python -m bench.hostile --tree /path/to/checkout [--tree /path/to/another] [--only 1,5] [--record]

Each attack of issue 11 ("no client can hurt a bus", DESIGN.md §3 "Limits")
runs against `python -m eventbus_server` started from the source tree given by
`--tree` (PYTHONPATH=<tree>, run from a scratch folder so nothing else is
imported), in a process with a `victim` bus (the one attacked) and an `other`
bus. While it runs, the bench samples the server's resident memory
(`/proc/<pid>/status` VmRSS, every 100 ms) and pings the victim bus on a
connection of its own and the other bus (every 20 ms), and reports per attack:

- RSS before the attack → its peak during the attack, in MB;
- the worst ping on the victim bus and on the other bus (a ping still
  unanswered when the attack ends counts with its age, shown as "> N s");
- what the attack's victim saw (failed emits, ack latency, throughput);
- what the attacker got.

Every attack is bounded in time; a server whose RSS passes `--rss-cap-mb`
(default 4096) is killed so a shared machine survives the old code, and the
row says so. The config uses only keys both the old tree (978d1ee) and the
new one know, so each tree's defaults apply (e.g. the new `read_timeout_s` of
30 s: the slowloris attack runs 35 s). With two `--tree`s the trees run one
after the other and a before/after table follows; `--record` appends it to
bench/RESULTS.md. PostgreSQL is `$EVENTBUS_BENCH_POSTGRES_URL` (default
postgresql://postgres@127.0.0.1:5432/test), one schema per run, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from eventbus_client import EventBusClient, EventBusError, connect

from ._common import format_table, record_results, run

POSTGRES_URL = os.environ.get(
    "EVENTBUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
LISTEN_RE = re.compile(r"bus=(\S+) listen=(\S+):(\d+)")
TOKEN_ENV = "HOSTILE_BENCH_TOKEN"
TOKEN = "the-right-token"
BIG_INTS = (2**63, 2**63 + 1, 2**64 - 1)
RSS_INTERVAL_S = 0.1
PING_INTERVAL_S = 0.02
#: A whole attack (server start and stop included) may take this long before it is abandoned.
ATTACK_CAP_S = 300.0

T = TypeVar("T")


# -- what one row reports ------------------------------------------------------------------


@dataclass
class Row:
    attack: str
    storage: str = ""
    rss: str = "—"
    ping_victim: str = "—"
    ping_other: str = "—"
    victim: str = "—"
    attacker: str = "—"
    notes: list[str] = field(default_factory=list)

    def cells(self, tree: str) -> dict[str, str]:
        outcome = (
            "; ".join([self.attacker, *self.notes]) if self.attacker != "—" or self.notes else "—"
        )
        return {
            "attack": self.attack,
            "storage": self.storage,
            "tree": tree,
            "RSS MB before → peak": self.rss,
            "worst ping, victim bus": self.ping_victim,
            "worst ping, other bus": self.ping_other,
            "victim": self.victim,
            "attacker got / outcome": outcome.removeprefix("—; "),
        }


def seconds_text(seconds: float) -> str:
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def codes_text(codes: Counter[Any]) -> str:
    """`Counter({-32602: 5000})` → `5,000x -32602`."""
    return ", ".join(f"{n:,}x {code}" for code, n in codes.most_common()) or "none"


def error_code(exc: BaseException) -> str:
    if isinstance(exc, EventBusError):
        return "lost" if exc.code == 0 else str(exc.code)
    return type(exc).__name__


# -- the server under attack ---------------------------------------------------------------


class Server:
    """`python -m eventbus_server` from one source tree; its stderr is drained continuously."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int]) -> None:
        self.proc = proc
        self.ports = ports
        self.killed_at_mb: float | None = None
        self.bad_log_lines = 0  # tracebacks, ERROR lines, internal errors
        self.log_tail: list[str] = []
        assert proc.stderr is not None
        self._drain = asyncio.get_running_loop().create_task(self._read_log(proc.stderr))

    @classmethod
    async def start(cls, tree: Path, config: Path, env: dict[str, str] | None = None) -> Server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eventbus_server",
            "--config",
            str(config),
            cwd=config.parent,  # not a source tree: `-m` puts the cwd first on sys.path
            env={**os.environ, "PYTHONPATH": str(tree), **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        expected = len(json.loads(config.read_text()))
        ports: dict[str, int] = {}
        startup: list[str] = []
        assert proc.stderr is not None
        try:
            while len(ports) < expected:
                line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode(errors="replace")
                if not line:
                    raise RuntimeError(
                        "the server exited before listening: " + "".join(startup[-5:]).strip()
                    )
                startup.append(line)
                if match := LISTEN_RE.search(line):
                    ports[match.group(1)] = int(match.group(3))
        except BaseException:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise
        return cls(proc, ports)

    async def _read_log(self, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(ValueError, ConnectionError):  # ValueError: a line over 1 MiB
            while line := await stream.readline():
                text = line.decode(errors="replace")
                if "Traceback" in text or "ERROR" in text or "internal error" in text:
                    self.bad_log_lines += 1
                self.log_tail = [*self.log_tail[-50:], text]
        with contextlib.suppress(ConnectionError):
            while await stream.read(1 << 16):  # after an overlong line, keep the pipe empty
                pass

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def url(self, bus: str) -> str:
        return f"tcp://127.0.0.1:{self.ports[bus]}"

    def address(self, bus: str) -> tuple[str, int]:
        return "127.0.0.1", self.ports[bus]

    def rss_mb(self) -> float:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0.0
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else 0.0

    def kill(self, rss_mb: float) -> None:
        """The RSS cap: the machine is shared."""
        if self.alive:
            self.killed_at_mb = rss_mb
            self.proc.kill()

    async def stop(self) -> int | None:
        """SIGTERM, SIGKILL after 10 s (a loop stuck in a regex does not run its signal handler)."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain, 5)
        return self.proc.returncode


class Bench:
    """One tree's run: where servers come from, scratch folders, PostgreSQL schemas."""

    def __init__(self, tree: Path, rss_cap_mb: float, folder: Path) -> None:
        self.tree = tree
        self.rss_cap_mb = rss_cap_mb
        self.folder = folder
        self.schemas: list[str] = []
        self.bad_log_lines = 0  # over every server of this run
        self._runs = 0

    def scratch(self) -> Path:
        self._runs += 1
        path = self.folder / f"run{self._runs}"
        path.mkdir()
        return path

    def bus(
        self, storage: str, folder: Path, bus_id: str = "victim", **keys: Any
    ) -> dict[str, Any]:
        bus: dict[str, Any] = {"id": bus_id, "listen": "127.0.0.1:0", **keys}
        if storage == "sqlite":
            bus.update(persist=True, storage_path=str(folder / f"{bus_id}.db"))
        elif storage == "postgres":
            schema = f"bench_hostile_{os.getpid()}_{len(self.schemas)}"
            self.schemas.append(schema)
            bus.update(persist=True, storage_url=f"{POSTGRES_URL}?schema={schema}")
        return bus

    @contextlib.asynccontextmanager
    async def server(
        self, buses: list[dict[str, Any]], *, folder: Path | None = None, other_bus: bool = True
    ) -> AsyncIterator[Server]:
        """A server with `buses` (and a memory bus `other` unless told not), stopped at the end."""
        folder = folder or self.scratch()
        config = folder / "event_buses.json"
        config.write_text(
            json.dumps(buses + ([self.bus("memory", folder, "other")] if other_bus else []))
        )
        server = await Server.start(self.tree, config, env={TOKEN_ENV: TOKEN})
        try:
            yield server
        finally:
            await server.stop()
            self.bad_log_lines += server.bad_log_lines

    async def drop_schemas(self) -> None:
        if not self.schemas:
            return
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            for schema in self.schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def imported_from(tree: Path) -> str:
    """Where `import eventbus_server` resolves with PYTHONPATH=<tree>, run as the server is."""
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run(
            [sys.executable, "-c", "import eventbus_server; print(eventbus_server.__file__)"],
            cwd=folder,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        )
    return out.stdout.strip()


def tree_commit(tree: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tree), *args], capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


# -- watching the other users while an attack runs ---------------------------------------


class PingMonitor:
    """Pings one bus on a connection of its own every 20 ms and keeps the slowest answer."""

    def __init__(self, client: EventBusClient) -> None:
        self.client = client
        self.worst_s = 0.0
        self.pings = 0
        self.error: str | None = None
        self._waiting_since: float | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._waiting_since = time.monotonic()
                await self.client.ping()
                self.worst_s = max(self.worst_s, time.monotonic() - self._waiting_since)
                self._waiting_since = None
                self.pings += 1
                await asyncio.sleep(PING_INTERVAL_S)
        except EventBusError as exc:
            self.error = exc.message

    async def stop(self) -> str:
        """The worst latency, as a cell."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await close_quietly(self.client)
        if self._waiting_since is not None:
            waited = time.monotonic() - self._waiting_since
            if waited > self.worst_s:
                return f"> {seconds_text(waited)} (unanswered)"
        if self.error is not None:
            return f"{seconds_text(self.worst_s)}, then lost ({self.error[:40]})"
        return seconds_text(self.worst_s)


async def close_quietly(client: EventBusClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 2)


class Watch:
    """RSS every 100 ms and pings on the victim and the other bus, for the duration of the block.

    On exit it writes its figures into the row. Past the RSS cap it kills the server.
    """

    def __init__(
        self,
        server: Server,
        row: Row,
        cap_mb: float,
        *,
        victim: str | None = "victim",
        token: str | None = None,
    ) -> None:
        self.server = server
        self.row = row
        self.cap_mb = cap_mb
        self.victim = victim
        self.token = token
        self.before_mb = 0.0
        self.peak_mb = 0.0
        self._pingers: dict[str, PingMonitor] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._killed = asyncio.Event()

    async def __aenter__(self) -> Watch:
        self.before_mb = self.peak_mb = self.server.rss_mb()
        if self.victim is not None:
            self._pingers["victim"] = PingMonitor(
                await connect(self.server.url(self.victim), token=self.token)
            )
        self._pingers["other"] = PingMonitor(await connect(self.server.url("other")))
        self._sampler = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while self.server.alive:
            rss = self.server.rss_mb()
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.cap_mb:
                self.server.kill(rss)
                self._killed.set()
                return
            await asyncio.sleep(RSS_INTERVAL_S)
        self._killed.set()

    async def wait(self, seconds: float) -> None:
        """Sleep while the attack goes on; return early if the server died."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._killed.wait(), seconds)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._sampler is not None
        self._sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sampler
        self.peak_mb = max(self.peak_mb, self.server.rss_mb())
        self.row.rss = f"{self.before_mb:.0f} → {self.peak_mb:,.0f}"
        if self.server.killed_at_mb is not None:
            self.row.rss = f"{self.before_mb:.0f} → > {self.cap_mb:,.0f} (killed at {self.server.killed_at_mb:,.0f})"
        elif not self.server.alive:
            self.row.rss += f" (server exited, code {self.server.proc.returncode})"
        cells = {name: await pinger.stop() for name, pinger in self._pingers.items()}
        self.row.ping_victim = cells.get("victim", "—")
        self.row.ping_other = cells["other"]


# -- raw connections (the attackers) ------------------------------------------------------


async def raw_connection(
    address: tuple[str, int], *, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain socket; with `receive_buffer` its SO_RCVBUF is set before connect, so a
    client that never reads holds only that much of what the server sends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


def rpc_line(method: str, params: Any = None, call_id: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"  # json, not orjson: it writes ints past int64


async def read_replies(
    reader: asyncio.StreamReader, count: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Up to `count` replies (lines with an id; notifications skipped), whatever came within `timeout_s`."""
    replies: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError, ConnectionError, ValueError):
        async with asyncio.timeout(timeout_s):
            while len(replies) < count and (raw := await reader.readline()):
                message = json.loads(raw)
                for item in message if isinstance(message, list) else [message]:
                    if isinstance(item, dict) and "id" in item:
                        replies.append(item)
    return replies


def reply_code(reply: dict[str, Any]) -> Any:
    return reply["error"]["code"] if "error" in reply else "ok"


async def first_line(
    reader: asyncio.StreamReader, timeout_s: float, cap: int = 65_536
) -> tuple[bytes, str]:
    """What the server wrote first: (up to `cap` bytes of its first line, how the read ended)."""
    data = b""
    try:
        async with asyncio.timeout(timeout_s):
            while b"\n" not in data and len(data) < cap:
                chunk = await reader.read(cap)
                if not chunk:
                    return data, "eof"
                data += chunk
    except TimeoutError:
        return data, "timeout"
    except ConnectionError:  # reset by the peer, or our own write failed on the closed socket
        return data, "reset"
    return data.split(b"\n", 1)[0], "line" if b"\n" in data else "long"


def describe_first_line(data: bytes, ended: str) -> str:
    if ended == "line":
        reply = json.loads(data)
        if isinstance(reply, list):
            return f"a batch of {len(reply):,} replies ({len(data):,} bytes)"
        error = reply.get("error") or {}
        return f"{error.get('code')} '{str(error.get('message'))[:60]}'"
    if ended == "long":
        codes = Counter(re.findall(rb'"code":\s*(-?\d+)', data))
        return f"a reply line over {len(data):,} bytes ({codes_text(Counter({int(k): v for k, v in codes.items()}))} in its first 64 KiB)"
    return {"eof": "EOF without a reply", "reset": "reset without a reply", "timeout": "no reply"}[
        ended
    ]


async def bounded(awaitable: Awaitable[T], seconds: float) -> T | None:
    """The result, or None when it took longer than `seconds`."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        return None


async def wait_until(
    check: Callable[[], Awaitable[bool]], seconds: float, every_s: float = 0.2
) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            if await asyncio.wait_for(check(), max(0.1, deadline - time.monotonic())):
                return True
        await asyncio.sleep(every_s)
    return False


async def firings_done(client: EventBusClient) -> int:
    stats = (await client.bus_info())["stats"].get("firings", {})
    return int(stats.get("ok", 0)) + int(stats.get("failed", 0)) + int(stats.get("skipped", 0))


# -- the attacks ---------------------------------------------------------------------------


async def attack_big_integers(bench: Bench, row: Row, storage: str) -> None:
    """1. Emits with timestamps in [2^63, 2^64) interleaved with a victim's 5,000 pipelined emits."""
    folder = bench.scratch()
    async with bench.server([bench.bus(storage, folder)], folder=folder) as server:
        async with Watch(server, row, bench.rss_cap_mb):
            reader, writer = await raw_connection(server.address("victim"))
            chunk = b"".join(
                rpc_line(
                    "emit_event", {"topic": "t", "payload": 1, "timestamp": BIG_INTS[i % 3]}, i
                )
                for i in range(500)
            )

            async def attack() -> None:
                for _ in range(10):  # 500-line chunks between the victim's emits
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0)

            victim = await connect(server.url("victim"))
            attacking = asyncio.ensure_future(attack())
            started = time.monotonic()
            emits = [asyncio.ensure_future(victim.emit("v", i)) for i in range(5000)]
            done, pending = await asyncio.wait(emits, timeout=30)
            elapsed = time.monotonic() - started
            for task in [*pending, attacking]:
                task.cancel()
            failed = Counter(error_code(t.exception()) for t in done if t.exception() is not None)  # type: ignore[arg-type]
            acked = len(done) - sum(failed.values())
            row.victim = f"{sum(failed.values()):,}/5,000 emits failed" + (
                f" ({codes_text(failed)})" if failed else ""
            )
            row.victim += f", {acked:,} acked, {acked / elapsed:,.0f} ev/s"
            if pending:
                row.victim += f", {len(pending):,} unanswered after 30 s"
            stored = await bounded(victim.poll("t", limit=10_000), 5)
            await close_quietly(victim)
        replies = await read_replies(reader, 5000, 10)
        writer.transport.abort()
        locs = Counter(
            str(r["error"].get("data", [{}])[0].get("loc", "?"))
            for r in replies
            if "error" in r and isinstance(r["error"].get("data"), list) and r["error"]["data"]
        )
        row.attacker = (
            f"{len(replies):,} replies: {codes_text(Counter(reply_code(r) for r in replies))}"
        )
        if locs:
            row.attacker += f" (loc {', '.join(locs)})"
        row.attacker += (
            f"; {'?' if stored is None else f'{len(stored.events):,}'} attack events stored"
        )
        row.attacker += f"; poll since 2^63 → {await poll_past_int64(server)}"


async def poll_past_int64(server: Server) -> str:
    reader, writer = await raw_connection(server.address("victim"))
    writer.write(rpc_line("poll_events", {"since": 2**63}, "p"))
    replies = await read_replies(reader, 1, 5)
    writer.transport.abort()
    if not replies:
        return "no answer"
    error = replies[0].get("error")
    if error is None:
        return "a page of events"
    data = error.get("data")
    loc = (
        f" (loc {data[0].get('loc')})"
        if isinstance(data, list) and data and isinstance(data[0], dict)
        else ""
    )
    return f"{error['code']}{loc} '{str(error.get('message'))[:40]}'"


async def attack_unread_polls(bench: Bench, row: Row) -> None:
    """2. 10,000 events of ~1 KB; one connection pipelines 5,000 `poll_events {limit: 10000}` and never reads."""
    folder = bench.scratch()
    async with bench.server([bench.bus("sqlite", folder)], folder=folder) as server:
        async with await connect(server.url("victim")) as client:
            for start in range(0, 10_000, 1000):
                await client.emit_many(
                    [
                        {"topic": "fill", "payload": {"i": i, "s": "x" * 1000}}
                        for i in range(start, start + 1000)
                    ]
                )
        polls = b"".join(rpc_line("poll_events", {"limit": 10_000}, i) for i in range(5000))
        async with Watch(server, row, bench.rss_cap_mb) as watch:
            reader, writer = await raw_connection(server.address("victim"), receive_buffer=4096)
            writer.write(polls)  # never drained, never read
            await watch.wait(10)
            row.attacker = "never reads; " + (
                "closed by the server" if reader.at_eof() else "still connected after 10 s"
            )
        writer.transport.abort()


async def attack_junk_arrays(bench: Bench, row: Row) -> None:
    """3. Ten connections each send one ~1 MiB line, a JSON array of 524,000 `1`s, and never read."""
    junk = b"[" + b",".join([b"1"] * 524_000) + b"]\n"
    async with bench.server([bench.bus("memory", bench.folder)]) as server:
        async with Watch(server, row, bench.rss_cap_mb) as watch:
            attackers = [
                await raw_connection(server.address("victim"), receive_buffer=4096)
                for _ in range(10)
            ]
            for _, writer in attackers:
                writer.write(junk)
            await watch.wait(10)
        firsts = [describe_first_line(*await first_line(reader, 5)) for reader, _ in attackers]
        for _, writer in attackers:
            writer.transport.abort()
        row.attacker = "; ".join(f"{n}x {text}" for text, n in Counter(firsts).most_common())


async def attack_unread_subscriptions(bench: Bench, row: Row) -> None:
    """4. One connection pipelines 10,000 `subscribe_topic {topic: ">"}` and never reads; a victim emits 50 batches of 100 (default subscriber_buffer)."""
    folder = bench.scratch()
    async with bench.server([bench.bus("sqlite", folder)], folder=folder) as server:
        async with Watch(server, row, bench.rss_cap_mb) as watch:
            _reader, writer = await raw_connection(server.address("victim"), receive_buffer=4096)
            writer.write(
                b"".join(rpc_line("subscribe_topic", {"topic": ">"}, i) for i in range(10_000))
            )
            await bounded(writer.drain(), 10)
            victim = await connect(server.url("victim"))
            worst_ack, sent, started = 0.0, 0, time.monotonic()
            for batch in range(50):
                ack_started = time.monotonic()
                remaining = 60 - (ack_started - started)
                events = [{"topic": "v", "payload": {"batch": batch, "i": i}} for i in range(100)]
                if remaining <= 0 or await bounded(victim.emit_many(events), remaining) is None:
                    worst_ack = max(worst_ack, time.monotonic() - ack_started)
                    row.notes.append(f"victim stopped after {sent:,} events: 60 s bound")
                    break
                worst_ack = max(worst_ack, time.monotonic() - ack_started)
                sent += 100
            elapsed = time.monotonic() - started
            row.victim = f"{sent:,} events, worst batch ack {seconds_text(worst_ack)}, {sent / elapsed:,.0f} ev/s"
            info = await bounded(victim.bus_info(), 10)
            await watch.wait(3)  # the fan-out may go on after the acks
            await close_quietly(victim)
        writer.transport.abort()
        subscriptions = "?" if info is None else f"{info['stats']['subscriptions']:,}"
        row.attacker = f"{subscriptions} subscriptions held by the bus"


SLOW_LINE = b'{"jsonrpc": "2.0", "method": "ping", "params": {"pad": "' + b"x" * 200


async def attack_slowloris(bench: Bench, row: Row) -> None:
    """5. 50 connections each send 1 byte/s of a line they never finish; max_connections 52 (full with the victim pinger and one idle client); a new client after 35 s."""
    async with bench.server([bench.bus("memory", bench.folder, max_connections=52)]) as server:
        async with Watch(
            server, row, bench.rss_cap_mb
        ) as watch:  # its victim pinger holds one slot
            idle = await connect(server.url("victim"))  # and an idle client the other: 50 are left
            slow = [await raw_connection(server.address("victim")) for _ in range(50)]
            started = time.monotonic()

            async def trickle(writer: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    for byte in SLOW_LINE:
                        writer.write(bytes([byte]))
                        await asyncio.sleep(1)

            async def closed_after(reader: asyncio.StreamReader) -> float:
                with contextlib.suppress(ConnectionError):
                    await reader.read()  # until the server closes
                return time.monotonic() - started

            trickles = [asyncio.ensure_future(trickle(w)) for _, w in slow]
            closes = [asyncio.ensure_future(closed_after(r)) for r, _ in slow]
            await watch.wait(35)
            row.victim = f"new client after 35 s: {await late_client(server)}"
            closed = [c.result() for c in closes if c.done()]
            row.attacker = f"{len(closed)}/50 closed by the server"
            if closed:
                row.attacker += f" (at ~{statistics.median(closed):.0f} s)"
            for task in trickles + closes:
                task.cancel()
            for _, writer in slow:
                writer.transport.abort()
            await close_quietly(idle)


async def late_client(server: Server) -> str:
    try:
        client = await connect(server.url("victim"))
    except EventBusError as exc:
        return f"no ({exc.message[:60]})"
    try:
        answer = await asyncio.wait_for(client.ping(), 5)
        return "yes" if answer == "pong" else f"no ({answer!r})"
    except TimeoutError:
        return "no (no answer in 5 s)"
    except EventBusError as exc:
        return f"no ({exc.message[:60]})"
    finally:
        await close_quietly(client)


async def attack_refusals(bench: Bench, row: Row) -> None:
    """6. max_connections 3, three held; 20 new connections each send a ping at once.

    Whether a refused client reads the error line depends on the server's close:
    one that closes with the client's ping unread makes the kernel send RST, and a
    client that reads after the RST came in loses the line (asyncio's StreamReader
    raises the reset before the buffered data). So three kinds of clients, 20 each:
    one reading at once, one reading 100 ms later, and eventbus_client (what its
    user sees in the exception).
    """
    async with bench.server([bench.bus("memory", bench.folder, max_connections=3)]) as server:
        held = [await raw_connection(server.address("victim")) for _ in range(3)]

        async def newcomer(i: int, read_after_s: float) -> str:
            reader, writer = await raw_connection(server.address("victim"))
            writer.write(rpc_line("ping", call_id=i))  # before the refusal arrives
            await asyncio.sleep(read_after_s)
            data, ended = await first_line(reader, 5)
            writer.transport.abort()
            if ended == "line":
                reply = json.loads(data)
                return (
                    f"read {reply['error']['code']}" if "error" in reply else "served (not refused)"
                )
            return {"eof": "EOF without a line", "reset": "reset without a line"}.get(
                ended, "no answer in 5 s"
            )

        async def client_newcomer() -> str:
            try:
                client = await connect(server.url("victim"))
                await asyncio.wait_for(client.ping(), 5)
                return "served (not refused)"
            except EventBusError as exc:
                return (
                    "read -32005"
                    if "too many connections" in exc.message
                    else f"'{exc.message[:45]}'"
                )
            except TimeoutError:
                return "no answer in 5 s"

        parts = []
        for kind, calls in (
            ("reading at once", [newcomer(i, 0) for i in range(20)]),
            ("reading after 100 ms", [newcomer(i, 0.1) for i in range(20)]),
            ("eventbus_client", [client_newcomer() for _ in range(20)]),
        ):
            outcomes = Counter(await asyncio.gather(*calls))
            parts.append(
                f"{kind}: " + ", ".join(f"{n}/20 {text}" for text, n in outcomes.most_common())
            )
        row.attacker = "; ".join(parts)
        for _, writer in held:
            writer.transport.abort()


async def attack_token_guessing(bench: Bench, row: Row) -> None:
    """7. A token bus; one connection pipelines 3,000 wrong `authenticate`."""
    async with bench.server(
        [bench.bus("memory", bench.folder, auth_token_env=TOKEN_ENV)]
    ) as server:
        async with Watch(server, row, bench.rss_cap_mb, token=TOKEN):
            reader, writer = await raw_connection(server.address("victim"))
            started = time.monotonic()
            writer.write(
                b"".join(rpc_line("authenticate", {"token": f"guess-{i}"}, i) for i in range(3000))
            )
            replies = await read_replies(reader, 3000, 30)
            elapsed = time.monotonic() - started
            closed = reader.at_eof() or await bounded(reader.read(), 1) == b""
            writer.transport.abort()
        codes = codes_text(Counter(reply_code(r) for r in replies))
        row.attacker = (
            f"{len(replies):,} answers ({codes}) in {elapsed:.2f} s = {len(replies) / elapsed:,.0f} guesses/s; "
            f"connection closed: {'yes' if closed else 'no'}"
        )


async def attack_cross_bus_rule(bench: Bench, row: Row) -> None:
    """8. A rule on open bus A emits to token bus B (allowed_sources trn:org:) as `_sys.injected` and `injected`."""
    buses = [
        bench.bus("memory", bench.folder, "A", enable_rules=True),
        bench.bus(
            "memory", bench.folder, "B", auth_token_env=TOKEN_ENV, allowed_sources=["trn:org:"]
        ),
    ]
    async with bench.server(buses, other_bus=False) as server:
        registered: dict[str, str] = {}
        async with await connect(server.url("A")) as a:
            for rule_id, topic in (("x", "_sys.injected"), ("x2", "injected")):
                action = {
                    "type": "EmitEvent",
                    "topic": topic,
                    "payload": "{{ $.payload }}",
                    "bus": "B",
                }
                try:
                    await a.register_rule({"id": rule_id, "topic": "a", "action": action})
                    registered[topic] = "registered"
                except EventBusError as exc:
                    registered[topic] = f"refused {exc.code}"
            await a.emit("a", {"evil": True})
            expected = sum(v == "registered" for v in registered.values())
            await wait_until(lambda: _at_least(firings_done(a), expected), 10)
            statuses = Counter(f["status"] for f in await a.list_firings(limit=10))
        async with await connect(server.url("B"), token=TOKEN) as b:
            landed = [
                e.topic
                for pattern in (">", "_sys.>")
                for e in (await b.poll(pattern, limit=100)).events
            ]
        row.attacker = "; ".join(f"rule → {topic}: {text}" for topic, text in registered.items())
        if statuses:
            row.attacker += f"; firings {dict(statuses)}"
        row.victim = f"landed on B: {', '.join(landed)}" if landed else "nothing landed on B"


async def _at_least(count: Awaitable[int], expected: int) -> bool:
    return await count >= expected


async def attack_unread_firings(bench: Bench, row: Row, subscriber: bool) -> None:
    """9. `subscribe_firings` on a connection that never reads, while 20,000 firings (python tool, ~4 KB results) happen; the control has no subscriber.

    With `subscriber=False` the same firings run with nobody subscribed: the control,
    so the growth the subscription causes can be told from the firings' own.
    """
    # copy.copy returns the tool's request, so each result (and each rule_fired
    # notification) carries the event's 2 KB payload twice: ~4 KB.
    tool = {"match": "trn:user:bench:python:copy:*", "kind": "python", "function": "copy:copy"}
    # SQLite, not memory: a memory log keeps only `memory_buffer` (10,000) events, and
    # events that leave it before the rule engine reaches them never fire.
    folder = bench.scratch()
    bus = bench.bus("sqlite", folder, enable_rules=True, tools=[tool])
    async with bench.server([bus], folder=folder) as server:
        async with await connect(server.url("victim")) as victim:
            action = {
                "type": "InvokeTool",
                "tool_id": "trn:user:bench:python:copy:v1",
                "input": "{{ $.payload }}",
            }
            await victim.register_rule({"id": "copy", "topic": "in", "action": action})
            async with Watch(server, row, bench.rss_cap_mb) as watch:
                _reader, writer = await raw_connection(
                    server.address("victim"), receive_buffer=4096
                )
                if subscriber:
                    writer.write(rpc_line("subscribe_firings", {}, 1))
                await asyncio.sleep(0.5)
                started = time.monotonic()
                for start in range(0, 20_000, 250):  # 250 x 2 KB: a line well under 1 MiB
                    await victim.emit_many(
                        [
                            {"topic": "in", "payload": {"i": i, "pad": "x" * 2000}}
                            for i in range(start, start + 250)
                        ]
                    )
                finished = await wait_until(
                    lambda: _at_least(firings_done(victim), 20_000), 120, every_s=0.5
                )
                elapsed = time.monotonic() - started
                done = await bounded(firings_done(victim), 10)
                row.victim = f"{done or 0:,} firings in {elapsed:.1f} s" + (
                    "" if finished else " (120 s bound)"
                )
                await watch.wait(2)
            writer.transport.abort()
        row.attacker = (
            "never reads (4 KiB receive buffer)"
            if subscriber
            else "(control: no firing subscription)"
        )


async def attack_wildcard(bench: Bench, rows: list[Row]) -> None:
    """10. A rule with pattern wildcard `*a*a*a*a*b`; emit {"s": "a"*N} for N = 100, 200, 400."""
    async with bench.server([bench.bus("memory", bench.folder, enable_rules=True)]) as server:
        async with (
            await connect(server.url("victim")) as victim,
            await connect(server.url("other")) as other,
        ):
            pattern = {"payload": {"s": [{"wildcard": "*a*a*a*a*b"}]}}
            action = {"type": "EmitEvent", "topic": "w.matched", "payload": "{{ $.payload }}"}
            await victim.register_rule(
                {"id": "glob", "topic": "w", "pattern": pattern, "action": action}
            )
            for row in rows:
                n = int(row.storage.removeprefix("N="))
                async with Watch(server, row, bench.rss_cap_mb):
                    started = time.monotonic()
                    watching = asyncio.ensure_future(stalled_for(other, started, 60))
                    acked = await bounded(victim.emit("w", {"s": "a" * n}), 60)
                    ack_s = time.monotonic() - started
                    stall = await watching
                row.victim = (
                    f"emit acked in {seconds_text(ack_s)}" if acked else "emit not acked in 60 s"
                )
                row.attacker = "other bus slow (pings >= 50 ms) until " + (
                    f"{seconds_text(stall)} after the emit"
                    if stall is not None
                    else "> 60 s after the emit"
                )
                if stall is None:
                    for later in rows[rows.index(row) + 1 :]:
                        later.notes.append(
                            "not run: a shorter string already stalled the bus > 60 s"
                        )
                    return


async def stalled_for(
    client: EventBusClient, started: float, bound_s: float, quiet_s: float = 2.0
) -> float | None:
    """Seconds from `started` until the last ping slower than 50 ms came back, once `quiet_s`
    of fast pings follow it (None: still slow at `bound_s`)."""
    last_slow = started
    while time.monotonic() - last_slow < quiet_s:
        sent = time.monotonic()
        if (
            sent - started > bound_s
            or await bounded(client.ping(), started + bound_s + quiet_s - sent) is None
        ):
            return None
        if time.monotonic() - sent >= 0.05:
            last_slow = time.monotonic()
        await asyncio.sleep(PING_INTERVAL_S)
    return last_slow - started


BIG_OUTPUT = "import sys; sys.stdin.read(); sys.stdout.write('\"' + 'x'*100_000_000 + '\"')"


async def attack_huge_tool_output(bench: Bench, row: Row) -> None:
    """11. A `command` tool that prints a 100 MB JSON string, behind an InvokeTool rule with result_topic."""
    tool = {
        "match": "trn:user:bench:command:big:*",
        "kind": "command",
        "argv": ["python3", "-c", BIG_OUTPUT],
    }
    folder = bench.scratch()
    bus = bench.bus("sqlite", folder, enable_rules=True, tools=[tool])
    async with bench.server([bus], folder=folder) as server:
        async with await connect(server.url("victim")) as victim:
            action = {
                "type": "InvokeTool",
                "tool_id": "trn:user:bench:command:big:v1",
                "input": "{{ $.payload }}",
                "result_topic": "big.result",
            }
            await victim.register_rule({"id": "big", "topic": "go", "action": action})
            async with Watch(server, row, bench.rss_cap_mb) as watch:
                started = time.monotonic()
                await victim.emit("go", {"x": 1})
                finished = await wait_until(
                    lambda: _at_least(firings_done(victim), 1), 60, every_s=0.5
                )
                elapsed = time.monotonic() - started
                await watch.wait(2)
            stats = (await victim.bus_info())["stats"]["firings"]
            status = "ok" if stats.get("ok") else "failed" if stats.get("failed") else "pending"
            row.victim = (
                f"firing {status} after {seconds_text(elapsed)}"
                if finished
                else "firing not finished in 60 s"
            )
            if status == "failed":
                [firing] = await victim.list_firings(status="failed", limit=1)
                row.victim += f": '{str(firing.get('error'))[:100]}'"
            topics = {t["topic"]: t["count"] for t in await victim.list_topics()}
        db = Path(bus["storage_path"])
        row.attacker = (
            f"{topics.get('big.result', 0)} event(s) on big.result; "
            f"db {db.stat().st_size / 1e6:,.1f} MB + wal {_size_mb(db, '-wal')} MB"
        )


def _size_mb(db: Path, suffix: str) -> str:
    path = db.with_name(db.name + suffix)
    return f"{path.stat().st_size / 1e6:,.1f}" if path.exists() else "0"


async def attack_deleted_database(bench: Bench, row: Row) -> None:
    """12. SQLite: 100 events, the operator deletes the `.db` file (not its -wal/-shm), 110 more emits, restart."""
    folder = bench.scratch()
    bus = bench.bus("sqlite", folder)
    db = Path(bus["storage_path"])
    acked: dict[int, int] = {}  # event_id → n
    async with bench.server([bus], folder=folder, other_bus=False) as server:
        async with await connect(server.url("victim")) as client:
            for n in range(100):
                acked[(await client.emit("n", {"n": n})).event_id] = n
            db.unlink()  # only the .db: its -wal and -shm stay where they are
            results = await asyncio.gather(
                *(client.emit("n", {"n": n}) for n in range(100, 210)), return_exceptions=True
            )
    after = [r for r in results if not isinstance(r, BaseException)]
    failed = Counter(error_code(r) for r in results if isinstance(r, BaseException))
    acked.update(
        {
            r.event_id: n
            for r, n in zip(results, range(100, 210), strict=True)
            if not isinstance(r, BaseException)
        }
    )
    row.victim = f"{len(after)}/110 emits after the delete acknowledged" + (
        f" ({codes_text(failed)} failed)" if failed else ""
    )
    left = (
        ", ".join(p.name.removeprefix(db.name) or ".db" for p in sorted(folder.glob(db.name + "*")))
        or "nothing"
    )
    async with bench.server([bus], folder=folder, other_bus=False) as server:
        async with await connect(server.url("victim")) as client:
            page = await client.poll("n", limit=10_000)
            present = {
                e.event_id: e.payload.get("n") for e in page.events if isinstance(e.payload, dict)
            }
            next_id = (await client.emit("n", {"n": "next"})).event_id
    kept = sum(present.get(event_id) == n for event_id, n in acked.items())
    row.attacker = (
        f"deleted the .db only (left at stop: {left}); after restart {kept}/{len(acked)} acknowledged events exist, "
        f"next event_id {next_id} (last acknowledged {max(acked)})"
    )


# -- running them ---------------------------------------------------------------------------

Attack = Callable[[Bench], Awaitable[list[Row]]]


def single(
    name: str, function: Callable[..., Awaitable[None]], *args: Any, storage: str = ""
) -> Attack:
    async def attack(bench: Bench) -> list[Row]:
        row = Row(name, storage)
        await guarded(bench, row, function(bench, row, *args))
        return [row]

    return attack


def wildcard_rows(bench: Bench) -> Awaitable[list[Row]]:
    async def attack() -> list[Row]:
        rows = [Row("10 wildcard *a*a*a*a*b", f"N={n}") for n in (100, 200, 400)]
        await guarded(bench, rows[-1], attack_wildcard(bench, rows))
        return rows

    return attack()


async def guarded(bench: Bench, row: Row, attack: Awaitable[None]) -> None:
    """Run one attack; whatever goes wrong is said in the row instead of ending the run."""
    bad_lines = bench.bad_log_lines
    try:
        await asyncio.wait_for(attack, ATTACK_CAP_S)
    except TimeoutError:
        row.notes.append(f"not finished in {ATTACK_CAP_S:.0f} s")
    except Exception as exc:
        message = " ".join(str(exc).split())  # one line: it goes into a table cell
        row.notes.append(f"could not measure: {type(exc).__name__}: {message[:160]}")
    if bench.bad_log_lines > bad_lines:
        row.notes.append(f"server log: {bench.bad_log_lines - bad_lines:,} ERROR/traceback lines")


ATTACKS: dict[int, list[Attack]] = {
    1: [
        single("1 timestamps past int64", attack_big_integers, s, storage=s)
        for s in ("memory", "sqlite", "postgres")
    ],
    2: [single("2 unread polls of 10 MB", attack_unread_polls, storage="sqlite")],
    3: [single("3 ten 1 MiB junk batches", attack_junk_arrays, storage="memory")],
    4: [single("4 10,000 unread subscriptions", attack_unread_subscriptions, storage="sqlite")],
    5: [single("5 slowloris x50", attack_slowloris, storage="memory")],
    6: [single("6 past max_connections", attack_refusals, storage="memory")],
    7: [single("7 token guessing", attack_token_guessing, storage="memory")],
    8: [single("8 cross-bus rule", attack_cross_bus_rule, storage="memory")],
    9: [
        single("9 unread firing subscription", attack_unread_firings, True, storage="sqlite"),
        single(
            "9 control: same firings, no subscriber", attack_unread_firings, False, storage="sqlite"
        ),
    ],
    10: [wildcard_rows],
    11: [single("11 100 MB tool output", attack_huge_tool_output, storage="sqlite")],
    12: [single("12 deleted SQLite file", attack_deleted_database, storage="sqlite")],
}


def attack_list() -> str:
    """The attacks as a markdown list, from the first line of each attack's docstring."""
    functions = [
        attack_big_integers,
        attack_unread_polls,
        attack_junk_arrays,
        attack_unread_subscriptions,
        attack_slowloris,
        attack_refusals,
        attack_token_guessing,
        attack_cross_bus_rule,
        attack_unread_firings,
        attack_wildcard,
        attack_huge_tool_output,
        attack_deleted_database,
    ]
    return "\n".join(f"{(function.__doc__ or '').splitlines()[0]}" for function in functions)


async def run_tree(tree: Path, only: Iterable[int], rss_cap_mb: float) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="eventbus-hostile-") as folder:
        bench = Bench(tree, rss_cap_mb, Path(folder))
        try:
            for number in only:
                for attack in ATTACKS[number]:
                    started = time.monotonic()
                    new_rows = await attack(bench)
                    for row in new_rows:
                        print(
                            f"  {row.attack} {row.storage}: {time.monotonic() - started:.0f} s",
                            file=sys.stderr,
                        )
                    rows += new_rows
        finally:
            with contextlib.suppress(Exception):
                await bench.drop_schemas()
    return rows


def combined_table(runs: list[tuple[str, list[Row]]]) -> str:
    """One line per attack x storage x tree, the trees of one attack next to each other."""
    lines = []
    for index in range(len(runs[0][1])):
        for label, rows in runs:
            lines.append(rows[index].cells(label))
    return format_table(lines)


def record(trees: list[tuple[Path, str]], table: str, rss_cap_mb: float) -> None:
    measured = ", ".join(f"`{commit}` ({path})" for path, commit in trees)
    checkouts = [f"/tmp/hostile-{commit.removesuffix('+dirty')}" for _, commit in trees]
    worktrees = "\n".join(
        f"    git worktree add {path} {path.rsplit('-', 1)[1]}" for path in checkouts
    )
    text = f"""2 cores shared with other work. Trees measured, in this order: {measured}.
To reproduce, from a checkout with the bench's venv (`pip install -e '.[dev,bench]'`):

{worktrees}
    .venv/bin/python -m bench.hostile {" ".join(f"--tree {path}" for path in checkouts)} --record

(one tree alone: `python -m bench.hostile --tree /path/to/checkout`).

One server process per attack (`python -m eventbus_server` with PYTHONPATH=<tree>),
a `victim` bus (the storage column) and a memory bus `other`; config keys both
trees know, so each tree's defaults apply. RSS is VmRSS every 100 ms (before the
attack → its peak); pings every 20 ms on a connection of their own to the victim
bus and to the other bus ("> N s (unanswered)": still waiting when the attack
ended). A server past {rss_cap_mb:,.0f} MB RSS is killed (the machine is shared).

{attack_list()}

{table}
"""
    record_results("Hostile clients (issue 11): before and after", text)


def parse_only(text: str) -> list[int]:
    numbers = [int(part) for part in text.split(",") if part.strip()]
    unknown = [n for n in numbers if n not in ATTACKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"no attack {unknown}; they are 1-{len(ATTACKS)}")
    return numbers


async def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        required=True,
        help="a source checkout to run the server from (give two for before/after)",
    )
    parser.add_argument(
        "--only", type=parse_only, default=list(ATTACKS), help="attack numbers, e.g. 1,5,12"
    )
    parser.add_argument(
        "--rss-cap-mb", type=float, default=4096, help="kill a server past this RSS (default 4096)"
    )
    parser.add_argument(
        "--record", action="store_true", help="append the table to bench/RESULTS.md"
    )
    args = parser.parse_args()

    trees: list[tuple[Path, str]] = []
    for tree in args.tree:
        tree = tree.resolve()
        where = imported_from(tree)
        if not where.startswith(str(tree) + os.sep):
            parser.error(f"with PYTHONPATH={tree}, eventbus_server is imported from {where}")
        trees.append((tree, tree_commit(tree)))

    runs: list[tuple[str, list[Row]]] = []
    for tree, commit in trees:
        print(f"# {tree} at {commit} (eventbus_server from {imported_from(tree)})", file=sys.stderr)
        rows = await run_tree(tree, args.only, args.rss_cap_mb)
        runs.append((commit, rows))
        print(format_table([row.cells(commit) for row in rows]) + "\n", flush=True)
    table = combined_table(runs)
    if len(runs) > 1:
        print("# before / after\n\n" + table, flush=True)
    if args.record:
        record(trees, table, args.rss_cap_mb)


if __name__ == "__main__":
    run(main())
