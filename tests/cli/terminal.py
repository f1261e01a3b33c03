"""A command whose stdout is a terminal (a pseudo-terminal), as at a user's shell,
for the forms the CLI prints only there (tables, one-line live output)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import termios

from .test_cli_basic import EVENTBUS

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """Runs one command with stdout on a pty `columns` wide; stderr is a pipe."""

    def __init__(self, columns: int = 200) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        os.set_blocking(self.master, False)
        self.columns = columns
        self.text = ""
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        env = {**os.environ, "COLUMNS": str(self.columns), "NO_COLOR": "1", "TERM": "xterm"}
        self.proc = await asyncio.create_subprocess_exec(
            *EVENTBUS,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.slave,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        os.close(self.slave)
        return self.proc

    async def wait_for(self, pattern: str, timeout_s: float = 15.0) -> str:
        """Everything printed so far, once `pattern` (a regex) appears in it."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.master, readable.set)
        try:
            async with asyncio.timeout(timeout_s):
                while not re.search(pattern, self.text):
                    await readable.wait()
                    readable.clear()
                    try:
                        chunk = os.read(self.master, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:  # EIO: the command ended and everything was read
                        raise AssertionError(
                            f"the command ended without printing {pattern!r}:\n{self.text}"
                        ) from None
                    self.text += ANSI.sub("", chunk.decode(errors="replace")).replace("\r", "")
        finally:
            loop.remove_reader(self.master)
        return self.text

    async def close(self) -> None:
        """Kill the command if it still runs, and reap it: an unreaped process's pipes
        are reported as unclosed by whatever test runs when they are collected."""
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.kill()
            await self.proc.communicate()
        os.close(self.master)
