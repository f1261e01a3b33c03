"""A throwaway PostgreSQL server of the test's own, to stop and start under a running bus.

`initdb` into a temp folder, `pg_ctl start` on a free loopback port, and
`stop()`/`start()` at will: a real database going away and coming back, not
a mock. PostgreSQL refuses to run as root, so as root the commands run as
the `postgres` user. Tests skip (with the reason) where the binaries are
missing, except under EVENTBUS_REQUIRE_POSTGRES=1, where they fail.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import postgres
from tests.ports import closed_port


def _bindir() -> Path | None:
    initdb = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    return Path(initdb).parent if initdb else None


class TempCluster:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            reason = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
            if postgres.REQUIRED:
                pytest.fail(reason)
            pytest.skip(reason)
        self.bindir = bindir
        # Not under pytest's tmp_path: as root that is private, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="eventbus-pg-"))
        self.data = self.root / "data"
        self.port = closed_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_postgres, *argv], check=True, capture_output=True, timeout=60)

    async def init(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        await asyncio.to_thread(
            self._run,
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        await self.start()

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        await asyncio.to_thread(
            self._run,
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )

    async def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash: no checkpoint, every connection cut."""
        await asyncio.to_thread(
            self._run, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"
        )

    async def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            await self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)
