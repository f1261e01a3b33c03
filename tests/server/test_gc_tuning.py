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
def gc_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These settings are process-wide: put the test process's back afterwards."""
    monkeypatch.setattr(gc_tuning, "_serving", False)
    monkeypatch.setattr(gc_tuning, "_refreeze_due", None)
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


async def test_refreeze_soon_batches_a_burst_into_one_pass_and_only_when_serving(
    gc_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int] = []
    monkeypatch.setattr(gc_tuning, "refreeze", lambda: passes.append(1))
    monkeypatch.setattr(gc_tuning, "REFREEZE_DELAY_S", 0.0)
    gc_tuning.refreeze_soon()  # a test process, not tuned: nothing
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert passes == []
    gc_tuning.tune_for_serving()
    passes.clear()
    for _ in range(1000):  # 1,000 rules registered in a row
        gc_tuning.refreeze_soon()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert passes == [1]
    gc_tuning.refreeze_soon()  # a later change gets its own pass
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert passes == [1, 1]


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
