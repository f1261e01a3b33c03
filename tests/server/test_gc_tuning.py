"""The serving process's garbage-collector settings (eventbus_server/gc_tuning.py)."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus_server import gc_tuning


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """These settings are process-wide: put the test process's back afterwards."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_tune_for_serving_raises_thresholds_and_freezes_what_exists(gc_restored: None) -> None:
    gc_tuning.tune_for_serving()
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert gc.get_count()[0] < 100  # what existed went to the permanent generation


def test_refreeze_frees_dropped_cycles_that_an_earlier_freeze_kept(gc_restored: None) -> None:
    class Node:
        pass

    def cycle() -> Node:
        node = Node()
        node.itself = node  # type: ignore[attr-defined]
        return node

    kept = [cycle() for _ in range(1000)]
    gc_tuning.refreeze()
    frozen = gc.get_freeze_count()
    del kept  # a "replaced rule index": garbage, but frozen, so collections skip it
    gc.collect()
    assert gc.get_freeze_count() > frozen - 1000
    gc_tuning.refreeze()
    assert gc.get_freeze_count() <= frozen - 1000


@pytest.mark.slow
async def test_a_served_process_runs_tuned_once_its_buses_listen(tmp_path: Path) -> None:
    config = tmp_path / "event_buses.json"
    config.write_text(json.dumps([{"id": "gc", "listen": "127.0.0.1:0"}]))
    script = (
        "import gc, sys\n"
        "from eventbus_core.config import load_config\n"
        "from eventbus_server.app import run\n"
        "def ready(app):\n"
        "    print(gc.get_freeze_count(), *gc.get_threshold(), flush=True)\n"
        "    app.should_exit.set()\n"
        "sys.exit(run(load_config(sys.argv[1]), log_level='WARNING', ready=ready))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(config), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    frozen, *thresholds = (int(n) for n in out.split())
    assert tuple(thresholds) == gc_tuning.THRESHOLDS
    assert frozen > 10_000  # the modules, config and buses made at startup
