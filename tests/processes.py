"""Servers in their own process, for tests that kill them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

LISTEN_RE = re.compile(r"bus=(\S+) listen=(\S+):(\d+)")


class ServerProcess:
    """`python -m eventbus_server` in a subprocess; knows each bus's bound port."""

    def __init__(
        self, proc: asyncio.subprocess.Process, ports: dict[str, int], startup_log: list[str]
    ) -> None:
        self.proc = proc
        self.ports = ports
        self.startup_log = startup_log

    @classmethod
    async def start(
        cls, config_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> ServerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eventbus_server",
            "--config",
            str(config_path),
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        buses = json.loads(config_path.read_text())
        ports: dict[str, int] = {}
        startup_log: list[str] = []
        assert proc.stderr is not None
        while len(ports) < len(buses):
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            assert line, "server exited before it was listening"
            startup_log.append(line)
            match = LISTEN_RE.search(line)
            if match:
                ports[match.group(1)] = int(match.group(3))
        return cls(proc, ports, startup_log)

    def url(self, bus_id: str) -> str:
        return f"tcp://127.0.0.1:{self.ports[bus_id]}"

    async def stderr_rest(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()
