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

`tune_for_serving()` runs once, after startup (`app.run`); `refreeze()` is
for after a bulk change to long-lived state such as a rule reload, so the
new objects stop being walked too. Both are process-wide: tests that embed a
server in their own process are left with the defaults.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "refreeze", "tune_for_serving"]

#: (generation 0, 1, 2) thresholds: see the module docstring.
THRESHOLDS = (50_000, 50, 100)


def tune_for_serving() -> None:
    """Raise the collector's thresholds and freeze what startup made (call once, after startup)."""
    gc.set_threshold(*THRESHOLDS)
    refreeze()


def refreeze() -> None:
    """Collect every generation, then freeze what survives, so collections stop walking it.

    Call after a bulk change to long-lived objects (a rule reload), not per
    event or per rule: it costs one full collection, as long as the one
    CPython would run on its own sooner or later. It unfreezes first, so
    cycles among objects frozen earlier and dropped since (a replaced rule
    index) are freed rather than kept for the process's life.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
