"""Garbage-collector settings for the long-running processes (`auditflow run`, `auditflow serve`).

Every event allocates a few dozen container objects that reference counting frees at once, yet each
allocation counts towards CPython's collection thresholds: with the default first threshold (700)
the collector ran about every twenty events, and every hundredth run traversed the whole heap
(imported modules, the rules, the in-memory window state). The bench measured 15-18 % of the
embedded process's CPU in the collector, two thirds of it in those full collections.

`tuned_collector` collects once, freezes what start-up created (modules, settings, compiled rules: alive
for the whole process, so no collection needs to look at them again, `gc.freeze`), and raises the
first threshold, so young cycles are still collected (every 50,000 allocations instead of 700),
and the full collections become rare. Memory held by cyclic garbage between collections stays
small: what the pipeline allocates per event is freed by reference counting.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

GEN0_THRESHOLD = 50_000


@contextlib.contextmanager
def tuned_collector() -> Iterator[None]:
    """Apply the settings above for the duration of the block; the interpreter's own settings
    (and unfrozen objects) are restored after it, so a process that goes on with other work, such
    as a test session that ran a bench, keeps its usual collector."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(GEN0_THRESHOLD, previous[0]), previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
