"""The garbage collector's settings for a serving process, and why.

CPython frees almost everything by reference counting; the cyclic collector
only finds reference cycles, but to do so it walks every container object of
the generations it collects. A bus allocates a few short-lived containers per
event (the request's dicts, the event, its futures), so with the default
thresholds (700, 10, 10) the youngest generation is collected every few
hundred events, and a full collection walks everything the process holds:
modules, config, the rule index (698k objects with 10,000 rules, ~260 ms per
pass). py-spy measured 12-14 % of the server's CPU in the collector, ~40 %
with 10,000 rules, and those passes are pauses in every connection's latency.

So, once the buses are up:

- `gc.freeze()` moves every object alive then into the permanent generation,
  which collections never walk: what exists after startup (and after a rule
  reload) lives as long as the process (or the rule set) and holds no
  garbage worth looking for.
- Raised thresholds make young collections rare (every 50,000 allocations
  net of frees rather than 700); the garbage cycles a bus makes are few, so
  this costs little memory (bounded by the threshold's worth of objects).

`tune_for_serving()` runs once, after startup (`app.run`). After a change to
long-lived state, such as rules registered or reloaded, `refreeze_soon()`
has the new objects frozen too, at most once a second however many changes
come. Both are process-wide, so `refreeze_soon()` does nothing in a process
that was not tuned: tests that embed a server keep the defaults.
"""

from __future__ import annotations

import asyncio
import gc

__all__ = ["REFREEZE_DELAY_S", "THRESHOLDS", "refreeze", "refreeze_soon", "tune_for_serving"]

#: (generation 0, 1, 2) thresholds: see the module docstring.
THRESHOLDS = (50_000, 50, 100)
#: A burst of changes (10,000 rules registered one by one) costs one full pass per this.
REFREEZE_DELAY_S = 1.0

_serving = False
_refreeze_due: asyncio.TimerHandle | None = None


def tune_for_serving() -> None:
    """Raise the collector's thresholds and freeze what startup made (call once, after startup)."""
    global _serving
    _serving = True
    gc.set_threshold(*THRESHOLDS)
    refreeze()


def refreeze_soon() -> None:
    """Refreeze within `REFREEZE_DELAY_S`, on the running loop, if this process serves.

    For the rule engine after a rule reload or registration: call it as often
    as that happens; the first call of a burst schedules one `refreeze()`.
    """
    global _refreeze_due
    if not _serving or (_refreeze_due is not None and not _refreeze_due.cancelled()):
        return
    _refreeze_due = asyncio.get_running_loop().call_later(REFREEZE_DELAY_S, _refreeze_now)


def _refreeze_now() -> None:
    global _refreeze_due
    _refreeze_due = None
    refreeze()


def refreeze() -> None:
    """Collect every generation, then freeze what survives, so collections stop walking it.

    It costs one full collection (~260 ms with 10,000 rules), as long as the
    one CPython would run on its own sooner or later: from the event loop,
    prefer `refreeze_soon()`, which batches bursts. It unfreezes first, so
    cycles among objects frozen earlier and dropped since (a replaced rule
    index) are freed rather than kept for the process's life.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
