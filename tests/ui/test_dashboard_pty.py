"""`eventbus ui` as a real process on a pseudo-terminal, read back through a terminal
emulator (pyte), under a rule that fails and retries (issue 12, items 3 and 4)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import signal
import struct
import sys
import termios
from pathlib import Path

import pyte
import pytest

from eventbus_client import connect
from tests.conftest import start_buses
from tests.rules import python_tools

from .test_dashboard_firings import RULE, all_firings, picky_bus

COLUMNS, LINES = 160, 48


class Screen:
    """A program on a pty, and what a terminal of that size shows of it."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.slave = slave
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *args: str) -> None:
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eventbus_cli",
            *args,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        os.close(self.slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 1 << 16)
        except (BlockingIOError, OSError):
            return
        self.stream.feed(data)

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    async def until(self, pattern: str, timeout_s: float = 20.0) -> str:
        try:
            async with asyncio.timeout(timeout_s):
                while not re.search(pattern, "\n".join(self.lines)):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"the screen never showed {pattern!r}:\n" + "\n".join(self.lines)
            ) from None
        return "\n".join(self.lines)

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        if self.proc is not None and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            await self.proc.wait()
        os.close(self.master)


def firing_rows(lines: list[str]) -> list[tuple[int, str]]:
    """(firing id, status) of each row of the Firings tab on screen."""
    start = next(
        i
        for i, line in enumerate(lines)
        if re.match(r"\s*firing\s+time \(UTC\)\s+rule\s+event\s+status", line)
    )
    rows = []
    for line in lines[start + 1 :]:
        match = re.match(r"\s*(\d+)\s+\S+\s+\S+\s+\d+\s+(ok|failed|skipped|pending)\b", line)
        if not match:
            break
        rows.append((int(match.group(1)), match.group(2)))
    return rows


@pytest.mark.slow
async def test_the_real_dashboard_on_a_terminal_shows_each_firing_once_and_the_bus_failed_count(
    tmp_path: Path,
) -> None:
    python_tools.reset()
    python_tools.STATE["refuse"] = {n for n in range(20) if n % 4 == 0}
    async with (
        start_buses(tmp_path, picky_bus(tmp_path)) as app,
        await connect(app.url("main")) as bus,
    ):
        server = app.buses["main"]
        await bus.register_rule(RULE)
        await bus.emit_many([{"topic": "jobs.a", "payload": {"n": n}} for n in range(10)])
        await server.wait_idle()
        screen = Screen()
        try:
            await screen.start("ui", "--url", app.url("main"))
            await screen.until(r"tcp://127.0.0.1:\d+\s+connected")
            await bus.emit_many([{"topic": "jobs.b", "payload": {"n": n}} for n in range(10, 20)])
            await server.wait_idle()
            assert await bus.retry_firings(rule_id="pick") == 5  # they fail again, same ids
            await server.wait_idle()
            python_tools.STATE["refuse"] = {0, 4}
            assert await bus.retry_firings(rule_id="pick") == 5
            await server.wait_idle()
            expected = await all_firings(bus)
            failed = (await bus.get_rule("pick"))["failed"]
            assert failed == 2 and [f["status"] for f in expected].count("failed") == 2

            screen.press("2")
            await screen.until(r"firing\s+time \(UTC\)\s+rule")
            want = [(f["firing_id"], f["status"]) for f in expected]
            async with asyncio.timeout(10):
                while firing_rows(screen.lines) != want:
                    await asyncio.sleep(0.05)
            # The header: the bus's own count of dead letters.
            await screen.until(rf"· {failed} failed firings")
            screen.press("q")
            assert screen.proc is not None
            assert await asyncio.wait_for(screen.proc.wait(), 10) == 0
        finally:
            await screen.close()
