"""Start an `eventbus_server` process from a config file, the way an operator does.

Shared by the benchmarks that run our server as its own process (as NATS and
Redis run as theirs): the port comes from the startup line, stderr is drained
so the server never blocks on a full pipe, and SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

LISTEN_RE = re.compile(r"listen=\S+:(\d+)")


@contextlib.asynccontextmanager
async def server_process(
    config: Path, *, tree: str | None = None, start_timeout_s: float = 20.0
) -> AsyncIterator[tuple[str, int]]:
    """One server process on `config` (one bus); yields (url, pid).

    `tree`: run the server from that source tree rather than this one. It is
    the process's working directory as well as its PYTHONPATH, because
    `python -m` puts the working directory first on sys.path.
    `start_timeout_s`: how long it may take to listen (migrating a big store
    takes a while).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventbus_server",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
        cwd=tree,
        env=None if tree is None else {**os.environ, "PYTHONPATH": tree},
    )
    assert proc.stderr is not None
    drainer: asyncio.Task[bytes] | None = None
    try:
        port = await asyncio.wait_for(_listen_port(proc.stderr), start_timeout_s)
        drainer = asyncio.create_task(proc.stderr.read())
        yield f"tcp://127.0.0.1:{port}", proc.pid
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
            if code != 0:
                print(f"warning: server exited with {code}", file=sys.stderr)
        if drainer is not None:
            drainer.cancel()


async def _listen_port(stderr: asyncio.StreamReader) -> int:
    """The port from the server's startup line (`bus=bench listen=127.0.0.1:PORT ...`)."""
    while line := (await stderr.readline()).decode():
        match = LISTEN_RE.search(line)
        if match:
            return int(match.group(1))
    raise RuntimeError("the server exited before it was listening")
