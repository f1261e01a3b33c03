"""How much this process's memory rose inside a block, for tests of size limits.

    with peak_rss() as rss:
        await router.invoke(call())      # a tool that answers 100 MB
    assert rss.growth_bytes < 50 * MB

Linux only: it reads VmRSS and VmHWM (the peak) from /proc/self/status. The
peak is reset first (`5` into /proc/self/clear_refs), so a spike inside the
block shows even if it was freed before the block ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["MB", "PeakRss", "peak_rss"]

MB = 1024 * 1024
_STATUS = Path("/proc/self/status")


@dataclass
class PeakRss:
    before_bytes: int = 0
    peak_bytes: int = 0

    @property
    def growth_bytes(self) -> int:
        """How far the peak rose above the RSS at the start of the block."""
        return self.peak_bytes - self.before_bytes


def _status_bytes(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # the kernel writes kB
    raise LookupError(field)


@contextlib.contextmanager
def peak_rss() -> Iterator[PeakRss]:
    if not _STATUS.exists():
        pytest.skip("needs /proc/self/status (Linux)")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        baseline = "VmRSS"
    except OSError:
        # Measure from the old peak instead: a spike below it goes unseen, so the
        # check gets weaker, never wrong.
        baseline = "VmHWM"
    measured = PeakRss(before_bytes=_status_bytes(baseline))
    yield measured
    measured.peak_bytes = _status_bytes("VmHWM")
