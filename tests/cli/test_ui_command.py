"""`eventbus ui` as a user runs it: a real process on a real terminal (a pty),
reading a config file, following a real bus; `q` quits with exit code 0."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import struct
import sys
import termios
from pathlib import Path

from eventbus_client import connect
from tests.conftest import start_buses


async def read_until(fd: int, needles: list[bytes], timeout_s: float = 20.0) -> bytes:
    """What the terminal shows, until every needle has been drawn (or the time is up)."""
    loop = asyncio.get_running_loop()
    seen = bytearray()
    arrived = asyncio.Event()
    loop.add_reader(fd, arrived.set)
    try:
        deadline = loop.time() + timeout_s
        while not all(needle in seen for needle in needles) and loop.time() < deadline:
            arrived.clear()
            try:
                seen += os.read(fd, 65536)
            except BlockingIOError:
                pass
            except OSError:
                break  # the process closed the terminal
            try:
                await asyncio.wait_for(arrived.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
    finally:
        loop.remove_reader(fd)
    return bytes(seen)


async def test_eventbus_ui_draws_the_config_buses_on_a_terminal_and_q_quits(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "main"}) as server:
        async with await connect(server.url("main")) as bus:
            await bus.emit("smoke.checked", {"ok": True})
        config = tmp_path / "event_buses.json"
        config.write_text(
            json.dumps(
                [{"id": "main", "listen": f"127.0.0.1:{server.url('main').rsplit(':', 1)[1]}"}]
            )
        )

        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        os.set_blocking(controller, False)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eventbus_cli",
            "ui",
            "--config",
            str(config),
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env={**os.environ, "TERM": "xterm-256color"},
            start_new_session=True,
        )
        os.close(terminal)
        try:
            screen = await read_until(controller, [b"connected", b"smoke.checked"])
            assert b"connected" in screen and b"smoke.checked" in screen, screen[-2000:]
            os.write(controller, b"q")
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(controller)
